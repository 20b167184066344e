#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Protocol version 2 (docs/protocol.md, "Version 2"): hello, rooms that
belong to the user and follow them to every version 2 connection on every
daemon, leave applying to all of them, kicks, the 100-room limit, and a
version 1 connection of the same user left exactly as it was."""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, is_error, join, leave, send  # noqa: E402


def hello(ws, ref="h", **extra):
    cmd = {"command": "hello", "version": 2, "ref": ref}
    cmd.update(extra)
    ws.send_json(cmd)
    return ws.expect(lambda o: o.get("ref") == ref, 5 * SLOW, what=f"answer to hello {ref}")


def test(stack, check):
    d1 = stack.start_daemon(name="d1")
    d2 = stack.start_daemon(name="d2", own_bus=True)
    lobby = d1.create_room("Lobby")
    dev = d1.create_room("Dev")
    staff = d1.create_room("Staff")

    a1 = d1.ws("alice")        # version 2 on d1
    a2 = d2.ws("alice")        # version 2 on d2
    v1 = d1.ws("alice")        # version 1 on d1: never says hello
    for ws in (a1, a2, v1):
        ws.expect(lambda o: "rooms" in o, 5 * SLOW, what="room list")

    # hello before any room: the answer, exact bytes
    obj, raw = hello(a1, ref="h1")
    check.eq(raw, '{"hello": 2, "username": "alice", "rooms": [], "ref": "h1"}', "hello answer, json.dumps bytes")
    obj, raw = hello(a1, ref="h1b")
    check.eq(obj.get("error"), "BAD_REQUEST", "a second hello is BAD_REQUEST")

    # bad hellos, each on a fresh connection (a refused hello may be retried)
    bad = d1.ws("bob")
    for cmd, what in [
        ({"version": 0}, "version 0"),
        ({"version": 2.0}, "version 2.0 (not an integer)"),
        ({"version": "2"}, "version as a string"),
        ({}, "no version"),
        ({"version": 2, "since": []}, "since an array"),
        ({"version": 2, "since": {"01": "1-0"}}, "since with key 01"),
        ({"version": 2, "since": {"1": "x"}}, "since with a malformed id"),
        ({"version": 2, "since": {"1": 5}}, "since with a number"),
        ({"version": 2, "since": {str(i + 1): "1-0" for i in range(101)}}, "since with 101 entries"),
    ]:
        cmd.update({"command": "hello", "ref": "bad"})
        bad.send_json(cmd)
        obj, raw = bad.expect(lambda o: o.get("ref") == "bad", 5 * SLOW, what=what)
        check.eq(obj.get("error"), "BAD_REQUEST", f"hello with {what} is BAD_REQUEST")
    bad.send_json({"command": "read", "room": lobby, "id": "1-0", "ref": "r"})
    obj, raw = bad.expect(lambda o: o.get("ref") == "r", 5 * SLOW, what="read without hello")
    check.eq(obj.get("error"), "BAD_REQUEST", "read without hello is BAD_REQUEST")
    obj, raw = hello(bad, ref="late", version=1)
    check.eq(obj.get("hello"), 1, "hello version 1 is answered with version 1")
    obj, raw = hello(bad, ref="late2")
    check.eq(obj.get("error"), "BAD_REQUEST", "after hello 1, another hello is BAD_REQUEST")

    obj, raw = hello(a2, ref="h2")
    check.eq(obj.get("rooms"), [], "d2's connection: no rooms yet")

    # a join on d1 joins the user's other version 2 connection on d2, unasked
    obj, raw = join(a1, lobby, ref="j1")
    check.eq(obj.get("join"), lobby, "alice joins Lobby on d1")
    check.eq((obj.get("read"), obj.get("unread"), obj.get("mentions")), (None, 0, 0),
             "v2 joined event: read null, unread 0, mentions 0")
    check(raw.endswith('"read": null, "unread": 0, "mentions": 0, "ref": "j1"}'), "v2 joined event key order", raw)
    try:
        obj, raw = a2.expect(lambda o: o.get("join") == lobby, 5 * SLOW, what="unasked join on d2")
        check("ref" not in obj and obj.get("read", "x") is None, "d2's connection joins too, no ref", raw)
    except TimeoutError as e:
        check(False, "d2's connection joins too, no ref", str(e))
    check(not v1.expect_none(lambda o: o.get("join") == lobby, 1.0 * SLOW),
          "the version 1 connection of the same user is not joined")

    join(a2, dev)
    try:
        a1.expect(lambda o: o.get("join") == dev, 5 * SLOW, what="unasked join of Dev on d1")
        check(True, "a join on d2 reaches d1's connection")
    except TimeoutError as e:
        check(False, "a join on d2 reaches d1's connection", str(e))

    # a new connection's hello lists the rooms in the order joined and joins them
    a3 = d2.ws("alice")
    a3.expect(lambda o: "rooms" in o, 5 * SLOW, what="room list")
    obj, raw = hello(a3, ref="h3")
    check.eq(obj.get("rooms"), [lobby, dev], "hello lists the user's rooms in join order")
    got = []
    try:
        for _ in range(2):
            o, _ = a3.expect(lambda o: "join" in o, 5 * SLOW, what="joined after hello")
            got.append(o.get("join"))
    except TimeoutError as e:
        check(False, "joined events follow hello", str(e))
    check.eq(got, [lobby, dev], "one joined event per room, in that order")

    # messages reach all of them; the version 1 connection's bytes are v1's
    v1_join, v1_raw = join(v1, lobby)
    check("read" not in v1_join and "unread" not in v1_join, "v1 joined event has no version 2 keys", v1_raw)
    send(v1, lobby, "hi @bob")
    o1, r1 = v1.expect(harness.is_msg(lobby, "hi @bob"), 5 * SLOW, what="message on v1")
    check("mentions" not in o1, "v1 message event has no mentions", r1)
    check(r1.endswith(f'"ts": {o1["ts"]}, "own": true}}'), "v1 own message: ts then own", r1)
    o2, r2 = a2.expect(harness.is_msg(lobby, "hi @bob"), 5 * SLOW, what="message on v2")
    check(r2.endswith(f'"ts": {o1["ts"]}, "mentions": ["bob"], "own": true}}'),
          "v2 own message: ts, mentions, own", r2)

    # leave on d2 applies to every version 2 connection, not to version 1
    obj, raw = leave(a2, dev, ref="l2")
    check.eq(raw, f'{{"leave": "{dev}", "ref": "l2"}}', "leave answered with ref")
    for ws, name in ((a1, "d1"), (a3, "d2's other connection")):
        try:
            obj, raw = ws.expect(lambda o: o.get("leave") == dev, 5 * SLOW, what=f"leave on {name}")
            check.eq(raw, f'{{"leave": "{dev}"}}', f"{name} leaves Dev too, without ref")
        except TimeoutError as e:
            check(False, f"{name} leaves Dev too", str(e))
    a4 = d1.ws("alice")
    a4.expect(lambda o: "rooms" in o, 5 * SLOW, what="room list")
    obj, raw = hello(a4, ref="h4")
    check.eq(obj.get("rooms"), [lobby], "after leave, the user's rooms are only Lobby")
    a4.close()

    # closing connections leaves the rooms the user's
    a3.close()
    a5 = d2.ws("alice")
    a5.expect(lambda o: "rooms" in o, 5 * SLOW, what="room list")
    obj, raw = hello(a5, ref="h5")
    check.eq(obj.get("rooms"), [lobby], "closing a connection keeps the rooms")
    a5.expect(lambda o: o.get("join") == lobby, 5 * SLOW, what="rejoin after hello")

    # kicked: every connection leaves with the reason, and the room is gone from the user's rooms
    d1.bus.call("KickUser", "ss", "alice", lobby)
    for ws, name in ((a1, "d1 v2"), (a2, "d2 v2"), (v1, "d1 v1")):
        try:
            obj, raw = ws.expect(lambda o: o.get("leave") == lobby, 5 * SLOW, what=f"kick on {name}")
            check.eq(obj.get("reason"), "kicked", f"kick reaches {name}")
        except TimeoutError as e:
            check(False, f"kick reaches {name}", str(e))
    a6 = d1.ws("alice")
    a6.expect(lambda o: "rooms" in o, 5 * SLOW, what="room list")
    obj, raw = hello(a6, ref="h6")
    check.eq(obj.get("rooms"), [], "a kick removes the room from the user's rooms")

    # staff_only turned on for a non-staff user (bob): evicted and removed
    b1 = d1.ws("bob")
    b1.expect(lambda o: "rooms" in o, 5 * SLOW, what="room list")
    hello(b1, ref="hb1")
    join(b1, staff)
    d1.bus.set_property("StaffOnly", "b", True, path=harness.room_path(staff))
    obj, raw = b1.expect(lambda o: o.get("leave") == staff, 5 * SLOW, what="eviction from Staff")
    check.eq(obj.get("reason"), "kicked", "staff-only: evicted as kicked")
    b2 = d2.ws("bob")
    b2.expect(lambda o: "rooms" in o, 5 * SLOW, what="room list")
    obj, raw = hello(b2, ref="hb2")
    check.eq(obj.get("rooms"), [], "a room turned staff-only is no longer the non-staff user's")
    a7 = d2.ws("alice")
    a7.expect(lambda o: "rooms" in o, 5 * SLOW, what="room list")
    hello(a7, ref="h7")

    # a deleted room is not listed any more
    join(a7, dev)
    d2.bus.call("DeleteRoom", "s", dev)
    obj, raw = a7.expect(lambda o: o.get("leave") == dev, 5 * SLOW, what="leave after delete")
    check.eq(obj.get("reason"), "deleted", "deleted: leave with reason")
    a8 = d1.ws("alice")
    a8.expect(lambda o: "rooms" in o, 5 * SLOW, what="room list")
    obj, raw = hello(a8, ref="h8")
    check.eq(obj.get("rooms"), [], "a deleted room is not the user's any more")

    # 100 rooms at most: with 100 the 101st join is RATE_LIMITED and changes nothing
    stack.redis.command("HSET", "mc:{ualice}:rooms", *[x for i in range(100) for x in (f"9{i:04d}", "")])
    obj, raw = join(a8, lobby, ref="full")
    check(is_error("RATE_LIMITED", "full")(obj), "the 101st room is RATE_LIMITED", raw)
    check.eq(stack.redis.command("HEXISTS", "mc:{ualice}:rooms", lobby), 0, "and is not added")
    check(d1.alive and d2.alive, "both daemons are still running")


harness.main(test)
