# SPDX-License-Identifier: LGPL-2.1-or-later
"""A Redis Cluster for the tests: three masters with a replica each, made
with `redis-cli --cluster create`, on 127.0.0.1 TCP ports (each node's
port and its cluster bus port, +10000, found free). Every node also has a
Unix socket, for command(). stop() kills exactly the servers it started.
Cluster(d, masters=1, replicas=0) makes other shapes (the benchmark's
one shard against three); redis-cli refuses fewer than three masters, so
those are joined by hand (CLUSTER ADDSLOTSRANGE, MEET, REPLICATE).

    with tempfile.TemporaryDirectory() as d:
        cl = cluster.Cluster(d)
        cl.start()
        daemon args: [f"--redis-cluster={a}" for a in cl.addresses]
        cl.reshard(source, target, 100)
        cl.kill(cl.master_of(slot)); cl.wait_ready()
        cl.stop()
"""
import random
import shutil
import socket
import subprocess
import time

import harness

BUS_OFFSET = 10000


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_port_pair(taken):
    # Below the ephemeral range, so the bus port exists and no outgoing
    # connection takes it meanwhile.
    for _ in range(1000):
        p = random.randrange(20000, 30000)
        if p not in taken and p + BUS_OFFSET not in taken and _port_free(p) and _port_free(p + BUS_OFFSET):
            return p
    raise RuntimeError("no free port pair for a cluster node")


def key_slot(key):
    """The cluster hash slot of key (str or bytes), hash tags included."""
    k = key.encode() if isinstance(key, str) else key
    o = k.find(b"{")
    if o >= 0:
        c = k.find(b"}", o + 1)
        if c > o + 1:
            k = k[o + 1:c]
    crc = 0
    for b in k:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc % 16384


