#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Runs the benchmark scenarios against freshly started stacks and reports.

For every run of every scenario: a new Redis (Unix socket), a private
D-Bus, one or two multichatd (tests/lib/harness.py, with pam_matrix
accounts from tests/lib/pamenv.py), rooms created over D-Bus, then
mc-loadgen (tests/bench/loadgen.c) drives the scenario and samples the
processes in /proc. The figures kept are medians over the runs.

Writes RESULTS/<date>.json (everything, every run), RESULTS/<date>.md
(tables, targets) and RESULTS/<date>-*.png (gnuplot). tests/bench/run.sh
is the one command that builds and calls this; see tests/bench/README.md.
"""

import argparse
import datetime
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --- the scenarios ----------------------------------------------------------

def per_member(deliveries, members):
    """Message rates (msg/s) that give these delivery rates in a room of members."""
    return [d / members for d in deliveries]


DELIVERY_STEPS = [10e3, 25e3, 50e3, 100e3, 200e3, 400e3, 800e3]
CLUSTER_STEPS = [10e3, 25e3, 50e3, 100e3, 200e3, 400e3]

# The standard set: sized to finish in about 10 minutes on 2 cores with 3
# runs. Entries marked "extra" (Redis Cluster, join cost, the reconnect
# storm: long) run when named in --only, and in --quick. Every chat scenario has a step at exactly 100k deliveries/s (the
# latency target) and rises until p99 > 50 ms, loss or overload.
STANDARD = [
    {"name": "cold-start", "kind": "coldstart", "runs": 5},
    {"name": "idle", "kind": "idle", "connections": 19000, "idle_steps": 4, "users": 100},
    # The 200,000 idle connections, held by as many daemons on one
    # Redis as the per-process fd limit needs (11 here; one where the limit
    # allows), the generator spread over as many processes. One run (~45 s
    # here); the per-daemon memory figure is idle's.
    {"name": "idle-200k", "kind": "idle", "connections": 200000, "daemons": "auto", "idle_steps": 4,
     "idle_hold": 5, "users": 100, "runs": 1},
    {"name": "fanout-100", "kind": "chat", "rooms": 1, "members": 100, "senders": 4,
     "rates": per_member(DELIVERY_STEPS, 100), "users": 100},
    {"name": "fanout-1000", "kind": "chat", "rooms": 1, "members": 1000, "senders": 4,
     "rates": per_member(DELIVERY_STEPS, 1000), "users": 100},
    # One message to 10,000 sockets takes at least 10,000 send()s, ~40 ms
    # here even at the bare-send floor (README, "What this machine does"):
    # p99 < 50 ms is out of reach, so this one rises until loss or overload,
    # to show what the CPU per delivery does with load.
    {"name": "fanout-10000", "kind": "chat", "rooms": 1, "members": 10000, "senders": 4,
     "rates": per_member(DELIVERY_STEPS, 10000), "users": 100, "step_seconds": 2, "stop_p99_ms": 1000},
    {"name": "many-rooms", "kind": "chat", "rooms": 1000, "members": 10, "senders": 10,
     "rates": per_member([10e3, 25e3, 50e3, 100e3, 200e3, 400e3], 10), "users": 100},
    {"name": "login-storm", "kind": "login", "rooms": 1, "members": 100, "bg_rate": 200,
     "right_slots": 8, "wrong_slots": 100, "step_seconds": 4, "users": 100},
    {"name": "reconnect", "kind": "reconnect", "slots": [16, 128], "step_seconds": 3, "users": 100},
    {"name": "two-daemons", "kind": "chat", "daemons": 2, "rooms": 1, "members": 1000, "senders": 4,
     "rates": per_member(DELIVERY_STEPS, 1000), "users": 100},
    # Sustained overload (several times what the daemon delivers here) in
    # many small rooms: each connection's queue fills slowly, so whatever
    # gives way first shows, and whether anyone is told.
    # Redis Sentinel: a master, a replica and three sentinels (down-after
    # 1 s), two daemons finding the master through them, a steady 200
    # messages/s from one daemon's member to the other's; the master is
    # killed after 3 s. Time until sends are acknowledged again, how late
    # messages arrive meanwhile, and lost / doubled (must be 0).
    {"name": "failover", "kind": "failover", "rate": 200, "seconds": 15, "kill_at": 3.0, "runs": 3},
    {"name": "overload", "kind": "chat", "rooms": 200, "members": 10, "senders": 10,
     "rates": [60000], "fixed": True, "step_seconds": 8, "users": 100, "runs": 2},
    # Redis time of one more join into a room where N distinct users are
    # present (each its own account and connection, held by mc-loadgen),
    # from Redis's own INFO commandstats around `probes` joins made one
    # at a time by the harness's client, `rounds` times. One run: filling
    # a room of 10,000 takes ~15 min at b303d1c..073a438.
    {"name": "join-cost", "kind": "joincost", "sizes": [10, 1000, 10000], "probes": 20, "rounds": 3,
     "runs": 1, "daemons": 2, "extra": True},
    # The same chat load (200 rooms × 20 members over 3 daemons, 4
    # senders a room) on a Redis Cluster of one master and of three (no
    # replicas: only the masters' CPU is compared), rising until loss
    # (p99 up to 1 s allowed: three daemons and the generator share two
    # cores here, so the daemons, not Redis, limit the rate). Redis CPU per
    # message on each shard shows whether shards add capacity: a
    # message's PUBLISH reaches every node of a cluster.
    # The reconnect storm: members in large rooms (one connection each,
    # every member of a room its own account), on as many daemons as the
    # fd limit needs; those daemons are stopped, `away` messages per room
    # are sent meanwhile through one more daemon that stays up, and the
    # daemons are started again on the same ports. Time from the restart
    # until every member has reconnected (cookie), joined again with
    # `since` and got every message sent while away. Long: one run.
    # One multichat-auth serves all the daemons, as installed, and stays up
    # while they restart (--storm-auth=spawned: one per daemon, as tests do).
    {"name": "storm", "kind": "storm", "rooms": 10, "members": 10000, "away": 20, "runs": 1,
     "timeout": 1800, "auth": "shared", "extra": True},
    {"name": "cluster-1", "kind": "cluster", "masters": 1, "daemons": 3, "rooms": 200, "members": 20,
     "senders": 4, "rates": per_member(CLUSTER_STEPS, 20), "users": 100, "step_seconds": 3,
     "stop_p99_ms": 1000, "extra": True},
    {"name": "cluster-3", "kind": "cluster", "masters": 3, "daemons": 3, "rooms": 200, "members": 20,
     "senders": 4, "rates": per_member(CLUSTER_STEPS, 20), "users": 100, "step_seconds": 3,
     "stop_p99_ms": 1000, "extra": True},
]

# Descriptors a daemon or a generator process needs besides its
# connections (listening socket, Redis, bus, journal, auth helper, epoll,
# timers, pipes to the master), with room to spare.
FD_RESERVE = 1000

# Quick: one run of smaller versions, to check the machinery (~2 min).
QUICK = {
    "idle": {"connections": 4000},
    "idle-200k": {"connections": 40000},
    "fanout-10000": {"members": 3000, "rates": per_member(DELIVERY_STEPS, 3000), "name": "fanout-3000"},
    "many-rooms": {"rooms": 200, "rates": per_member([10e3, 25e3, 50e3, 100e3], 10)},
    "login-storm": {"step_seconds": 2.5},
    "reconnect": {"step_seconds": 2},
    "join-cost": {"sizes": [10, 1000], "probes": 10, "rounds": 2},
    "storm": {"rooms": 2, "members": 500, "timeout": 300},
    "cluster-1": {"rooms": 60, "rates": per_member([10e3, 50e3], 20)},
    "cluster-3": {"rooms": 60, "rates": per_member([10e3, 50e3], 20)},
}

DAEMON_ARGS = [
    # Limits meant for browsers, raised so that the server, not its
    # politeness, is what is measured; overload still shows as
    # RATE_LIMITED or close 1013, which the generator counts.
    "--rate-limit=10000", "--rate-burst=100000",
    "--login-attempts=10000",
    "--history-on-join=50",
    # The generator's connections come from a few loopback addresses.
    "--max-connections-per-address=0",
]

# Targets from the issue; checked in the Markdown summary.
TARGETS = {
    "idle_kb_per_conn": 2.0,
    "connections_held": 200000,
    "cpu_us_per_delivery_1000plus": 2.0,
    "deliveries_per_s_one_core": 500e3,
    "p99_ms_at_100k": 10.0,
    "many_rooms_deliveries_per_s": 100e3,
    "login_right_p99_ms": 100.0,
    "login_wrong_adds_p99_ms": 5.0,
    "cold_start_ms": 50.0,
    "join_ms_10000": 0.1,
    "join_ratio_10000": 2.0,
    "storm_s": 30.0,
}

# A delivery later than this, with nobody told, counts as silent overload.
SILENT_DELAY_MS = 1000

# The original Django Channels example measured on this machine (issue text).
REFERENCE = {
    "cpu_us_per_delivery_100": "150–195",
    "kb_per_idle_conn": 42,
    "deliveries_per_s": 6000,
}


# --- the stack ----------------------------------------------------------------

TEARDOWN_PROBLEMS = []


class BenchStack:
    """Redis, a private bus per daemon, N daemons, through tests/lib/harness.
    shared_auth: one multichat-auth for all daemons, socket-activated, as
    the package runs it (units/multichat-auth.socket); otherwise each
    daemon spawns its own, as the tests do."""

    def __init__(self, build_dir, users, daemons=1, extra_args=(), shared_auth=False):
        os.environ["MULTICHAT_BUILD_DIR"] = str(build_dir)
        sys.path.insert(0, str(SRC / "tests" / "lib"))
        import harness
        import pamenv
        self.harness = harness
        accounts = [pamenv.User("u%05d" % i, 10000 + i, "pw") for i in range(users)]
        # dbus-daemon resolves root (the caller of CreateRoom) through nss_wrapper too.
        accounts.append(pamenv.User("root", 0, os.urandom(12).hex(), home="/root"))
        self.stack = harness.Stack("bench", pam_users=accounts)
        self.n_daemons = daemons
        self.extra_args = list(extra_args)
        self.daemons = []
        # (role, pid) of the Redis servers the daemons use; a cluster's
        # nodes replace the stack's own Redis here.
        self.redis_pids = None
        self.shared_auth = shared_auth
        self.auth = None
        self.auth_sock = None

    def start_auth(self):
        """The package's layout: multichat-auth behind its own socket, which
        outlives the daemons' restarts."""
        h = self.harness
        path = self.stack.dir / "auth.sock"
        self.auth_sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.auth_sock.bind(str(path))
        self.auth_sock.listen(128)
        # As many requests at once as the daemons' own helpers would take
        # together (32 each): the fill's 10,000 logins are not what is measured.
        argv = [str(h.AUTH_HELPER), "--pam-service=multichat", "--staff-group=multichat-staff", "--min-uid=1000",
                f"--max-concurrent={32 * self.n_daemons}"]
        env = dict(self.stack.base_env)
        env["LISTEN_FDS"] = "1"
        log_f = open(self.stack.dir / "auth.log", "ab")
        self.auth = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log_f, stderr=subprocess.STDOUT,
                                     start_new_session=True, close_fds=False,
                                     preexec_fn=h.socket_activation_exec(self.auth_sock.fileno(), argv, env))
        log_f.close()
        self.extra_args.append(f"--auth-socket={path}")

    def __enter__(self):
        try:
            if self.shared_auth:
                self.start_auth()
            for i in range(self.n_daemons):
                self.daemons.append(self.stack.start_daemon(
                    args=DAEMON_ARGS + self.extra_args, own_bus=i > 0))
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            for d in self.daemons:
                lines = d.log_text().splitlines()
                # What went wrong, then how it ended.
                words = ("failed", "error", "could not", "exited", "died", "signal", "lost", "restart")
                bad = [l for l in lines if any(w in l.lower() for w in words)]
                log(f"# {d.name} log, complaints:\n" + "\n".join("  | " + l for l in bad[:30]) +
                    f"\n# {d.name} log, end:\n{d.log_tail(10)}")
        self.stack.close()
        if self.auth:
            stop_group(self.auth)
            self.auth_sock.close()
        # A daemon that did not stop cleanly is a finding, not noise.
        for problem in self.stack.teardown_failures:
            log(f"!! {problem}")
            TEARDOWN_PROBLEMS.append(problem)

    def targets(self):
        return [f"127.0.0.1:{d.port}" for d in self.daemons]

    def pids(self):
        out = [("daemon", d.proc.pid) for d in self.daemons]
        out += self.redis_pids or [("redis", self.stack.redis.proc.pid)]
        for d in self.daemons:
            for child in children(d.proc.pid):
                out.append(("auth", child))
        if self.auth:
            out.append(("auth", self.auth.pid))
        return out

    def auth_cpu_us(self):
        """CPU of the auth helper(s) so far: the shared one, or the ones the
        running daemons spawned. From /proc/PID/stat, which keeps the time
        of threads that ended (the helper runs a thread per request)."""
        pids = [self.auth.pid] if self.auth else [c for d in self.daemons for c in children(d.proc.pid)]
        return sum(proc_cpu_us(p) for p in pids)

    def rss_kb(self, role):
        total = 0
        for r, pid in self.pids():
            if r == role:
                total += proc_rss_kb(pid)
        return total


