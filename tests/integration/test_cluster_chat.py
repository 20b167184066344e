#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Chat on a Redis Cluster (three masters, three replicas): three daemons,
each on its own bus, a user on each, in rooms whose keys sit on different
masters. Every message reaches every member once, with the same id on
every daemon; an edit and a delete are seen everywhere and in history;
Members counts the users of all three daemons."""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
import harness  # noqa: E402
import pamenv  # noqa: E402
from harness import SLOW, is_msg, join, room_path, send  # noqa: E402

ROOMS = 6
USERS = list(pamenv.DEFAULT_USERS) + [pamenv.User("carol", 1003, "carol-pw")]


def reply_to(ws, ref):
    obj, _ = ws.expect(lambda o: o.get("ref") == ref, 5 * SLOW, what=f"the answer to {ref}")
    return obj


def test(stack, check):
    cl = cluster.Cluster(stack.dir)
    try:
        cl.start()
    finally:
        stack.more_redis.extend(cl.nodes)   # stopped with the stack
    seeds = [f"--redis-cluster={a}" for a in cl.addresses]
    daemons = [stack.start_daemon(name="d1", args=seeds)]
    daemons += [stack.start_daemon(name=f"d{i}", args=seeds, own_bus=True) for i in (2, 3)]

    rooms = [daemons[i % 3].create_room(f"Room {i}") for i in range(ROOMS)]
    masters = {cl.master_of(cluster.key_slot(f"mc:{{r{r}}}:room")) for r in rooms}
    check(len(masters) >= 2, f"the {ROOMS} rooms' keys sit on {len(masters)} different masters", rooms)
    for r in rooms:
        m = cl.master_of(cluster.key_slot(f"mc:{{r{r}}}:room"))
        check.eq(cl.nodes[m].command("EXISTS", f"mc:{{r{r}}}:room"), 1,
                 f"room {r}'s key is on the master of its slot")

    users = ["alice", "bob", "carol"]
    conns = [d.ws(jar=d.login(u.name, u.password))
             for d, u in zip(daemons, (u for n in users for u in USERS if u.name == n))]
    for ws in conns:
        for r in rooms:
            obj, raw = join(ws, r)
            if "error" in obj:
                check(False, "every user joins every room", raw)
    check(True, f"alice (d1), bob (d2) and carol (d3) joined all {ROOMS} rooms")

    ids = {}
    for r in rooms:
        for i, ws in enumerate(conns):
            ref = f"s{r}-{i}"
            send(ws, r, f"{users[i]} in {r}", ref=ref)
            ack = reply_to(ws, ref)
            ids[(r, i)] = ack.get("id")
    check(all(ids.values()), "every send is acknowledged with an id")

    got = {}
    want = len(rooms) * len(users)
    for j, ws in enumerate(conns):
        seen = []
        while len(seen) < want:
            obj, _ = ws.expect(lambda o: o.get("msg_type") == 0 and o.get("room") in rooms,
                               10 * SLOW, what=f"messages on {users[j]}'s connection")
            seen.append((obj["room"], obj["username"], obj["message"], obj["id"]))
        got[j] = seen
    expected = sorted((r, users[i], f"{users[i]} in {r}", ids[(r, i)]) for r in rooms for i in range(3))
    for j in range(3):
        check.eq(sorted(got[j]), expected, f"{users[j]} got every message once, with the ids the senders got")

    r0 = rooms[0]
    conns[0].send_json({"command": "edit", "room": r0, "id": ids[(r0, 0)], "message": "edited on d1", "ref": "e"})
    check(reply_to(conns[0], "e").get("ok") is True, "alice's edit is acknowledged")
    conns[1].send_json({"command": "delete", "room": r0, "id": ids[(r0, 1)], "ref": "x"})
    check(reply_to(conns[1], "x").get("ok") is True, "bob's delete is acknowledged")
    for j, ws in enumerate(conns):
        ws.expect(lambda o: o.get("id") == ids[(r0, 0)] and o.get("edited") is True, 5 * SLOW,
                  what=f"the edit on {users[j]}'s connection")
        ws.expect(lambda o: o.get("deleted") == ids[(r0, 1)], 5 * SLOW,
                  what=f"the delete on {users[j]}'s connection")
    check(True, "the edit and the delete reach the users of all three daemons")
    conns[2].send_json({"command": "history", "room": r0, "limit": 10, "ref": "h"})
    hist = reply_to(conns[2], "h").get("history") or []
    check.eq([(h.get("username"), h.get("message")) for h in hist],
             [("alice", "edited on d1"), ("carol", f"carol in {r0}")],
             "history through d3: alice's message edited, bob's deleted, carol's as sent")

    for r in rooms[:2]:
        try:
            harness.wait_until(
                lambda: sorted(daemons[2].bus.get_property("Members", path=room_path(r), iface=harness.ROOM_IFACE))
                == users or None, 5 * SLOW, what=f"Members of room {r} through d3")
            check(True, f"Members of room {r} (through d3) has the users of all three daemons")
        except TimeoutError as e:
            check(False, f"Members of room {r} (through d3) has the users of all three daemons", str(e))
    conns[1].close()
    try:
        conns[0].expect(is_msg(r0, username="bob", msg_type=5), 5 * SLOW, what="bob's leave notice")
        check(True, "bob's connection on d2 closed: alice on d1 sees him leave")
    except TimeoutError as e:
        check(False, "bob's connection on d2 closed: alice on d1 sees him leave", str(e))
    check(all(d.alive for d in daemons), "the three daemons kept running")


if __name__ == "__main__":
    harness.main(test, stack_args={"pam_users": USERS})
