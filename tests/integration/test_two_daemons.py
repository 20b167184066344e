#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Two daemons sharing one Redis (each on its own bus): a room created on
one is seen on the other, messages and presence cross between them, and
Members counts users on both."""

import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, expect_message, is_msg, join, room_path, send  # noqa: E402


def test(stack, check):
    d1 = stack.start_daemon(name="d1")
    d2 = stack.start_daemon(name="d2", own_bus=True)
    a = d1.ws("alice")
    b = d2.ws("bob")
    a.expect(lambda o: "rooms" in o, what="rooms list on d1")
    b.expect(lambda o: "rooms" in o, what="rooms list on d2")

    lobby = d1.create_room("Lobby")
    try:
        obj, raw = b.expect(lambda o: "rooms" in o and any(r.get("id") == lobby for r in o["rooms"]),
                            5 * SLOW, what="the new room on d2")
        check(True, "a room created through d1 is pushed to d2's clients")
    except TimeoutError as e:
        check(False, "a room created through d1 is pushed to d2's clients", str(e))
    try:
        ids = harness.wait_until(lambda: [r[0] for r in d2.bus.call("ListRooms")[0] if r[0] == lobby],
                                 5 * SLOW, what="the room in d2's ListRooms")
        check(ids, "d2's ListRooms has the room")
    except TimeoutError as e:
        check(False, "d2's ListRooms has the room", str(e))

    join(a, lobby)
    obj, _ = join(b, lobby)
    check.eq(obj.get("join"), lobby, "bob joins through d2")
    if "members" in obj:
        check("alice" in obj["members"], "bob's join on d2 lists alice (on d1) as a member", obj["members"])
    try:
        a.expect(is_msg(lobby, username="bob", msg_type=4), 5 * SLOW, what="enter notice across daemons")
        check(True, "alice (d1) sees bob (d2) enter")
    except TimeoutError as e:
        check(False, "alice (d1) sees bob (d2) enter", str(e))

    send(a, lobby, "from d1")
    ob, rb = expect_message(b, lobby, "from d1", "alice")
    check("own" not in ob, "bob's copy from the other daemon has no own", rb)
    oa, ra = expect_message(a, lobby, "from d1", "alice")
    check(oa.get("own") is True, "alice's own copy has own: true", ra)
    check.eq(oa.get("id"), ob.get("id"), "the same id on both daemons")
    send(b, lobby, "from d2")
    expect_message(a, lobby, "from d2", "bob")
    check(True, "messages cross in both directions")

    try:
        members = harness.wait_until(
            lambda: sorted(d1.bus.get_property("Members", path=room_path(lobby), iface=harness.ROOM_IFACE))
            == ["alice", "bob"] or None, 3 * SLOW, what="Members on d1")
        check(members, "Members (through d1) has alice and bob across daemons")
    except TimeoutError as e:
        check(False, "Members (through d1) has alice and bob across daemons", str(e))

    # history written through d1 is replayed to a joiner on d2
    c = d2.ws("bob")
    obj, _ = join(c, lobby)
    texts = [h.get("message") for h in obj.get("history") or []]
    check("from d1" in texts and "from d2" in texts, "history on d2 includes messages from both", texts)

    # announce through d1's bus reaches d2's clients
    d1.bus.call("Announce", "sus", lobby, 1, "hear ye")
    try:
        b.expect(is_msg(lobby, "hear ye", msg_type=1), 5 * SLOW, what="announcement across daemons")
        check(True, "an announcement through d1 reaches d2's clients")
    except TimeoutError as e:
        check(False, "an announcement through d1 reaches d2's clients", str(e))

    # bob disconnects abruptly from d2: alice on d1 sees him leave once his
    # last connection there is gone
    c.abort()
    b.abort()
    try:
        a.expect(is_msg(lobby, username="bob", msg_type=5), 6 * SLOW, what="leave notice across daemons")
        check(True, "alice (d1) sees bob (d2) leave after his connections die")
    except TimeoutError as e:
        check(False, "alice (d1) sees bob (d2) leave after his connections die", str(e))

    # a room deleted through d2 disappears for d1's clients
    d2.bus.call("DeleteRoom", "s", lobby)
    try:
        obj, raw = a.expect(lambda o: o.get("leave") == lobby, 5 * SLOW, what="leave after delete")
        check.eq(obj.get("reason"), "deleted", "a room deleted through d2: alice on d1 gets leave, reason deleted")
    except TimeoutError as e:
        check(False, "a room deleted through d2: alice on d1 gets leave, reason deleted", str(e))
    time.sleep(0.2)
    check(d1.alive and d2.alive, "both daemons are still running")


harness.main(test)