def children(pid):
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def proc_rss_kb(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --- running mc-loadgen -------------------------------------------------------------

def loadgen(lg, args, timeout):
    log("# " + " ".join(str(a) for a in [Path(lg).name] + args))
    p = subprocess.run([lg] + args, stdout=subprocess.PIPE, stderr=None, timeout=timeout, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"mc-loadgen exited with {p.returncode}")
    return json.loads(p.stdout)


def create_rooms(lg, bus_address, count, tmpdir):
    p = subprocess.run([lg, "--scenario=create-rooms", f"--bus={bus_address}", f"--count={count}",
                        "--title=bench"], stdout=subprocess.PIPE, text=True, timeout=300, check=True)
    ids = p.stdout.split()
    if len(ids) != count:
        raise RuntimeError(f"created {len(ids)} rooms, wanted {count}")
    path = Path(tmpdir) / "rooms.txt"
    path.write_text("\n".join(ids) + "\n")
    return path


PIN = {"server": None, "loadgen": None}


def pin_server(bs):
    """Daemons, Redis and the auth helper on the server's CPU(s), every
    thread of them."""
    if not PIN["server"]:
        return
    for role, pid in bs.pids():
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(tid, PIN["server"])
            except OSError:
                pass


def common_args(bs, sc, workers):
    pin_server(bs)
    a = [f"--workers={workers}"]
    if PIN["loadgen"]:
        a.append("--cpus=" + ",".join(str(c) for c in sorted(PIN["loadgen"])))
    a += [f"--target={t}" for t in bs.targets()]
    a += [f"--pid={role}:{pid}" for role, pid in bs.pids()]
    return a


def run_chat(sc, lg, build_dir, workers):
    users = sc.get("users", 100)
    with BenchStack(build_dir, users, daemons=sc.get("daemons", 1)) as bs:
        rooms = create_rooms(lg, bs.daemons[0].bus.address, sc["rooms"], bs.stack.dir)
        args = common_args(bs, sc, workers) + [
            "--scenario=chat", f"--users={users}", f"--rooms-file={rooms}",
            f"--members={sc['members']}", f"--senders={sc['senders']}",
            "--rates=" + ",".join(f"{r:g}" for r in sc["rates"]),
            f"--step-seconds={sc.get('step_seconds', 1.5)}", f"--label={sc['name']}"]
        if "stop_p99_ms" in sc:
            args.append(f"--stop-p99-ms={sc['stop_p99_ms']}")
        if sc.get("fixed"):
            args.append("--fixed")
        return loadgen(lg, args, timeout=600)


def proc_cpu_us(pid):
    """utime + stime of a process, its ended threads included."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return (int(f[11]) + int(f[12])) * 1e6 / os.sysconf("SC_CLK_TCK")


def sched_us(pid):
    """CPU time a process ran, all threads, from the scheduler (ns precise)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except OSError:
            pass
    return total / 1000


def run_cluster(sc, lg, build_dir, workers):
    """run_chat's load on a Redis Cluster of sc["masters"] masters, each
    master sampled as its own role (shard0, shard1, ...)."""
    users = sc.get("users", 100)
    with BenchStack(build_dir, users, daemons=0) as bs:
        import cluster
        cl = cluster.Cluster(bs.stack.dir, masters=sc["masters"], replicas=0)
        try:
            cl.start()
        finally:
            bs.stack.more_redis.extend(cl.nodes)
        args = DAEMON_ARGS + [f"--redis-cluster={a}" for a in cl.addresses]
        for i in range(sc["daemons"]):
            bs.daemons.append(bs.stack.start_daemon(args=args, own_bus=i > 0))
        bs.redis_pids = [(f"shard{i}", n.proc.pid) for i, n in enumerate(cl.nodes)]
        rooms = create_rooms(lg, bs.daemons[0].bus.address, sc["rooms"], bs.stack.dir)
        per_shard = [0] * len(cl.nodes)
        for room in rooms.read_text().split():
            per_shard[cl.master_of(cluster.key_slot(f"mc:{{r{room}}}:room"))] += 1
        # What each node costs with the daemons connected and nobody
        # talking (cluster bus, cron, the daemons' heartbeats), to take
        # off each step's CPU: what is left is the messages' cost.
        t0, idle0 = time.monotonic(), [sched_us(n.proc.pid) for n in cl.nodes]
        time.sleep(3)
        idle = [(sched_us(n.proc.pid) - a) / (time.monotonic() - t0) for n, a in zip(cl.nodes, idle0)]
        before = [commandstats(n) for n in cl.nodes]
        res = loadgen(lg, common_args(bs, sc, workers) + [
            "--scenario=chat", f"--users={users}", f"--rooms-file={rooms}",
            f"--members={sc['members']}", f"--senders={sc['senders']}",
            "--rates=" + ",".join(f"{r:g}" for r in sc["rates"]),
            f"--step-seconds={sc.get('step_seconds', 1.5)}", f"--label={sc['name']}",
            f"--stop-p99-ms={sc.get('stop_p99_ms', 50)}"], timeout=900)
        res["rooms_per_shard"] = per_shard
        res["idle_us_per_s"] = {f"shard{i}": v for i, v in enumerate(idle)}
        res["commandstats"] = [commandstats_delta(b, commandstats(n)) for b, n in zip(before, cl.nodes)]
        return res


def run_storm(sc, lg, build_dir, workers):
    """See the storm entry of STANDARD. The generator's times and the
    driver's are both CLOCK_MONOTONIC."""
    n_rooms, members, away = sc["rooms"], sc["members"], sc["away"]
    n = n_rooms * members
    daemons, workers = idle_plan({"connections": n, "daemons": "auto"}, workers)
    preflight(n, daemons)
    # Accounts 0..members-1 are the members (each room has them all), the
    # last one the sender's; the last daemon is the sender's and stays up.
    with BenchStack(build_dir, members + 1, daemons=daemons + 1, shared_auth=sc.get("auth") == "shared") as bs:
        h, redis = bs.harness, bs.stack.redis
        held, sender_d = bs.daemons[:-1], bs.daemons[-1]
        rooms = create_rooms(lg, sender_d.bus.address, n_rooms, bs.stack.dir)
        room_ids = rooms.read_text().split()
        args = [f"--workers={workers}", "--scenario=storm", f"--users={members}", f"--rooms-file={rooms}",
                f"--members={members}", f"--away={away}", f"--storm-timeout={sc['timeout']}",
                f"--label={sc['name']}", f"--pid=redis:{redis.proc.pid}"]
        args += [f"--target=127.0.0.1:{d.port}" for d in held]
        log("# " + " ".join(str(a) for a in [Path(lg).name] + args))
        gen = subprocess.Popen([lg] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
        ready = threading.Event()

        def relay():
            for line in gen.stderr:
                log(line.rstrip())
                if "storm: ready" in line:
                    ready.set()
        threading.Thread(target=relay, daemon=True).start()
        try:
            t0 = time.monotonic()
            h.wait_until(lambda: ready.is_set() or gen.poll() is not None, sc["timeout"], interval=0.5,
                         what="the members in their rooms")
            if not ready.is_set():
                raise RuntimeError(f"mc-loadgen exited ({gen.returncode}) before the members were in")
            t_fill = time.monotonic() - t0
            # The sender connects only to send: it would not read the
            # presence of thousands leaving and coming back, and the
            # daemon would close it (1013) for reading too slowly.
            jar = sender_d.login("u%05d" % members, "pw")
            # One message before, so that every member has an id for `since`.
            sent = send_all(h, sender_d.ws(jar=jar), room_ids, ["before"], "b")
            time.sleep(2)

            t_stop = time.monotonic()
            for d in held:
                d.proc.send_signal(signal.SIGTERM)
            problems = [p for p in (d.cleanup() for d in held) if p]
            t_stopped = time.monotonic()
            sent += send_all(h, sender_d.ws(jar=jar), room_ids, [f"away {i}" for i in range(away)], "a")
            stats0, redis0, auth0 = commandstats(redis), sched_us(redis.proc.pid), bs.auth_cpu_us()
            t_restart = time.monotonic()
            for d in held:
                d.start(keep_port=True)
            for d in held:
                d.wait_ready(60)
            t_ready = time.monotonic()
            out, _ = gen.communicate(timeout=sc["timeout"] + 120)
            if gen.returncode != 0:
                raise RuntimeError(f"mc-loadgen exited with {gen.returncode}")
            res = json.loads(out)
            redis_us = sched_us(redis.proc.pid) - redis0
            stats = commandstats_delta(stats0, commandstats(redis))
            daemon_us = [sched_us(d.proc.pid) for d in held]
            # Spawned helpers started with their daemons, after auth0.
            auth_us = bs.auth_cpu_us() - (auth0 if bs.auth else 0)
        finally:
            stop_group(gen)

        def since_restart(ns):
            return ns / 1e9 - t_restart if ns else None
        res.update({
            "fill_s": t_fill, "stop_s": t_stopped - t_stop, "stop_problems": problems,
            "sent_acknowledged": sent, "daemons": len(held), "workers": workers,
            "ready_s": t_ready - t_restart,
            "all_back_s": since_restart(res["t_all_back_ns"]),
            "all_caught_up_s": since_restart(res["t_all_caught_up_ns"]),
            "first_drop_s": since_restart(res["t_first_drop_ns"]),
            "restart_to_end_s": res["t_end_ns"] / 1e9 - t_restart,
            "daemon_cpu_s": sum(daemon_us) / 1e6, "daemon_cpu_s_each": [u / 1e6 for u in daemon_us],
            "redis_cpu_s": redis_us / 1e6, "auth_cpu_s": auth_us / 1e6, "auth": sc.get("auth", "spawned"),
            "commands": {c: {"calls": v[0], "usec": v[1]} for c, v in sorted(delta_items(stats))},
        })
        log(f"# storm: {res['rejoined']} of {n} back {fmt(res['all_back_s'], 1)} s after the restart "
            f"(daemons ready after {res['ready_s']:.1f} s), caught up {res['caught_up']}, "
            f"replayed {res['replayed']} of {n * away}; daemon CPU {res['daemon_cpu_s']:.1f} s, "
            f"auth helper CPU {res['auth_cpu_s']:.1f} s ({res['auth']}), Redis CPU {res['redis_cpu_s']:.1f} s")
        return res


def delta_items(stats):
    return sorted(stats.items(), key=lambda kv: -kv[1][1])


def send_all(h, ws, rooms, texts, tag):
    """ws joins the rooms and sends each text to each, one at a time, each
    acknowledged, then closes; returns how many. tag keeps the refs of one
    call apart from another's."""
    n = 0
    for room in rooms:
        if "error" in h.join(ws, room, timeout=120)[0]:
            raise RuntimeError(f"the sender could not join room {room}")
        for t in texts:
            ref = f"{tag}{n}"
            ws.send_json({"command": "send", "room": room, "message": t, "ref": ref})
            reply = ws.expect(lambda o: o.get("ref") == ref and "msg_type" not in o, 30,
                              what=f"the answer to send {ref}")
            if reply[0].get("error"):
                raise RuntimeError(f"send refused: {reply[0]}")
            n += 1
    ws.close()
    return n


def fd_limit():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def per_process_connections():
    """Connections one process (daemon or generator worker) can hold here."""
    hard = fd_limit()
    return max(1000, (hard if hard != resource.RLIM_INFINITY else 1 << 20) - FD_RESERVE)


def idle_plan(sc, workers):
    """Daemons and generator processes for sc's connections: each holds at
    most per_process_connections() descriptors."""
    n = sc["connections"]
    per = per_process_connections()
    daemons = sc.get("daemons", 1)
    if daemons == "auto":
        daemons = math.ceil(n / per)
    return daemons, max(workers, math.ceil(n / per))


def preflight(n, daemons):
    """Fails early, with the reason, when the machine cannot hold n
    connections (both ends are descriptors here) in its memory."""
    if daemons > 32:
        raise RuntimeError(f"{n} connections need {daemons} daemons at this fd limit ({fd_limit()}); "
                           "mc-loadgen takes 32 targets: raise the limit (ulimit -Hn) or ask for fewer")
    try:
        allocated, _, fmax = (int(x) for x in Path("/proc/sys/fs/file-nr").read_text().split())
        if fmax - allocated < 2 * n + 10000:
            raise RuntimeError(f"fs.file-max {fmax} ({allocated} in use) is too low for {n} connections "
                               f"(both ends: {2 * n} descriptors): sysctl -w fs.file-max=...")
        avail = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return
    # Measured here: ~2–2.5 KB daemon, ~9.6 KB kernel (both ends), the generator's tables, slack.
    need = n * 16
    if avail < need:
        raise RuntimeError(f"{avail // 1024} MB available, {n} connections need about {need // 1024} MB")


def run_idle(sc, lg, build_dir, workers):
    users = sc.get("users", 100)
    daemons, workers = idle_plan(sc, workers)
    n = sc["connections"]
    preflight(n, daemons)
    if daemons > 1:
        log(f"# {n} connections at {per_process_connections()} per process (fd limit {fd_limit()}): "
            f"{daemons} daemons on one Redis, {workers} generator processes")
    with BenchStack(build_dir, users, daemons=daemons) as bs:
        args = common_args(bs, sc, workers) + [
            "--scenario=idle", f"--users={users}", f"--connections={n}",
            f"--idle-steps={sc['idle_steps']}", f"--idle-hold={sc.get('idle_hold', 2)}", f"--label={sc['name']}"]
        args += [f"--check-bus={d.bus.address}" for d in bs.daemons]
        # Opening is the slow part: allow ~2 ms per handshake.
        return loadgen(lg, args, timeout=max(600, n // 500))


def run_login(sc, lg, build_dir, workers):
    member_users = sc.get("users", 100)
    users = member_users + sc["right_slots"] + sc["wrong_slots"]
    with BenchStack(build_dir, users) as bs:
        rooms = create_rooms(lg, bs.daemons[0].bus.address, sc["rooms"], bs.stack.dir)
        args = common_args(bs, sc, workers) + [
            "--scenario=login", f"--users={users}", f"--member-users={member_users}",
            f"--rooms-file={rooms}", f"--members={sc['members']}", "--senders=1",
            f"--bg-rate={sc['bg_rate']}", f"--right-slots={sc['right_slots']}",
            f"--wrong-slots={sc['wrong_slots']}", f"--step-seconds={sc['step_seconds']}",
            f"--label={sc['name']}"]
        return loadgen(lg, args, timeout=600)


def run_reconnect(sc, lg, build_dir, workers):
    users = sc.get("users", 100)
    with BenchStack(build_dir, users) as bs:
        args = common_args(bs, sc, workers) + [
            "--scenario=reconnect", f"--users={users}",
            "--rates=" + ",".join(str(s) for s in sc["slots"]),
            f"--step-seconds={sc['step_seconds']}", f"--label={sc['name']}"]
        return loadgen(lg, args, timeout=600)


def run_coldstart(sc, lg, build_dir, workers):
    """Socket activation as systemd does it: the listening socket exists,
    the first client connects and sends its request, then the daemon is
    started with the socket as fd 3; the time is from the request to the
    first byte of the answer (Redis and the bus already run)."""
    with BenchStack(build_dir, 4, daemons=0) as bs:
        st = bs.stack
        st.redis.start()
        bus = st.bus
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(128)
        port = lsock.getsockname()[1]
        d = bs.harness.Daemon(st, "cold", bus, mode="socket", args=DAEMON_ARGS)
        d.port = port
        argv = d.argv()
        env = dict(st.base_env)
        env["LISTEN_FDS"] = "1"
        env["LISTEN_FDNAMES"] = "http"
        env.pop("NOTIFY_SOCKET", None)

        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        t0 = time.monotonic()
        c.sendall(f"GET /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        out = open(d.logfile, "ab")
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=False,
                                preexec_fn=bs.harness.socket_activation_exec(lsock.fileno(), argv, env))
        out.close()
        try:
            first = c.recv(64)
            t1 = time.monotonic()
            # And when it is fully up (Redis, bus name, rooms): /healthz 200.
            deadline = time.monotonic() + 10
            t_ready = None
            while time.monotonic() < deadline:
                try:
                    r = bs.harness.http(f"http://127.0.0.1:{port}", "GET", "/healthz", timeout=2)
                    if r.status == 200:
                        t_ready = time.monotonic()
                        break
                except OSError:
                    pass
                time.sleep(0.002)
        finally:
            c.close()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            lsock.close()
        status = first.split(b"\r\n", 1)[0].decode(errors="replace")
        return {"scenario": "coldstart", "first_response_ms": (t1 - t0) * 1000, "status_line": status,
                "healthy_ms": (t_ready - t0) * 1000 if t_ready else None}


def run_failover(sc, lg, build_dir, workers):
    """Not mc-loadgen: two WebSocket clients of the harness, one sending
    with refs and timing each acknowledgement, one receiving."""
    with BenchStack(build_dir, 4, daemons=0) as bs:
        h, st = bs.harness, bs.stack
        replica, sentinels = st.start_replicated(n_sentinels=3, down_after_ms=1000)
        args = DAEMON_ARGS + [f"--redis-sentinel={x.address}" for x in sentinels] + ["--redis-master=mc"]
        d1 = st.start_daemon(args=args, own_bus=True)
        d2 = st.start_daemon(args=args, own_bus=True)
        room = st.create_room("Failover", bus=d1.bus)
        a = d1.ws(jar=d1.login("u00000", "pw"))
        b = d2.ws(jar=d2.login("u00001", "pw"))
        h.join(a, room)
        h.join(b, room)
        a.drain(0.2)
        b.drain(0.2)

        received = {}                   # text -> [receive times]
        stop = threading.Event()

        def reader():
            while not stop.is_set():
                try:
                    o, _ = b.recv_json(0.2)
                except (socket.timeout, TimeoutError):
                    continue
                except OSError:
                    return
                if o.get("msg_type") == 0 and o.get("room") == room:
                    received.setdefault(o["message"], []).append(time.monotonic())

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        sent, acked, told = {}, {}, 0
        t0 = time.monotonic()
        t_kill = t_promoted = None
        old = sentinels[0].master_address()
        n = 0
        while time.monotonic() - t0 < sc["seconds"]:
            now = time.monotonic()
            if t_kill is None and now - t0 >= sc["kill_at"]:
                st.redis.kill()
                t_kill = time.monotonic()
            if t_kill is not None and t_promoted is None:
                try:
                    if sentinels[1].master_address() != old:
                        t_promoted = time.monotonic()
                except (OSError, RuntimeError):
                    pass
            if now >= t0 + n / sc["rate"]:
                ref = f"f{n}"
                sent[ref] = now
                a.send_json({"command": "send", "room": room, "message": ref, "ref": ref})
                n += 1
            try:
                o, _ = a.recv_json(0.002)
            except (socket.timeout, TimeoutError):
                continue
            ref = o.get("ref")
            if ref in sent:
                if o.get("ok"):
                    acked[ref] = time.monotonic()
                elif o.get("error"):
                    told += 1
        end = time.monotonic() + 5
        while time.monotonic() < end and not set(acked) <= set(received):
            time.sleep(0.1)
        stop.set()
        t.join(2)
        after_kill = [acked[r] - t_kill for r in acked if sent[r] >= t_kill] if t_kill else []
        delays = [(received[r][0] - sent[r]) * 1000 for r in acked if r in received]
        return {"scenario": "failover", "sent": n, "acked": len(acked), "told": told,
                "lost": sum(1 for r in acked if r not in received),
                "doubled": sum(1 for r in received if len(received[r]) > 1),
                "promoted_s": (t_promoted - t_kill) if t_promoted and t_kill else None,
                "first_ack_after_kill_s": min(after_kill) if after_kill else None,
                "p99_delay_ms": sorted(delays)[int(len(delays) * 0.99)] if delays else None,
                "max_delay_ms": max(delays) if delays else None}


def commandstats(redis):
    """INFO commandstats of one redis-server: {command: (calls, usec)}."""
    out = {}
    for line in redis.command("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, fields = line[len("cmdstat_"):].partition(":")
            f = dict(kv.split("=", 1) for kv in fields.split(","))
            out[name] = (int(f["calls"]), int(f["usec"]))
    return out


def commandstats_delta(a, b):
    return {k: (b[k][0] - a.get(k, (0, 0))[0], b[k][1] - a.get(k, (0, 0))[1])
            for k in b if b[k][0] != a.get(k, (0, 0))[0]}


def hold_members(lg, bs, sc, room_file, n, workers):
    """mc-loadgen holding n members of the room in room_file, users
    u00000... one connection each, sending nothing; returns the
    running generator (its own process group) once Redis counts all n
    present."""
    args = common_args(bs, sc, workers) + [
        "--scenario=chat", f"--users={n}", f"--rooms-file={room_file}", f"--members={n}",
        "--senders=0", "--rates=0", "--step-seconds=3600", "--fixed", "--connect-timeout=3600",
        f"--label={sc['name']}"]
    log("# " + " ".join(str(a) for a in [Path(lg).name] + args))
    gen = subprocess.Popen([lg] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    gen.members_open = threading.Event()

    def relay():
        for line in gen.stderr:
            log(line.rstrip())
            if "members open" in line:
                gen.members_open.set()
    threading.Thread(target=relay, daemon=True).start()
    return gen


def wait_idle(pids, timeout, busy=0.05):
    """Until none of pids used more than `busy` of a core over a second:
    a daemon that relays the presence of thousands of joins is still
    sending long after Redis has them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = [sched_us(p) for p in pids]
        time.sleep(1)
        if all(sched_us(p) - b < busy * 1e6 for p, b in zip(pids, before)):
            return
    raise TimeoutError(f"the daemons were still busy after {timeout} s")


def stop_group(p):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)


def run_joincost(sc, lg, build_dir, workers):
    """For each size N: a room with N users present (mc-loadgen), then
    `rounds` times: `probes` more users connect and, once every one of
    them is connected, join one after another, then leave; Redis's INFO
    commandstats before and after those joins gives the Redis time per
    join. Filling a room of 10,000 takes many minutes (each join before
    costs more), so one fill serves every round."""
    sizes, probes, rounds = sc["sizes"], sc["probes"], sc["rounds"]
    users = max(sizes) + probes * rounds * len(sizes)
    # Members alternate over the daemons: each relays presence to its own,
    # so two share the fill's work; the probes join through the first.
    with BenchStack(build_dir, users, daemons=sc.get("daemons", 1)) as bs:
        h, redis, d = bs.harness, bs.stack.redis, bs.daemons[0]
        out = {"scenario": "joincost", "sizes": []}
        for k, n in enumerate(sizes):
            room = create_rooms(lg, d.bus.address, 1, bs.stack.dir).read_text().split()[0]
            room_file = Path(bs.stack.dir) / f"room-{n}.txt"
            room_file.write_text(room + "\n")
            users_key = f"mc:{{r{room}}}:users"
            t0 = time.monotonic()
            gen = hold_members(lg, bs, sc, room_file, n, workers)
            try:
                h.wait_until(lambda: gen.members_open.is_set() or gen.poll() is not None,
                             3600, interval=0.5, what=f"{n} present")
                if gen.poll() is not None:
                    # The smaller sizes measured so far still count.
                    log(f"!! join-cost: mc-loadgen exited ({gen.returncode}) before {n} were present")
                    out["sizes"].append({"present": n, "failed": "mc-loadgen exited", "rounds": []})
                    break
                wait_idle([x.proc.pid for x in bs.daemons], 1800)
                t_fill = time.monotonic() - t0
                if redis.command("HLEN", users_key) < n:
                    raise RuntimeError(f"fewer than {n} present in room {room}")
                got = []
                for r in range(rounds):
                    base = max(sizes) + (k * rounds + r) * probes
                    got.append(probe_joins(h, redis, d, room, users_key, n,
                                           ["u%05d" % (base + j) for j in range(probes)]))
            finally:
                stop_group(gen)
            h.wait_until(lambda: redis.command("HLEN", users_key) == 0, 600, interval=0.2,
                         what="the room empty again")
            out["sizes"].append({"present": n, "fill_s": t_fill, "rounds": got})
        return out


def probe_joins(h, redis, d, room, users_key, n, names):
    """names connect, then join room one at a time, then leave: the Redis
    time of those joins, by command."""
    clients = [d.ws(jar=d.login(u, "pw")) for u in names]
    for c in clients:
        c.drain(0.1)
    before, cpu0 = commandstats(redis), sched_us(redis.proc.pid)
    t1 = time.monotonic()
    for c in clients:
        reply, _ = h.join(c, room, timeout=60)
        if "error" in reply:
            raise RuntimeError(f"probe join refused: {reply}")
    wall_ms = (time.monotonic() - t1) * 1000 / len(names)
    cpu_us = sched_us(redis.proc.pid) - cpu0
    delta = commandstats_delta(before, commandstats(redis))
    present = redis.command("HLEN", users_key)
    for c in clients:
        c.close()
    h.wait_until(lambda: redis.command("HLEN", users_key) <= n, 120, interval=0.1, what="the probes gone")
    scripts = [delta.get(c, (0, 0)) for c in ("evalsha", "eval")]
    calls, usec = sum(x[0] for x in scripts), sum(x[1] for x in scripts)
    row = {"present_at_end": present, "joins": len(names), "script_calls": calls, "script_usec": usec,
           "script_us_per_join": usec / len(names), "script_us_per_call": usec / calls if calls else None,
           "redis_us_per_join": sum(u for _, u in delta.values()) / len(names), "wall_ms_per_join": wall_ms,
           # commandstats' usec is wall time inside the command: on a busy
           # machine it includes time Redis was preempted. The process's
           # run time over the same joins (and whatever else it did) is the
           # cross-check.
           "redis_cpu_us_per_join": cpu_us / len(names),
           "commands": {c: {"calls": v[0], "usec": v[1]} for c, v in sorted(delta.items())}}
    log(f"# join-cost: {n} present: {row['script_us_per_join']:.1f} us of scripts per join "
        f"({calls} calls), {row['redis_us_per_join']:.1f} us of all commands, {wall_ms:.1f} ms wall")
    return row


RUNNERS = {"chat": run_chat, "idle": run_idle, "login": run_login, "reconnect": run_reconnect,
           "coldstart": run_coldstart, "failover": run_failover, "joincost": run_joincost,
           "cluster": run_cluster, "storm": run_storm}


# --- medians ------------------------------------------------------------------

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def kept_up(s):
    """The server delivered what was offered, lost nothing and refused nothing
    (latency aside)."""
    closes = sum(s["closes"].values())
    errs = s["errors"].get("RATE_LIMITED", 0) + s["errors"].get("UNAVAILABLE", 0)
    return (s["lost"] == 0 and closes == 0 and errs == 0 and not s["timed_out"]
            and s["deliveries_per_s"] >= 0.9 * s["offered_deliveries_per_s"])


def silent_loss(s):
    """Deliveries lost without any RATE_LIMITED, UNAVAILABLE or close telling anyone."""
    closes = sum(s["closes"].values())
    errs = sum(s["errors"].values())
    return s["lost"] > 0 and closes == 0 and errs == 0


def step_ok(s, stop_ms):
    closes = sum(s["closes"].values())
    errs = s["errors"].get("RATE_LIMITED", 0) + s["errors"].get("UNAVAILABLE", 0)
    return (s["lost"] == 0 and closes == 0 and errs == 0 and not s["timed_out"]
            and s["latency_us"]["p99"] <= stop_ms * 1000)


def summarize_chat(sc, runs):
    stop = runs[0]["params"]["stop_p99_ms"]
    members = sc["members"]
    n_steps = max(len(r["steps"]) for r in runs)
    steps = []
    for i in range(n_steps):
        got = [r["steps"][i] for r in runs if i < len(r["steps"])]
        steps.append({
            "offered_deliveries_per_s": got[0]["offered_deliveries_per_s"],
            "offered_msgs_per_s": got[0]["offered_msgs_per_s"],
            "runs": len(got),
            "ok_runs": sum(step_ok(s, stop) for s in got),
            "deliveries_per_s": median([s["deliveries_per_s"] for s in got]),
            "p50_ms": median([s["latency_us"]["p50"] / 1000 for s in got]),
            "p99_ms": median([s["latency_us"]["p99"] / 1000 for s in got]),
            "max_ms": median([s["latency_us"]["max"] / 1000 for s in got]),
            "lost": median([s["lost"] for s in got]),
            "lost_max": max(s["lost"] for s in got),
            "rate_limited": max(s["errors"].get("RATE_LIMITED", 0) for s in got),
            "closes_1013": max(s["closes"].get("1013", 0) for s in got),
            "closes": max(sum(s["closes"].values()) for s in got),
            "unavailable": max(s["errors"].get("UNAVAILABLE", 0) for s in got),
            "silent_loss": max(s["lost"] if silent_loss(s) else 0 for s in got),
            "daemon_us_per_delivery": median([s["cpu_per_delivery_us"].get("daemon") for s in got]),
            "redis_us_per_delivery": median([s["cpu_per_delivery_us"].get("redis") for s in got]),
            "daemon_load": median([s["cpu_load"].get("daemon") for s in got]),
            "redis_load": median([s["cpu_load"].get("redis") for s in got]),
            "loadgen_load": median([s["cpu_load"].get("loadgen") for s in got]),
            "others_load": median([(s.get("host_load") or {}).get("others") for s in got]),
            "daemon_rss_kb": median([s["rss_kb"].get("daemon") for s in got]),
            "redis_rss_kb": median([s["rss_kb"].get("redis") for s in got]),
        })

    def per_run(r):
        ok = [s for s in r["steps"] if step_ok(s, stop)]
        best = max(ok, key=lambda s: s["deliveries_per_s"]) if ok else None
        up = [s for s in r["steps"] if kept_up(s)]
        loaded = max(up, key=lambda s: s["deliveries_per_s"]) if up else None
        at100k = next((s for s in r["steps"] if abs(s["offered_deliveries_per_s"] - 100e3) < 1), None)
        # CPU per delivery where the daemon was busiest while still within
        # the limits: per-delivery costs fall with batching, so quote
        # the loaded figure.
        return {
            "max_ok_deliveries_per_s": best["deliveries_per_s"] if best else 0,
            "max_kept_up_deliveries_per_s": loaded["deliveries_per_s"] if loaded else 0,
            "daemon_us_per_delivery": loaded["cpu_per_delivery_us"].get("daemon") if loaded else None,
            "redis_us_per_delivery": loaded["cpu_per_delivery_us"].get("redis") if loaded else None,
            "silent_loss": sum(s["lost"] for s in r["steps"] if silent_loss(s)),
            "p99_ms_at_100k": at100k["latency_us"]["p99"] / 1000 if at100k else None,
            "lost_at_100k": at100k["lost"] if at100k else None,
            "lost_total": sum(s["lost"] for s in r["steps"]),
            "stop_reason": r.get("stop_reason"),
            "setup_per_s": r["setup"]["per_s"],
            "daemon_rss_kb_loaded": r["steps"][-1]["rss_kb"].get("daemon"),
        }

    pr = [per_run(r) for r in runs]
    summary = {k: median([p[k] for p in pr]) for k in
               ("max_ok_deliveries_per_s", "max_kept_up_deliveries_per_s", "daemon_us_per_delivery",
                "redis_us_per_delivery", "p99_ms_at_100k", "lost_at_100k", "lost_total", "setup_per_s",
                "daemon_rss_kb_loaded")}
    summary["silent_loss_max"] = max(p["silent_loss"] for p in pr)
    summary["stop_reasons"] = [p["stop_reason"] for p in pr]
    summary["stop_p99_ms"] = stop
    d = summary["daemon_us_per_delivery"]
    summary["one_core_deliveries_per_s"] = 1e6 / d if d else None
    summary["members"] = members
    return {"steps": steps, "summary": summary, "per_run": pr}


def summarize_idle(sc, runs):
    n = len(runs[0]["series"])
    series = []

    def slab(s):
        k = s.get("kernel")
        return k["slab_kb"] if k and k.get("ok") else None

    for i in range(n):
        got = [r["series"][i] for r in runs]
        series.append({"connections": median([s["connections"] for s in got]),
                       "seconds": median([s.get("seconds") for s in got]),
                       "daemon_rss_kb": median([s["rss_kb"]["daemon"] for s in got]),
                       "redis_rss_kb": median([s["rss_kb"]["redis"] for s in got]),
                       "slab_kb": median([slab(s) for s in got]),
                       "handshakes_per_s": median([s["handshakes_per_s"] for s in got])})
    base = median([r["baseline"]["rss_kb"]["daemon"] for r in runs])
    summary = {"connections": median([r["summary"]["connections"] for r in runs]),
               "daemon_kb_per_conn": median([r["summary"]["daemon_kb_per_conn"] for r in runs]),
               "redis_kb_per_conn": median([r["summary"]["redis_kb_per_conn"] for r in runs]),
               "idle_daemon_cpu_us_per_s": median([r["summary"]["idle_cpu_us_per_s"]["daemon"] for r in runs]),
               "asked": sc["connections"], "workers": runs[0]["params"]["workers"]}
    # Since the idle-200k variant: the kernel's share, the generator's, and
    # whether every connection still answered at the end.
    for k in ("daemons", "open_seconds", "still_open", "loadgen_kb_per_conn", "slab_kb_per_conn",
              "socket_slab_kb_per_conn", "sunreclaim_kb_per_conn", "mem_used_kb_per_conn", "tcp_mem_pages_delta",
              "sockets_used_delta"):
        if all(k in r["summary"] for r in runs):
            summary[k] = median([r["summary"][k] for r in runs])
    # The machine is shared: other people's sockets come and go during a
    # run. Per TCP socket (the change in sockstat's "TCP: inuse"), the
    # kernel's figures do not depend on them; a connection is two sockets
    # here (the daemon's and the generator's, alike in the kernel).
    def per_socket(r):
        b, h = r["baseline"].get("kernel"), r.get("held", {}).get("kernel")
        if not b or not h or not b.get("ok") or not h.get("ok") or h["tcp_inuse"] <= b["tcp_inuse"]:
            return None
        n = h["tcp_inuse"] - b["tcp_inuse"]
        return {"sockets": n, "slab_kb": (h["slab_kb"] - b["slab_kb"]) / n,
                "sunreclaim_kb": (h["sunreclaim_kb"] - b["sunreclaim_kb"]) / n,
                "caches_kb": {c: (h["slab_caches_kb"][c] - b["slab_caches_kb"][c]) / n for c in h["slab_caches_kb"]}}

    ps = [per_socket(r) for r in runs]
    if all(ps):
        summary["kernel_per_socket"] = {
            "sockets": median([p["sockets"] for p in ps]),
            "slab_kb": median([p["slab_kb"] for p in ps]),
            "sunreclaim_kb": median([p["sunreclaim_kb"] for p in ps]),
            "caches_kb": {c: median([p["caches_kb"][c] for p in ps]) for c in ps[0]["caches_kb"]}}
    if all("probe" in r for r in runs):
        summary["still_open_min"] = min(r["summary"]["still_open"] for r in runs)
        summary["lost_max"] = max(r["probe"]["lost"] for r in runs)
        summary["idle_s"] = median([r["probe"]["idle_s"] for r in runs])
        counted = [r["held"].get("daemon_connections") or [] for r in runs]
        summary["daemon_connections"] = [sum(c) if c and None not in c else None for c in counted]
        summary["setup_login_retries"] = sum(r.get("setup_login_retries", 0) for r in runs)
    return {"series": [{"connections": 0, "seconds": None, "daemon_rss_kb": base,
                        "redis_rss_kb": median([r["baseline"]["rss_kb"]["redis"] for r in runs]),
                        "slab_kb": median([slab(r["baseline"]) for r in runs]),
                        "handshakes_per_s": None}] + series,
            "summary": summary}


def summarize_login(sc, runs):
    phases = []
    for i, st in enumerate(runs[0]["steps"]):
        got = [r["steps"][i] for r in runs]
        phases.append({
            "phase": st["label"],
            "bg_p50_ms": median([s["latency_us"]["p50"] / 1000 for s in got]),
            "bg_p99_ms": median([s["latency_us"]["p99"] / 1000 for s in got]),
            "bg_lost": max(s["lost"] for s in got),
            "right_logins_per_s": median([s["http_right"].get("303", 0) / s["seconds"] for s in got]),
            "right_p50_ms": median([s["right_login_latency_us"]["p50"] / 1000 for s in got]),
            "right_p99_ms": median([s["right_login_latency_us"]["p99"] / 1000 for s in got]),
            "right_max_ms": median([s["right_login_latency_us"]["max"] / 1000 for s in got]),
            "wrong_answered": median([s["http_wrong"].get("401", 0) for s in got]),
            "wrong_p50_ms": median([s["wrong_login_latency_us"]["p50"] / 1000 for s in got]),
            "http_right": got[0]["http_right"], "http_wrong": got[0]["http_wrong"],
            "failed": max(s["ops_failed"] for s in got),
            "daemon_us_per_login": median([s["cpu_per_op_us"].get("daemon") for s in got])
            if st["label"] == "right-passwords" else None,
            "auth_us_per_login": median([s["cpu_per_op_us"].get("auth") for s in got])
            if st["label"] == "right-passwords" else None,
            "daemon_load": median([s["cpu_load"].get("daemon") for s in got]),
            "others_load": median([(s.get("host_load") or {}).get("others") for s in got]),
        })
    by = {p["phase"]: p for p in phases}
    base = by["baseline"]["bg_p99_ms"]
    return {"phases": phases, "summary": {
        "right_p99_ms": max(by["right-passwords"]["right_p99_ms"], by["mixed"]["right_p99_ms"]),
        "bg_p99_baseline_ms": base,
        "bg_p99_wrong_ms": by["wrong-passwords"]["bg_p99_ms"],
        "wrong_adds_p99_ms": by["wrong-passwords"]["bg_p99_ms"] - base,
        "mixed_adds_p99_ms": by["mixed"]["bg_p99_ms"] - base,
        "right_logins_per_s": by["right-passwords"]["right_logins_per_s"],
    }}


def summarize_reconnect(sc, runs):
    steps = []
    for i, st in enumerate(runs[0]["steps"]):
        got = [r["steps"][i]["result"] for r in runs]
        steps.append({
            "in_flight": st["in_flight"],
            "handshakes_per_s": median([s["ops_per_s"] for s in got]),
            "p50_ms": median([s["op_latency_us"]["p50"] / 1000 for s in got]),
            "p99_ms": median([s["op_latency_us"]["p99"] / 1000 for s in got]),
            "failed": max(s["ops_failed"] for s in got),
            "daemon_us_per_handshake": median([s["cpu_per_op_us"].get("daemon") for s in got]),
            "redis_us_per_handshake": median([s["cpu_per_op_us"].get("redis") for s in got]),
            "daemon_load": median([s["cpu_load"].get("daemon") for s in got]),
        })
    return {"steps": steps, "summary": {"handshakes_per_s": max(s["handshakes_per_s"] for s in steps)}}


def summarize_coldstart(sc, runs):
    return {"runs": [r["first_response_ms"] for r in runs],
            "summary": {"first_response_ms": median([r["first_response_ms"] for r in runs]),
                        "first_response_max_ms": max(r["first_response_ms"] for r in runs),
                        "healthy_ms": median([r["healthy_ms"] for r in runs]),
                        "status_line": runs[0]["status_line"]}}


def summarize_failover(sc, runs):
    keys = ("promoted_s", "first_ack_after_kill_s", "p99_delay_ms", "max_delay_ms")
    return {"runs": runs,
            "summary": dict({k: median([r[k] for r in runs if r[k] is not None]) for k in keys},
                            lost=sum(r["lost"] for r in runs), doubled=sum(r["doubled"] for r in runs),
                            acked=sum(r["acked"] for r in runs), told=sum(r["told"] for r in runs))}


def summarize_joincost(sc, runs):
    """Per size, medians over every probe round of every run."""
    rows = []
    for k, n in enumerate(sc["sizes"]):
        got = [g for r in runs if len(r["sizes"]) > k for g in r["sizes"][k]["rounds"]]
        if not got:
            continue
        rows.append({"present": n, "rounds": len(got), "joins": sum(g["joins"] for g in got),
                     "script_calls_per_join": median([g["script_calls"] / g["joins"] for g in got]),
                     **{key: median([g[key] for g in got if g.get(key) is not None])
                        for key in ("script_us_per_join", "redis_us_per_join", "wall_ms_per_join",
                                    "redis_cpu_us_per_join")},
                     "fill_s": median([r["sizes"][k]["fill_s"] for r in runs if len(r["sizes"]) > k]),
                     "script_us_per_join_rounds": [g["script_us_per_join"] for g in got]})
    first = rows[0]["script_us_per_join"] if rows else None
    for r in rows:
        r["ratio_to_smallest"] = r["script_us_per_join"] / first if first else None
    return {"runs": runs, "sizes": rows, "summary": {"sizes": rows}}

def summarize_cluster(sc, runs):
    """summarize_chat's figures, and per step each shard's CPU per message
    sent (run time from schedstat, less what the shard used idle in as
    long: see run_cluster)."""
    out = summarize_chat(sc, runs)
    # Not a one-daemon figure: keep it out of the one-core target.
    out["summary"].pop("one_core_deliveries_per_s")
    shards = sorted({k for r in runs for st in r["steps"] for k in st["cpu_us"] if k.startswith("shard")},
                    key=lambda k: int(k[5:]))
    for i, st in enumerate(out["steps"]):
        got = [r["steps"][i] for r in runs if i < len(r["steps"])]
        st["msgs_per_s"] = median([g["sent"] / g["seconds"] for g in got])
        runs_got = [(r, r["steps"][i]) for r in runs if i < len(r["steps"])]

        def used(r, g, k):
            return g["cpu_us_sched"][k] - r["idle_us_per_s"][k] * g["measured_s"]
        st["shard_us_per_msg"] = {k: median([used(r, g, k) / g["sent"] for r, g in runs_got if g["sent"]])
                                  for k in shards}
        st["shard_load"] = {k: median([g["cpu_load"][k] for g in got]) for k in shards}
        st["redis_us_per_msg"] = median([sum(used(r, g, k) for k in shards) / g["sent"]
                                         for r, g in runs_got if g["sent"]])
        st["redis_cores"] = median([sum(g["cpu_load"][k] for k in shards) for g in got])
    out["summary"]["masters"] = sc["masters"]
    out["summary"]["rooms_per_shard"] = runs[0].get("rooms_per_shard")
    out["summary"]["idle_us_per_s"] = {k: median([r["idle_us_per_s"][k] for r in runs]) for k in shards}
    return out


def summarize_storm(sc, runs):
    keys = ("fill_s", "ready_s", "first_drop_s", "all_back_s", "all_caught_up_s", "restart_to_end_s",
            "daemon_cpu_s", "auth_cpu_s", "redis_cpu_s", "dropped", "rejoined", "caught_up", "replayed", "attempts", "retries")
    sm = {k: median([r[k] for r in runs if r.get(k) is not None]) for k in keys}
    sm["members"] = sc["rooms"] * sc["members"]
    sm["expected_replayed"] = sm["members"] * sc["away"]
    sm["rejoin_p50_s"] = median([r["rejoin_latency_us"]["p50"] / 1e6 for r in runs])
    sm["rejoin_p99_s"] = median([r["rejoin_latency_us"]["p99"] / 1e6 for r in runs])
    return {"runs": runs, "summary": sm}


SUMMARIZERS = {"chat": summarize_chat, "idle": summarize_idle, "login": summarize_login,
               "reconnect": summarize_reconnect, "coldstart": summarize_coldstart,
               "failover": summarize_failover, "joincost": summarize_joincost,
               "cluster": summarize_cluster, "storm": summarize_storm}


# --- Markdown -----------------------------------------------------------------

def sc_rate(name):
    return next((s.get("rate") for s in STANDARD if s["name"] == name), None)


def fmt(v, nd=1, unit=""):
    if v is None:
        return "–"
    if isinstance(v, float) and v >= 10000:
        return f"{v:,.0f}{unit}"
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return f"{v:,}{unit}"
    return f"{v:,.{nd}f}{unit}"


def verdict(ok):
    return "**met**" if ok else "**missed**"


def targets_table(res):
    s = {name: r["summary"] for name, r in res.items()}
    rows = []

    def row(target, got, ok, note=""):
        rows.append(f"| {target} | {got} | {verdict(ok) if ok is not None else '–'} | {note} |")

    if "idle" in s:
        v = s["idle"]["daemon_kb_per_conn"]
        row("≤ 2 KB daemon RSS per idle connection", f"{fmt(v, 2)} KB at {fmt(s['idle']['connections'])} "
            f"connections", v <= TARGETS["idle_kb_per_conn"],
            f"reference: ~{REFERENCE['kb_per_idle_conn']} KB" + ("" if v <= 2 else f"; {v / 2:.1f}× the target"))
    for name, x in s.items():
        if res[name]["kind"] != "idle" or name == "idle" or "still_open_min" not in x:
            continue
        held = x["still_open_min"]
        kp = x.get("kernel_per_socket")
        asked = x.get("asked", x["connections"])
        row(f"{fmt(TARGETS['connections_held'])} concurrent connections held ({name})",
            f"{fmt(held)} of {fmt(asked)} open on {x['daemons']} daemon(s), every one answered a ping "
            f"after {fmt(x['idle_s'], 0)} s idle" if held == asked else
            f"{fmt(held)} of {fmt(asked)} answered a ping after {fmt(x['idle_s'], 0)} s idle",
            # A smaller run (--quick) checks the machinery, not the target.
            None if asked < TARGETS["connections_held"] else held >= TARGETS["connections_held"] and held == asked,
            f"daemon {fmt(x['daemon_kb_per_conn'], 2)} KB/conn; kernel {fmt(kp['slab_kb'] if kp else None, 1)} KB "
            f"per socket (slab), two sockets per connection here; opened in {fmt(x.get('open_seconds'), 0)} s")
    if "fanout-100" in s:
        v = s["fanout-100"]["daemon_us_per_delivery"]
        ref = s["fanout-100"].get("redis_us_per_delivery")
        row("(reference) server CPU per delivery, 100-member room", f"{fmt(v, 2)} µs daemon + {fmt(ref, 2)} µs redis",
            None, f"Django Channels original: {REFERENCE['cpu_us_per_delivery_100']} µs")
    for name in ("fanout-1000", "fanout-10000", "fanout-3000"):
        if name in s:
            v = s[name]["daemon_us_per_delivery"]
            row(f"≤ 2 µs daemon CPU per delivery ({name})", f"{fmt(v, 2)} µs",
                v is not None and v <= TARGETS["cpu_us_per_delivery_1000plus"],
                "" if v is None or v <= 2 else f"{v / 2:.1f}× the target")
    best = [(n, x["one_core_deliveries_per_s"]) for n, x in s.items() if x.get("one_core_deliveries_per_s")]
    if best:
        n, v = max(best, key=lambda t: t[1])
        kept = max(x.get("max_kept_up_deliveries_per_s") or 0 for x in s.values())
        row("≥ 500k deliveries/s on one core", f"{fmt(v, 0)}/s ({n}: 1 s ÷ daemon CPU per delivery); "
            f"most delivered here: {fmt(kept, 0)}/s", v >= TARGETS["deliveries_per_s_one_core"],
            f"reference: ~{REFERENCE['deliveries_per_s']:,}/s")
    for name in ("fanout-100", "fanout-1000", "fanout-10000", "fanout-3000", "two-daemons"):
        if name in s:
            v = s[name]["p99_ms_at_100k"]
            row(f"p99 < 10 ms at 100k deliveries/s ({name})", f"{fmt(v, 1)} ms" if v is not None else
                "not reached", v is not None and v < TARGETS["p99_ms_at_100k"])
    if "many-rooms" in s:
        v = s["many-rooms"]["max_ok_deliveries_per_s"]
        lost = s["many-rooms"]["lost_at_100k"]
        row("many rooms ≥ 100k deliveries/s with Redis, zero loss", f"{fmt(v, 0)}/s; lost at 100k: {fmt(lost)}",
            v >= TARGETS["many_rooms_deliveries_per_s"] and lost == 0)
    if "overload" in res:
        st = res["overload"]["steps"][0]
        row(f"sustained overload ({fmt(st['offered_deliveries_per_s'], 0)}/s offered for 8 s, 200 rooms × 10)",
            f"delivered {fmt(st['deliveries_per_s'], 0)}/s, p99 {fmt(st['p99_ms'], 0)} ms, lost {fmt(st['lost_max'])} "
            f"(silent {fmt(st['silent_loss'])}), RATE_LIMITED {fmt(st['rate_limited'])}, 1013 {fmt(st['closes_1013'])}, "
            f"UNAVAILABLE {fmt(st['unavailable'])}", None, "worst of the runs")
    # Overload is silent when deliveries are lost, or wait for seconds,
    # without a RATE_LIMITED, UNAVAILABLE or close frame telling anyone.
    silent, delayed = [], []
    for n, r in res.items():
        for st in r.get("steps", []):
            if not isinstance(st, dict) or "silent_loss" not in st:
                continue
            signalled = st["rate_limited"] or st["closes"] or st["unavailable"]
            if st["silent_loss"]:
                silent.append(f"{n} @ {fmt(st['offered_deliveries_per_s'], 0)}/s ({fmt(st['silent_loss'])} lost)")
            elif (st["p99_ms"] or 0) > SILENT_DELAY_MS and not signalled:
                delayed.append(f"{n} @ {fmt(st['offered_deliveries_per_s'], 0)}/s (p99 {fmt(st['p99_ms'], 0)} ms)")
    got = []
    if silent:
        got.append("loss without a signal: " + ", ".join(silent))
    if delayed:
        got.append(f"p99 over {SILENT_DELAY_MS / 1000:g} s without a signal: " + ", ".join(delayed))
    if any(r["kind"] == "chat" for r in res.values()):    # nothing to judge without chat steps
        row("overload never silent (RATE_LIMITED or 1013 counted)",
            "; ".join(got) if got else "every loss or long delay came with RATE_LIMITED, UNAVAILABLE or a close",
            not got)
    if "login-storm" in s:
        v = s["login-storm"]["right_p99_ms"]
        row("login storm: p99 < 100 ms for right passwords", f"{fmt(v, 1)} ms", v < TARGETS["login_right_p99_ms"])
        v = s["login-storm"]["wrong_adds_p99_ms"]
        row("100 wrong logins in flight add < 5 ms to others' p99", f"{fmt(v, 2)} ms "
            f"({fmt(s['login-storm']['bg_p99_baseline_ms'], 2)} → {fmt(s['login-storm']['bg_p99_wrong_ms'], 2)})",
            v < TARGETS["login_wrong_adds_p99_ms"])
    if "join-cost" in s:
        sizes = s["join-cost"]["sizes"]
        big = next((r for r in sizes if r["present"] == 10000), None)
        small = sizes[0] if sizes else None
        if big:
            v = big["script_us_per_join"]
            row("≤ 0.1 ms of Redis time per join with 10,000 present (INFO commandstats)", f"{fmt(v / 1000, 3)} ms",
                v <= TARGETS["join_ms_10000"] * 1000, f"{v / 100:.0f}× the target" if v > 100 else "")
        if big and small and small is not big:
            v = big["ratio_to_smallest"]
            row(f"join with 10,000 present ≤ 2× the cost with {fmt(small['present'])}",
                f"{fmt(v, 1)}× ({fmt(small['script_us_per_join'], 1)} → {fmt(big['script_us_per_join'], 0)} µs)",
                v <= TARGETS["join_ratio_10000"])
    if "storm" in s:
        x = s["storm"]
        v = x["all_caught_up_s"]
        row("reconnect storm: 100,000 clients in large rooms back, with what they missed, within 30 s",
            f"{fmt(x['caught_up'])} of {fmt(x['members'])} back with every missed message after "
            f"{fmt(v, 1)} s" if v is not None else
            f"{fmt(x['caught_up'])} of {fmt(x['members'])} back with every missed message when it gave up",
            None if x["members"] < 100000 else v is not None and v <= TARGETS["storm_s"],
            f"all back (joined) after {fmt(x['all_back_s'], 1)} s")
    if "cold-start" in s:
        v = s["cold-start"]["first_response_ms"]
        row("socket-activated cold start: first HTTP response < 50 ms",
            f"{fmt(v, 1)} ms (max {fmt(s['cold-start']['first_response_max_ms'], 1)})",
            v < TARGETS["cold_start_ms"])
    return ["| target | measured (median) | | note |", "|---|---|---|---|"] + rows


def joincost_table(r):
    return ["Redis time of one more join (`EVALSHA` of the join script, Redis's own INFO commandstats: "
            "Δusec over the probe joins ÷ joins); `all commands` adds what else "
            "Redis ran meanwhile (scripts' inner commands are counted in the script's time too, so this "
            "double-counts them: an upper bound). commandstats' usec is wall time inside a command, so on a "
            "busy machine it includes time Redis was preempted; `Redis process CPU` is redis-server's run "
            "time (schedstat) over the same joins, anything else it did meanwhile included. Medians over the "
            "probe rounds (one room filled per size, a round = that many more users joining one at a time, "
            "then leaving).", "",
            "| present | joins measured | scripts per join | Redis µs per join (script) | × the smallest room | "
            "all commands µs per join | Redis process CPU µs per join | wall ms per join | rounds, µs | filled in s |",
            "|---|---|---|---|---|---|---|---|---|---|"] + [
        f"| {fmt(x['present'])} | {x['joins']} | {fmt(x['script_calls_per_join'], 1)} | "
        f"**{fmt(x['script_us_per_join'], 1)}** | {fmt(x['ratio_to_smallest'], 1)} | {fmt(x['redis_us_per_join'], 1)} | "
        f"{fmt(x.get('redis_cpu_us_per_join'), 1)} | "
        f"{fmt(x['wall_ms_per_join'], 2)} | {', '.join(fmt(v, 0) for v in x['script_us_per_join_rounds'])} | "
        f"{fmt(x['fill_s'], 1)} |" for x in r["sizes"]]


def storm_table(r):
    sm = r["summary"]
    first = r["runs"][0]
    top = sorted(first["commands"].items(), key=lambda kv: -kv[1]["usec"])[:8]
    n = sm["members"]
    return [f"{fmt(n)} members ({first['params']['rooms']} rooms × {fmt(first['params']['members'])}, each member "
            f"of a room its own account) on {first['daemons']} daemon(s) (one Redis), generator in "
            f"{first['workers']} processes; filled in {fmt(sm['fill_s'], 0)} s. The daemons stopped (SIGTERM), "
            f"{first['away']} messages sent to each room meanwhile through a daemon that stayed up, the daemons "
            f"started again on the same ports (ready {fmt(sm['ready_s'], 1)} s after the restart). Members "
            "reconnect like the page (0.5 s doubling to 10 s, jitter 50–100 %), with their cookie, and join "
            "again with `since`. " + ("One auth helper for all daemons, socket-activated as installed, stayed up."
                                       if first.get("auth") == "shared" else
                                       "Each daemon spawned its own auth helper.") + "", "",
            "| members | back | with every missed message | missed messages replayed | all back, s after restart | "
            "all caught up, s | rejoin p50 / p99 s (from the drop) | attempts | retries | daemon CPU s | "
            "auth helper CPU s | Redis CPU s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {fmt(n)} | {fmt(sm['rejoined'])} | {fmt(sm['caught_up'])} | {fmt(sm['replayed'])} of "
            f"{fmt(sm['expected_replayed'])} | **{fmt(sm['all_back_s'], 1)}** | {fmt(sm['all_caught_up_s'], 1)} | "
            f"{fmt(sm['rejoin_p50_s'], 1)} / {fmt(sm['rejoin_p99_s'], 1)} | {fmt(sm['attempts'])} | "
            f"{fmt(sm['retries'])} | {fmt(sm['daemon_cpu_s'], 1)} | {fmt(sm.get('auth_cpu_s'), 1)} | "
            f"{fmt(sm['redis_cpu_s'], 1)} |", "",
            "Redis time by command from the restart to the end (INFO commandstats, first run; script "
            "inner commands also count in their script's):", "",
            "| command | calls | usec | µs per call | µs per member |", "|---|---|---|---|---|"] + [
        f"| {c} | {fmt(v['calls'])} | {fmt(v['usec'])} | {fmt(v['usec'] / v['calls'], 1)} | "
        f"{fmt(v['usec'] / n, 1)} |" for c, v in top]


def cluster_table(r):
    sm = r["summary"]
    shards = list(r["steps"][0]["shard_us_per_msg"]) if r["steps"] else []
    return [f"Redis Cluster of {sm['masters']} master(s), no replicas; rooms per shard {sm['rooms_per_shard']}. "
            f"Most kept up with (no loss, ≥ 90 % delivered): **{fmt(sm['max_kept_up_deliveries_per_s'], 0)} "
            f"deliveries/s**; within p99 ≤ {fmt(sm['stop_p99_ms'], 0)} ms: {fmt(sm['max_ok_deliveries_per_s'], 0)}/s; "
            f"stopped by: {', '.join(str(x) for x in sm['stop_reasons'])}. Redis CPU per message sent, "
            f"each shard's own (run time from /proc/PID/task/*/schedstat, less what the shard used idle "
            f"with the daemons connected: " + ", ".join(f"{k} {fmt(v, 0)} µs/s" for k, v in sm["idle_us_per_s"].items()) +
            "). Medians over the runs.", "",
            "| offered deliv/s | delivered/s | msgs/s | p99 ms | lost | Redis µs/msg, all shards | " +
            " | ".join(f"{k} µs/msg" for k in shards) + " | Redis cores busy | " +
            " | ".join(f"{k} cores" for k in shards) + " | daemon µs/deliv | others CPU | runs ok |",
            "|" + "---|" * (10 + 2 * len(shards))] + [
        f"| {fmt(st['offered_deliveries_per_s'], 0)} | {fmt(st['deliveries_per_s'], 0)} | {fmt(st['msgs_per_s'], 0)} | "
        f"{fmt(st['p99_ms'], 2)} | {fmt(st['lost'], 0)} | **{fmt(st['redis_us_per_msg'], 2)}** | " +
        " | ".join(fmt(st['shard_us_per_msg'][k], 2) for k in shards) + f" | {fmt(st['redis_cores'], 2)} | " +
        " | ".join(fmt(st['shard_load'][k], 2) for k in shards) +
        f" | {fmt(st['daemon_us_per_delivery'], 2)} | {fmt(st['others_load'], 2)} | {st['ok_runs']}/{st['runs']} |"
        for st in r["steps"]]


def markdown(meta, res):
    out = [f"# multichat benchmark, {meta['date']}", "",
           f"Commit {meta.get('commit') or 'unknown'}; {meta['host']}; {meta['cpus']} CPUs; kernel {meta['kernel']}; {meta['runs']} run(s) per scenario, "
           f"medians; daemon {meta['daemon']} (`{' '.join(DAEMON_ARGS)}`); load generator: {meta['workers']} "
           f"worker process(es) on the same machine; CPUs: server {meta['pinning']['server'] or 'any'}, "
           f"generator {meta['pinning']['loadgen'] or 'any'}; load average before {meta['loadavg_before'][0]:.2f}, "
           f"after {meta['loadavg_after'][0]:.2f}; {meta['seconds']:.0f} s.", "",
           "## Targets", ""] + targets_table(res) + [""]
    for name, r in res.items():
        kind = r["kind"]
        out += [f"## {name}", ""]
        if kind == "chat":
            sm = r["summary"]
            out += [f"Max deliveries/s within limits (p99 ≤ {fmt(sm.get('stop_p99_ms', 50), 0)} ms, no loss): **{fmt(sm['max_ok_deliveries_per_s'], 0)}**; "
                    f"most the server kept up with (no loss, ≥ 90 % delivered, any latency): "
                    f"{fmt(sm['max_kept_up_deliveries_per_s'], 0)}/s, daemon CPU there "
                    f"**{fmt(sm['daemon_us_per_delivery'], 2)} µs/delivery** (redis {fmt(sm['redis_us_per_delivery'], 2)}); "
                    f"stopped by: {', '.join(str(x) for x in sm['stop_reasons'])}.", "",
                    "| offered/s | delivered/s | p50 ms | p99 ms | max ms | lost | silent | RATE_LIMITED | 1013 | "
                    "daemon µs/deliv | redis µs/deliv | daemon CPU | redis CPU | loadgen CPU | others CPU | runs ok |",
                    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for st in r["steps"]:
                out.append(f"| {fmt(st['offered_deliveries_per_s'], 0)} | {fmt(st['deliveries_per_s'], 0)} | "
                           f"{fmt(st['p50_ms'], 2)} | {fmt(st['p99_ms'], 2)} | {fmt(st['max_ms'], 1)} | "
                           f"{fmt(st['lost'], 0)} | {fmt(st['silent_loss'])} | {fmt(st['rate_limited'])} | "
                           f"{fmt(st['closes_1013'])} | "
                           f"{fmt(st['daemon_us_per_delivery'], 2)} | {fmt(st['redis_us_per_delivery'], 2)} | "
                           f"{fmt(st['daemon_load'], 2)} | {fmt(st['redis_load'], 2)} | {fmt(st['loadgen_load'], 2)} | "
                           f"{fmt(st['others_load'], 2)} | {st['ok_runs']}/{st['runs']} |")
        elif kind == "idle":
            sm = r["summary"]
            many = sm.get("daemons", 1) > 1
            out += [f"{fmt(sm['connections'])} idle authenticated connections"
                    f"{' on ' + str(sm['daemons']) + ' daemons (one Redis)' if many else ''}"
                    f"{', generator in ' + str(sm['workers']) + ' processes' if many else ''}: "
                    f"**{fmt(sm['daemon_kb_per_conn'], 2)} KB** daemon RSS each"
                    f"{' (sum over the daemons)' if many else ''}, {fmt(sm['redis_kb_per_conn'], 3)} KB Redis; "
                    f"idle daemon CPU {fmt(sm['idle_daemon_cpu_us_per_s'], 0)} µs/s."]
            kp = sm.get("kernel_per_socket")
            if kp:
                caches = ", ".join(f"{c} {fmt(v, 2)}" for c, v in kp["caches_kb"].items())
                out[-1] += (f" Kernel, per TCP socket ({fmt(kp['sockets'])} more sockets in use; a connection is "
                            f"two here, the daemon's and the generator's): slab +{fmt(kp['slab_kb'], 2)} KB "
                            f"({fmt(kp['sunreclaim_kb'], 2)} KB unreclaimable; by cache, KB: {caches}); TCP buffer "
                            f"pages {int(sm['tcp_mem_pages_delta']):+d} (idle sockets hold no data).")
            if "open_seconds" in sm:
                out[-1] += f" Opened in {fmt(sm['open_seconds'], 1)} s."
            if "still_open_min" in sm:
                counted = ", ".join(fmt(c) for c in sm["daemon_connections"])
                out[-1] += (f" After {fmt(sm['idle_s'], 0)} s idle, {fmt(sm['still_open_min'])} answered a ping "
                            f"(lost {fmt(sm['lost_max'])}); the daemons counted {counted} (Manager.Connections).")
                if sm.get("setup_login_retries"):
                    out[-1] += (f" {sm['setup_login_retries']} setup login(s) with the right password were refused "
                                f"and went through when tried again (finding 7).")
            out += ["", "| connections | seconds | handshakes/s | daemon RSS MB | redis RSS MB | slab MB |",
                    "|---|---|---|---|---|---|"]
            for st in r["series"]:
                out.append(f"| {fmt(st['connections'])} | {fmt(st.get('seconds'), 1)} | "
                           f"{fmt(st['handshakes_per_s'], 0)} | {fmt(st['daemon_rss_kb'] / 1024, 1)} | "
                           f"{fmt(st['redis_rss_kb'] / 1024, 1)} | "
                           f"{fmt(st['slab_kb'] / 1024 if st.get('slab_kb') else None, 1)} |")
        elif kind == "login":
            out += ["| phase | others' p50 ms | others' p99 ms | lost | right logins/s | right p50 ms | "
                    "right p99 ms | right max ms | wrong answered | wrong p50 ms | failed | daemon CPU |",
                    "|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for p in r["phases"]:
                out.append(f"| {p['phase']} | {fmt(p['bg_p50_ms'], 2)} | {fmt(p['bg_p99_ms'], 2)} | {p['bg_lost']} | "
                           f"{fmt(p['right_logins_per_s'], 0)} | {fmt(p['right_p50_ms'], 1)} | "
                           f"{fmt(p['right_p99_ms'], 1)} | {fmt(p['right_max_ms'], 1)} | {fmt(p['wrong_answered'], 0)} | "
                           f"{fmt(p['wrong_p50_ms'], 0)} | {p['failed']} | {fmt(p['daemon_load'], 2)} |")
            rp = next(p for p in r["phases"] if p["phase"] == "right-passwords")
            out += ["", f"CPU per right login: daemon {fmt(rp['daemon_us_per_login'], 0)} µs, auth helper "
                    f"{fmt(rp['auth_us_per_login'], 0)} µs."]
        elif kind == "reconnect":
            out += ["| in flight | handshakes/s | p50 ms | p99 ms | failed | daemon µs/handshake | "
                    "redis µs/handshake | daemon CPU |", "|---|---|---|---|---|---|---|---|"]
            for st in r["steps"]:
                out.append(f"| {st['in_flight']} | {fmt(st['handshakes_per_s'], 0)} | {fmt(st['p50_ms'], 2)} | "
                           f"{fmt(st['p99_ms'], 2)} | {st['failed']} | {fmt(st['daemon_us_per_handshake'], 0)} | "
                           f"{fmt(st['redis_us_per_handshake'], 0)} | {fmt(st['daemon_load'], 2)} |")
        elif kind == "failover":
            sm = r["summary"]
            out += [f"Master killed under {fmt(sc_rate(name), 0)} messages/s: promoted after "
                    f"{fmt(sm['promoted_s'], 2)} s; sends acknowledged again {fmt(sm['first_ack_after_kill_s'], 2)} s "
                    f"after the kill; delay p99 {fmt(sm['p99_delay_ms'], 0)} ms, max {fmt(sm['max_delay_ms'], 0)} ms; "
                    f"**lost {sm['lost']}, doubled {sm['doubled']}** of {fmt(sm['acked'])} acknowledged; "
                    f"{fmt(sm['told'])} sends answered UNAVAILABLE or OUTCOME_UNKNOWN (the sender was told). "
                    f"Medians of {len(r['runs'])} run(s)."]
        elif kind == "joincost":
            out += joincost_table(r)
        elif kind == "cluster":
            out += cluster_table(r)
        elif kind == "storm":
            out += storm_table(r)
        elif kind == "coldstart":
            sm = r["summary"]
            out += [f"First response ({sm['status_line']}) {fmt(sm['first_response_ms'], 1)} ms median, "
                    f"{fmt(sm['first_response_max_ms'], 1)} ms max; /healthz 200 after "
                    f"{fmt(sm['healthy_ms'], 1)} ms. Runs: {', '.join(fmt(x, 1) for x in r['runs'])} ms."]
        out.append("")
    # The plots that plots() draws for these results.
    figs = []
    if any(r["kind"] == "chat" for r in res.values()):
        figs += [f"![latency vs load]({meta['stem']}-latency.png)", f"![CPU per delivery]({meta['stem']}-cpu.png)"]
    if "idle" in res:
        figs.append(f"![memory vs connections]({meta['stem']}-memory.png)")
    if figs:
        out += ["## Plots", ""] + figs + [""]
    return "\n".join(out)


# --- plots --------------------------------------------------------------------

def plots(res, outdir, stem):
    gp = shutil.which("gnuplot")
    if not gp:
        log("# gnuplot not found (apt-get install gnuplot-nox): no plots")
        return []
    tmp = Path(tempfile.mkdtemp(prefix="mc-bench-plot-"))
    chats = [(n, r) for n, r in res.items() if r["kind"] == "chat"]
    lat_lines, cpu_lines = [], []
    for i, (n, r) in enumerate(chats):
        f = tmp / f"{n}.dat"
        # Steps that lost deliveries (connections closed under overload)
        # would plot a collapse as a cheap delivery: latency only.
        f.write_text("".join(f"{s['deliveries_per_s']} {s['p50_ms']} {s['p99_ms']} "
                             f"{s['daemon_us_per_delivery'] if not s['lost'] else 'NaN'}\n"
                             for s in r["steps"] if s["deliveries_per_s"] and s["p99_ms"] is not None))
        lat_lines.append(f"'{f}' using 1:3 with linespoints lt {i + 1} pt 7 title '{n} p99'")
        lat_lines.append(f"'{f}' using 1:2 with linespoints lt {i + 1} dt 2 pt 6 title '{n} p50'")
        cpu_lines.append(f"'{f}' using 1:4 with linespoints lt {i + 1} pt 7 title '{n}'")
    files = []
    script = [f"set terminal pngcairo size 1100,700 font ',10'", "set grid", "set key outside right",
              "set logscale x", "set format x '%.0s%c'"]
    if lat_lines:
        files.append(outdir / f"{stem}-latency.png")
        script += [f"set output '{files[-1]}'", "set title 'multichat: end-to-end latency vs load'",
                   "set xlabel 'deliveries/s (achieved)'", "set ylabel 'latency (ms)'", "set logscale y",
                   "plot " + ", ".join(lat_lines) + ", 50 with lines lc 'red' dt 3 title 'p99 limit (50 ms)', "
                   "10 with lines lc 'orange' dt 3 title 'target at 100k/s (10 ms)'", "unset logscale y"]
        files.append(outdir / f"{stem}-cpu.png")
        script += [f"set output '{files[-1]}'", "set title 'multichat: daemon CPU per delivery vs load'",
                   "set xlabel 'deliveries/s (achieved)'", "set ylabel 'daemon CPU per delivery (µs)'",
                   "set logscale y", "plot " + ", ".join(cpu_lines) +
                   ", 2 with lines lc 'red' dt 3 title 'target (2 µs)'", "unset logscale y"]
    if "idle" in res:
        f = tmp / "idle.dat"
        f.write_text("".join(f"{s['connections']} {s['daemon_rss_kb'] / 1024} {s['redis_rss_kb'] / 1024}\n"
                             for s in res["idle"]["series"]))
        base = res["idle"]["series"][0]["daemon_rss_kb"] / 1024
        files.append(outdir / f"{stem}-memory.png")
        script += ["unset logscale x", "set format x '%.0f'", f"set output '{files[-1]}'",
                   "set title 'multichat: memory vs idle connections'", "set xlabel 'connections'",
                   "set ylabel 'RSS (MB)'",
                   f"plot '{f}' using 1:2 with linespoints pt 7 title 'multichatd', "
                   f"'{f}' using 1:3 with linespoints pt 7 title 'redis-server', "
                   f"{base} + x * 2 / 1024 with lines dt 3 title 'target: 2 KB per connection'"]
    (tmp / "plot.gp").write_text("\n".join(script) + "\n")
    r = subprocess.run([gp, str(tmp / "plot.gp")], capture_output=True, text=True)
    if r.returncode != 0:
        log(f"# gnuplot failed: {r.stderr}")
        return []
    shutil.rmtree(tmp, ignore_errors=True)
    return files


# --- main -----------------------------------------------------------------------

def git_describe():
    """The commit measured, and whether the daemon's sources differed from it."""
    try:
        head = subprocess.run(["git", "-C", str(SRC), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(SRC), "status", "--porcelain", "--", "daemon", "meson.build"],
                               capture_output=True, text=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def regenerate(path):
    d = json.loads(path.read_text())
    results = {}
    for sc in d["scenarios"]:
        runs = d["raw"].get(sc["name"])
        if runs:
            results[sc["name"]] = dict(kind=sc["kind"], **SUMMARIZERS[sc["kind"]](sc, runs))
    d["results"] = results
    stem = d["meta"]["stem"]
    path.write_text(json.dumps(d, indent=1) + "\n")
    (path.parent / f"{stem}.md").write_text(markdown(d["meta"], results))
    plots(results, path.parent, stem)
    print("\n".join(targets_table(results)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=str(SRC / "build-bench"))
    ap.add_argument("--loadgen", help="mc-loadgen binary (default BUILD/tests/bench/mc-loadgen)")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, help="generator processes (default: one per generator CPU)")
    ap.add_argument("--only", help="comma-separated scenario names")
    ap.add_argument("--quick", action="store_true", help="one run of smaller sizes")
    ap.add_argument("--stem", help="file name stem (default: the date and time)")
    ap.add_argument("--from-json", metavar="PATH",
                    help="only redo the summaries, Markdown and plots of an earlier result file")
    ap.add_argument("--idle-connections", type=int,
                    help="connections for the idle scenario (default 19000: this machine's fd limit)")
    ap.add_argument("--idle-200k-connections", type=int, metavar="N",
                    help="connections for idle-200k (default 200000)")
    ap.add_argument("--storm-size", metavar="ROOMSxMEMBERS",
                    help="rooms and members per room for the storm (default 10x10000)")
    ap.add_argument("--storm-auth", choices=("shared", "spawned"),
                    help="the storm's auth helper: one for all daemons, as installed (default), or one per daemon")
    ap.add_argument("--pin", action="store_true",
                    help="put the server on the first CPU and the generator on the others")
    a = ap.parse_args()

    if a.from_json:
        return regenerate(Path(a.from_json))
    build = Path(a.build_dir).resolve()
    lg = a.loadgen or str(build / "tests" / "bench" / "mc-loadgen")
    if not Path(lg).exists():
        sys.exit(f"{lg} does not exist: build it first (tests/bench/run.sh does)")
    if os.geteuid() != 0:
        sys.exit("run as root (the daemon owns its bus name as root, as in the integration tests)")
    scenarios = [dict(s) for s in STANDARD]
    runs = a.runs
    if a.quick:
        runs = 1 if a.runs == 3 else a.runs
        for s in scenarios:
            s.update(QUICK.get(s["name"], {}))
    if a.idle_connections:
        for s in scenarios:
            if s["name"] == "idle":
                s["connections"] = a.idle_connections
    if a.only:
        want = set(a.only.split(","))
        scenarios = [s for s in scenarios if s["name"] in want]
        if not scenarios:
            sys.exit(f"no scenario named {a.only}")
    elif not a.quick:
        scenarios = [s for s in scenarios if not s.get("extra")]
    if a.storm_size:
        try:
            rooms, members = (int(x) for x in a.storm_size.lower().split("x"))
        except ValueError:
            sys.exit(f"--storm-size={a.storm_size}: want ROOMSxMEMBERS, e.g. 10x1000")
        if rooms < 1 or members < 1:
            sys.exit("--storm-size: rooms and members must be at least 1")
        for s in scenarios:
            if s["name"] == "storm":
                s.update(rooms=rooms, members=members)
    if a.storm_auth:
        for s in scenarios:
            if s["name"] == "storm":
                s["auth"] = a.storm_auth

    for s in scenarios:
        if s["name"] == "idle-200k" and a.idle_200k_connections:
            s["connections"] = a.idle_200k_connections
    # Every connection is a descriptor, in the daemons and the generator
    # (they inherit this): as many as we may (run.sh does it too).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    cpus = sorted(os.sched_getaffinity(0))
    if a.pin and len(cpus) >= 2:
        PIN["server"] = {cpus[0]}
        PIN["loadgen"] = set(cpus[1:])
    if not a.workers:
        # One generator process per CPU it may use. Fewer is not kinder
        # here: a generator that sleeps on an idle vCPU must be woken by
        # an IPI on every delivery, which the daemon pays for (README).
        a.workers = len(PIN["loadgen"]) if PIN["loadgen"] else len(cpus)
    now = datetime.datetime.now()
    stem = a.stem or now.strftime("%Y-%m-%d-%H%M")
    outdir = Path(a.out)
    outdir.mkdir(parents=True, exist_ok=True)
    meta = {"date": now.strftime("%Y-%m-%d %H:%M"), "stem": stem, "host": platform.node(),
            "cpus": os.cpu_count(), "kernel": platform.release(), "runs": runs, "workers": a.workers,
            "daemon": str(build / "daemon" / "multichatd"), "daemon_args": DAEMON_ARGS,
            "pinning": {k: sorted(v) if v else None for k, v in PIN.items()},
            "loadavg_before": os.getloadavg(), "commit": git_describe()}
    results, raw = {}, {}
    t_start = time.monotonic()
    for sc in scenarios:
        n = sc.get("runs", runs) if not a.quick else min(sc.get("runs", runs), runs if runs > 1 else 2)
        got = []
        for i in range(n):
            log(f"== {sc['name']} run {i + 1}/{n} ({time.monotonic() - t_start:.0f}s)")
            try:
                got.append(RUNNERS[sc["kind"]](sc, lg, build, a.workers))
            except Exception as e:  # one failed run should not lose the others
                log(f"!! {sc['name']} run {i + 1} failed: {e}")
        raw[sc["name"]] = got
        if got:
            results[sc["name"]] = dict(kind=sc["kind"], **SUMMARIZERS[sc["kind"]](sc, got))
    meta["seconds"] = time.monotonic() - t_start
    meta["teardown_problems"] = TEARDOWN_PROBLEMS
    meta["loadavg_after"] = os.getloadavg()

    (outdir / f"{stem}.json").write_text(json.dumps(
        {"meta": meta, "scenarios": [s for s in scenarios], "results": results, "raw": raw}, indent=1) + "\n")
    md = markdown(meta, results)
    (outdir / f"{stem}.md").write_text(md)
    pngs = plots(results, outdir, stem)
    log(f"# wrote {outdir / (stem + '.json')}, {outdir / (stem + '.md')}" +
        "".join(f", {p}" for p in pngs) + f" in {meta['seconds']:.0f}s")
    print("\n".join(targets_table(results)))
    if "join-cost" in results:
        print("\n" + "\n".join(joincost_table(results["join-cost"])))


if __name__ == "__main__":
    main()
