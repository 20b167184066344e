#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Chat on a Redis Cluster through a fault under steady load, counted by
message id. Three daemons, a user on each, all in two rooms on different
masters; two users send steadily, each to one room, retrying a send that
failed with OUTCOME_UNKNOWN or UNAVAILABLE with the same ref, as a client
does. The fault hits the master of the first room:

    failover   CLUSTER FAILOVER on its replica
    kill       kill -9 of the master (cluster-node-timeout 1 s: its
               replica takes over)
    migrate    its slot moves to another master with
               `redis-cli --cluster reshard`, live

Every send is acknowledged once; every member gets every acknowledged
message of both rooms exactly once and in order, or is told (a join event
with "complete": false), and here nothing may be missing at all."""

import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
import harness  # noqa: E402
import pamenv  # noqa: E402
from harness import SLOW, join  # noqa: E402
from steady import Member, id_key  # noqa: E402

FAULTS = ("failover", "kill", "migrate")
FAULT = sys.argv[1] if len(sys.argv) > 1 else "failover"
ROOMS = 12
RATE = 40           # messages per second from each sender
USERS = list(pamenv.DEFAULT_USERS) + [pamenv.User("carol", 1003, "carol-pw")]


def room_slot(room):
    return cluster.key_slot(f"mc:{{r{room}}}:room")


def lowest_slot(cl, node):
    port = cl.nodes[node].port
    return min(start for start, _end, master, *_ in cl.running()[0].command("CLUSTER", "SLOTS")
               if master[1] == port)


def all_healthy(daemons):
    return all(d.http("GET", "/healthz").status == 200 for d in daemons)


def test(stack, check):
    if FAULT not in FAULTS:
        raise SystemExit(f"usage: {sys.argv[0]} {{{'|'.join(FAULTS)}}}")
    cl = cluster.Cluster(stack.dir, node_timeout_ms=1000)
    try:
        cl.start()
    finally:
        stack.more_redis.extend(cl.nodes)   # stopped with the stack
    # Every send must be accepted: on a loaded machine overload would
    # refuse some (test_overload covers that).
    args = [f"--redis-cluster={a}" for a in cl.addresses] + [
        "--rate-limit=1000", "--rate-burst=1000", "--overload-lag=1h"]
    daemons = [stack.start_daemon(name="d1", args=args)]
    daemons += [stack.start_daemon(name=f"d{i}", args=args, own_bus=True) for i in (2, 3)]

    rooms = [daemons[i % 3].create_room(f"Room {i}") for i in range(ROOMS)]
    if FAULT == "migrate":
        # reshard moves a master's lowest slots first: the room whose slot
        # comes soonest after its master's lowest moves with the fewest.
        hit = min(rooms, key=lambda r: room_slot(r) - lowest_slot(cl, cl.master_of(room_slot(r))))
    else:
        hit = rooms[0]
    master = cl.master_of(room_slot(hit))
    other = next(r for r in rooms if cl.master_of(room_slot(r)) != master)

    names = ["alice", "bob", "carol"]
    conns = [d.ws(jar=d.login(u.name, u.password))
             for d, u in zip(daemons, (u for n in names for u in USERS if u.name == n))]
    for ws in conns:
        for r in (hit, other):
            obj, raw = join(ws, r)
            check("error" not in obj, f"joins room {r}", raw)
        ws.drain(0.2)
    members = [Member(conns[0], "alice"), Member(conns[1], "bob", hit, RATE),
               Member(conns[2], "carol", other, RATE)]
    for m in members:
        m.start()

    time.sleep(2.0)
    t = time.monotonic()
    if FAULT == "failover":
        cl.failover(cl.replica_of(master))
        what = f"CLUSTER FAILOVER of room {hit}'s master"
    elif FAULT == "kill":
        replica = cl.replica_of(master)
        cl.kill(master)
        harness.wait_until(lambda: cl.nodes[replica].command("ROLE")[0] == "master", 20 * SLOW,
                           what="the replica promoted")
        cl.wait_ready(20 * SLOW)
        what = f"kill -9 of room {hit}'s master"
    else:
        target = next(i for i in range(len(cl.nodes))
                      if i != master and cl.nodes[i].command("ROLE")[0] == "master")
        n = room_slot(hit) - lowest_slot(cl, master) + 1
        cl.reshard(master, target, n)
        check.eq(cl.master_of(room_slot(hit)), target, f"room {hit}'s slot moved ({n} slots resharded)")
        what = f"live migration of room {hit}'s slot"
    harness.wait_until(lambda: all_healthy(daemons), 20 * SLOW, what="every daemon healthy again")
    harness.log(f"# {what}: done, every daemon healthy after {time.monotonic() - t:.1f} s")
    time.sleep(2.0)

    for m in members:
        m.stop.set()
    try:
        harness.wait_until(lambda: all(m.outstanding() == 0 for m in members), 20 * SLOW,
                           what="every send answered")
    except TimeoutError:
        pass                    # the checks below say what is missing
    acked = {hit: sorted(members[1].acked.values(), key=id_key),
             other: sorted(members[2].acked.values(), key=id_key)}

    def delivered():
        return all(set(ids) <= {i for i, *_ in m.received.get(r, [])} or m.notices.get(r)
                   for m in members for r, ids in acked.items())
    try:
        harness.wait_until(delivered, 15 * SLOW, what="every acknowledged message delivered")
    except TimeoutError:
        pass
    time.sleep(0.5)
    for m in members:
        m.done.set()
        m.join(5)

    for s in members[1:]:
        check(s.sent > 3 * RATE, f"{s.name} sent throughout ({s.sent}, {s.retries} retried)")
        check.eq(s.outstanding(), 0, f"every send of {s.name} was acknowledged ({len(s.acked)} of {s.sent})")
        check.eq(s.failed, [], f"no send of {s.name} was refused for good")
        check.eq(len(set(s.acked.values())), len(s.acked), f"each of {s.name}'s sends was stored once")
    for m in members:
        for r, ids in acked.items():
            got = [i for i, *_ in m.received.get(r, [])]
            texts = [text for *_, text in m.received.get(r, [])]
            missing = [i for i in ids if i not in set(got)]
            notices = m.notices.get(r, [])
            check.eq(len(got) - len(set(got)), 0, f"{m.name} got no message of room {r} twice")
            check.eq(len(texts) - len(set(texts)), 0, f"{m.name} got no send of room {r} stored twice")
            check(got == sorted(got, key=id_key), f"{m.name} got room {r}'s messages in order")
            check(not missing or notices,
                  f"{m.name} got every acknowledged message of room {r}, or was told "
                  f"({len(missing)} of {len(ids)} missing, {len(notices)} notices)")
            check.eq(missing, [], f"nothing of room {r} was missing for {m.name}")
    check(all(ws.is_open() for ws in conns), "every connection stayed open")
    check(all(d.alive for d in daemons), "the three daemons kept running")


harness.main(test, stack_args={"pam_users": USERS})
