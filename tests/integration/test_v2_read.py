#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Protocol version 2 (docs/protocol.md, "Version 2"): read markers and
unread counts that follow the user across two daemons, the marker moved by
the user's own send, mentions in live, history and edited messages, and
what a version 1 connection of the same user sees (nothing of it)."""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, is_msg, join, send  # noqa: E402


def hello(ws, ref="h", since=None):
    cmd = {"command": "hello", "version": 2, "ref": ref}
    if since is not None:
        cmd["since"] = since
    ws.send_json(cmd)
    return ws.expect(lambda o: o.get("ref") == ref, 5 * SLOW, what=f"answer to hello {ref}")


def connect(d, user, v2=True):
    ws = d.ws(user)
    ws.expect(lambda o: "rooms" in o, 5 * SLOW, what="room list")
    if v2:
        hello(ws)
    return ws


def reply(ws, cmd):
    ws.send_json(cmd)
    return ws.expect(lambda o: o.get("ref") == cmd["ref"], 5 * SLOW, what=f"answer to {cmd['ref']}")


def unread_event(ws, room, what):
    return ws.expect(lambda o: o.get("unread") == room, 5 * SLOW, what=what)


def test(stack, check):
    d1 = stack.start_daemon(name="d1")
    d2 = stack.start_daemon(name="d2", own_bus=True)
    room = d1.create_room("Lobby")
    other = d1.create_room("Other")

    a1 = connect(d1, "alice")
    a2 = connect(d2, "alice")
    v1 = connect(d1, "alice", v2=False)
    bob = connect(d2, "bob")
    join(bob, room)
    join(a1, room)
    a2.expect(lambda o: o.get("join") == room, 5 * SLOW, what="alice's d2 connection follows the join")
    join(v1, room)

    # bob writes three messages, one mentioning alice, one mentioning her inside an address
    ids = []
    for text, ref in (("hello @alice.", "b1"), ("mail alice@example.org", "b2"), ("@alice @bob @alice", "b3")):
        obj, raw = reply(bob, {"command": "send", "room": room, "message": text, "ref": ref})
        ids.append(obj.get("id"))
    o, r = a1.expect(is_msg(room, "hello @alice."), 5 * SLOW, what="live message on v2")
    check.eq(o.get("mentions"), ["alice"], "live: trailing dot is not part of the name")
    check(r.endswith('"mentions": ["alice"]}'), "live v2 message: mentions last when not own", r)
    o, r = a1.expect(is_msg(room, "mail alice@example.org"), 5 * SLOW, what="address")
    check.eq(o.get("mentions"), [], "alice@example.org mentions nobody")
    o, r = a1.expect(is_msg(room, "@alice @bob @alice"), 5 * SLOW, what="two mentions")
    check.eq(o.get("mentions"), ["alice", "bob"], "each name once, in order")
    o, r = v1.expect(is_msg(room, "@alice @bob @alice"), 5 * SLOW, what="v1 copy")
    check("mentions" not in o, "the version 1 connection's message has no mentions", r)

    # no marker yet: nothing counts; a new connection's joined event says so
    a3 = d2.ws("alice")
    a3.expect(lambda o: "rooms" in o, 5 * SLOW, what="room list")
    hello(a3, ref="h3")
    obj, raw = a3.expect(lambda o: o.get("join") == room, 5 * SLOW, what="joined after hello")
    check.eq((obj.get("read"), obj.get("unread"), obj.get("mentions")), (None, 0, 0),
             "no marker: read null, nothing unread")

    # read on d1 moves the marker: every v2 connection of alice hears it, on both daemons
    obj, raw = reply(a1, {"command": "read", "room": room, "id": ids[0], "ref": "k1"})
    check.eq(raw, '{"ok": true, "ref": "k1"}', "read acknowledged")
    want = f'{{"unread": "{room}", "read": "{ids[0]}", "count": 2, "mentions": 1}}'
    for ws, name in ((a1, "d1"), (a2, "d2"), (a3, "d2, second")):
        try:
            obj, raw = unread_event(ws, room, f"unread on {name}")
            check.eq(raw, want, f"unread event on {name}: 2 after the marker, 1 mentions alice")
        except TimeoutError as e:
            check(False, f"unread event on {name}", str(e))
    check(not v1.expect_none(lambda o: "unread" in o, 0.5 * SLOW), "the version 1 connection gets no unread event")

    # a later connection's joined event carries the same counts
    a4 = d1.ws("alice")
    a4.expect(lambda o: "rooms" in o, 5 * SLOW, what="room list")
    hello(a4, ref="h4", since={room: ids[1], "999": ids[0]})
    obj, raw = a4.expect(lambda o: o.get("join") == room, 5 * SLOW, what="joined after hello")
    check.eq((obj.get("read"), obj.get("unread"), obj.get("mentions")), (ids[0], 2, 1),
             "joined event: read, unread 2, mentions 1")
    check.eq([m.get("id") for m in obj.get("history") or []], [ids[2]], "hello's since: history after it")
    check.eq(obj.get("complete"), True, "hello's since: complete")
    check.eq([m.get("mentions") for m in obj.get("history") or []], [["alice", "bob"]],
             "joined history of version 2 carries mentions")
    check(f'"read": "{ids[0]}", "unread": 2, "mentions": 1}}' in raw + "}", "joined v2 key order", raw)

    # markers never move backwards
    obj, raw = reply(a2, {"command": "read", "room": room, "id": "1-0", "ref": "k2"})
    check.eq(obj.get("ok"), True, "an older read is acknowledged")
    check(not a1.expect_none(lambda o: o.get("unread") == room, 0.5 * SLOW), "and moves nothing")

    # bad reads
    for cmd, code, what in [
        ({"room": room, "id": "x"}, "BAD_REQUEST", "malformed id"),
        ({"room": room}, "BAD_REQUEST", "no id"),
        ({"room": "999", "id": "1-0"}, "ROOM_INVALID", "no such room"),
        ({"room": "01", "id": "1-0"}, "ROOM_INVALID", "room 01"),
        ({"room": other, "id": "1-0"}, "ROOM_ACCESS_DENIED", "a room the user has not joined"),
    ]:
        cmd.update({"command": "read", "ref": "bad"})
        obj, raw = reply(a1, cmd)
        check.eq(obj.get("error"), code, f"read of {what}: {code}")

    # alice's own send moves her marker to it: counts drop to 0 everywhere
    obj, raw = reply(a2, {"command": "send", "room": room, "message": "caught up", "ref": "s1"})
    mine = obj.get("id")
    for ws, name in ((a1, "d1"), (a2, "d2")):
        try:
            obj, raw = ws.expect(lambda o: o.get("unread") == room and o.get("read") == mine, 5 * SLOW,
                                 what=f"unread after own send on {name}")
            check.eq((obj.get("count"), obj.get("mentions")), (0, 0), f"own send: marker moved, 0 unread on {name}")
        except TimeoutError as e:
            check(False, f"own send moves the marker on {name}", str(e))
    o, r = a1.expect(lambda o: o.get("message") == "caught up", 5 * SLOW, what="own message on v2")
    check(r.endswith('"mentions": [], "own": true}'), "own v2 message: mentions [] then own", r)

    # edits: the edited message in history is edited, its mentions recomputed
    obj, raw = reply(bob, {"command": "edit", "room": room, "id": ids[1], "message": "ask @carol", "ref": "e1"})
    check.eq(obj.get("ok"), True, "bob edits his message")
    o, r = a1.expect(lambda o: o.get("id") == ids[1] and o.get("edited") is True, 5 * SLOW, what="live edit")
    check.eq(o.get("mentions"), ["carol"], "a live edit carries the new text's mentions")
    check(r.endswith('"mentions": ["carol"], "edited": true}'), "edit key order: mentions, edited", r)
    obj, raw = reply(a1, {"command": "history", "room": room, "ref": "hist"})
    by_id = {m.get("id"): m for m in obj.get("history") or []}
    check.eq((by_id.get(ids[1]) or {}).get("mentions"), ["carol"], "history: the edit's mentions recomputed")
    check.eq((by_id.get(ids[1]) or {}).get("edited"), True, "history: the edit is edited")
    check.eq((by_id.get(ids[2]) or {}).get("mentions"), ["alice", "bob"], "history: mentions of a message")
    obj, raw = reply(v1, {"command": "history", "room": room, "ref": "hist1"})
    check(all("mentions" not in m for m in obj.get("history") or []), "version 1 history has no mentions", raw)

    # an edit that adds a mention counts as a mention in the unread counts
    obj, raw = reply(bob, {"command": "send", "room": room, "message": "typo", "ref": "b4"})
    late = obj.get("id")
    reply(bob, {"command": "edit", "room": room, "id": late, "message": "fixed, @alice", "ref": "e2"})
    a5 = d2.ws("alice")
    a5.expect(lambda o: "rooms" in o, 5 * SLOW, what="room list")
    hello(a5, ref="h5")
    obj, raw = a5.expect(lambda o: o.get("join") == room, 5 * SLOW, what="joined after the edit")
    check.eq((obj.get("read"), obj.get("unread"), obj.get("mentions")), (mine, 1, 1),
             "joined after an edit: 1 unread, its new text mentions alice")

    # leave removes the marker: joining again starts without one
    reply(a1, {"command": "leave", "room": room, "ref": "l"})
    obj, raw = join(a1, room, ref="j")
    check.eq((obj.get("read"), obj.get("unread")), (None, 0), "after leave and join: no marker")
    check(d1.alive and d2.alive, "both daemons are still running")


harness.main(test)