class Cluster:
    def __init__(self, dir, node_timeout_ms=2000, masters=3, replicas=1):
        if masters < 1 or replicas < 0:
            raise ValueError("a cluster needs a master, and replicas cannot be negative")
        self.dir = dir
        self.node_timeout_ms = node_timeout_ms
        self.n_masters = masters
        self.n_replicas = replicas
        self.nodes = []

    @property
    def addresses(self):
        return [f"127.0.0.1:{n.port}" for n in self.nodes]

    def start(self, timeout=60):
        if not shutil.which("redis-cli"):
            raise harness.Skip("redis-cli not installed (apt-get install redis-tools)")
        taken = set()
        for i in range(self.n_masters * (1 + self.n_replicas)):
            port = _free_port_pair(taken)
            taken.update((port, port + BUS_OFFSET))
            node = harness.Redis(self.dir, name=f"node{i}", port=port, args=[
                "--cluster-enabled", "yes", "--cluster-config-file", f"node{i}-nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms)])
            self.nodes.append(node)
            node.start()
        if self.n_masters >= 3:
            out = subprocess.run(["redis-cli", "--cluster", "create", *self.addresses,
                                  "--cluster-replicas", str(self.n_replicas), "--cluster-yes"],
                                 stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
            if out.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {out.stdout[-2000:]!r} {out.stderr[-2000:]!r}")
        else:
            self._create_by_hand(timeout)
        self.wait_ready(timeout)

    def _create_by_hand(self, timeout):
        """What `redis-cli --cluster create` does, for one or two masters:
        the first n_masters nodes split the slots evenly, each gets a
        distinct config epoch, all meet the first, the rest replicate."""
        masters, replicas = self.nodes[:self.n_masters], self.nodes[self.n_masters:]
        for i, node in enumerate(masters):
            lo, hi = i * 16384 // len(masters), (i + 1) * 16384 // len(masters) - 1
            node.command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
            node.command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
        for node in self.nodes[1:]:
            node.command("CLUSTER", "MEET", "127.0.0.1", self.nodes[0].port)
        harness.wait_until(lambda: all(len(n.command("CLUSTER", "NODES").splitlines()) == len(self.nodes)
                                       for n in self.nodes), timeout, what="cluster nodes that know each other")
        ids = [m.command("CLUSTER", "MYID") for m in masters]
        for i, node in enumerate(replicas):
            node.command("CLUSTER", "REPLICATE", ids[i % len(masters)])

    def masters(self):
        """Indexes of the running nodes that serve slots as masters."""
        return [i for i, n in enumerate(self.nodes)
                if n.proc and n.proc.poll() is None and n.command("ROLE")[0] == "master"]

    def running(self):
        return [n for n in self.nodes if n.proc and n.proc.poll() is None]

    def _ready(self, node):
        info = node.command("CLUSTER", "INFO")
        if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
            return False
        role = node.command("ROLE")
        return role[0] == "master" or (role[0] == "slave" and role[3] == "connected")

    def wait_ready(self, timeout=30):
        """Until every running node says cluster_state:ok with all slots
        served, and every running replica is in sync with its master."""
        harness.wait_until(lambda: all(self._ready(n) for n in self.running()), timeout, what="cluster ready")

    def master_of(self, slot):
        """The index of the node that serves slot as a master."""
        for start, end, master, *_ in self.running()[0].command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return next(i for i, n in enumerate(self.nodes) if n.port == master[1])
        raise LookupError(f"slot {slot} is not served")

    def replica_of(self, master):
        for i, n in enumerate(self.running()):
            role = n.command("ROLE")
            if role[0] == "slave" and role[2] == self.nodes[master].port:
                return self.nodes.index(n)
        raise LookupError(f"node {master} has no replica")

    def failover(self, replica, timeout=15):
        """CLUSTER FAILOVER on replica, until it serves as a master."""
        self.nodes[replica].command("CLUSTER", "FAILOVER")
        harness.wait_until(lambda: self.nodes[replica].command("ROLE")[0] == "master", timeout,
                           what="failover")
        self.wait_ready(timeout)

    def reshard(self, source, target, n_slots, wait=True, timeout=120):
        """Moves n_slots slots from master source to master target with
        `redis-cli --cluster reshard` (the source's lowest slots first).
        wait=False returns the running redis-cli (a Popen) instead."""
        ids = [self.nodes[i].command("CLUSTER", "MYID") for i in (source, target)]
        p = subprocess.Popen(["redis-cli", "--cluster", "reshard", self.addresses[source],
                              "--cluster-from", ids[0], "--cluster-to", ids[1],
                              "--cluster-slots", str(n_slots), "--cluster-yes"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if not wait:
            return p
        out, _ = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster reshard failed: {out[-2000:]!r}")
        self.wait_ready()
        return None

    def kill(self, i):
        """SIGKILL of node i (a server this fixture started)."""
        self.nodes[i].kill()

    def stop(self):
        for n in self.nodes:
            n.stop()


if __name__ == "__main__":
    import sys
    import tempfile

    # A self-check: a cluster comes up, its slot map agrees with key_slot(),
    # a reshard moves slots, and a killed master is replaced by its replica.
    with tempfile.TemporaryDirectory() as d:
        cl = Cluster(d)
        try:
            cl.start()
            for key in ("somekey", "foo{hash_tag}", "{}x", "a{b", "mc:{r1}:ch"):
                assert cl.nodes[0].command("CLUSTER", "KEYSLOT", key) == key_slot(key), key
            m = cl.master_of(0)
            other = next(i for i in cl.masters() if i != m)
            cl.reshard(m, other, 100)
            assert cl.master_of(99) == other and cl.master_of(100) == m, "reshard"
            m = cl.master_of(key_slot("x"))
            r = cl.replica_of(m)
            t = time.monotonic()
            cl.kill(m)
            harness.wait_until(lambda: cl.master_of(key_slot("x")) == r, 30, what="promotion")
            cl.wait_ready()
            print(f"cluster: {cl.addresses}; replica promoted {time.monotonic() - t:.1f} s after the kill")
        finally:
            cl.stop()
    # One master and a replica, joined by hand: every slot served, the
    # replica in sync, and a write readable from its slot's master.
    with tempfile.TemporaryDirectory() as d:
        cl = Cluster(d, masters=1, replicas=1)
        try:
            cl.start()
            assert cl.masters() == [0], cl.masters()
            assert cl.replica_of(0) == 1, "replica"
            cl.nodes[0].command("SET", "mc:{r1}:room", "1")
            assert cl.nodes[cl.master_of(key_slot("mc:{r1}:room"))].command("GET", "mc:{r1}:room") == "1"
            print(f"one-master cluster: {cl.addresses}")
        finally:
            cl.stop()
    sys.exit(0)
