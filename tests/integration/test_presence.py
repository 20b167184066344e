#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Enter/leave notices (msg_type 4/5) go to the others, also when a client
dies without a close frame; leaving a room never joined broadcasts nothing."""

import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, is_msg, join, leave  # noqa: E402


def test(stack, check):
    d = stack.start_daemon()
    lobby = stack.create_room("Lobby")
    other = stack.create_room("Other")
    a = d.ws("alice")
    bjar = d.login("bob")
    join(a, lobby)

    # enter / leave
    b = d.ws(jar=bjar)
    join(b, lobby)
    _, raw = a.expect(is_msg(lobby, username="bob", msg_type=4), what="enter notice")
    check.eq(raw, json.dumps({"msg_type": 4, "room": lobby, "username": "bob"}), "alice sees bob enter (v1 bytes)")
    obj, raw = leave(b, lobby)
    check.eq(raw, json.dumps({"leave": lobby}), "bob gets {\"leave\": id}")
    _, raw = a.expect(is_msg(lobby, username="bob", msg_type=5), what="leave notice")
    check.eq(raw, json.dumps({"msg_type": 5, "room": lobby, "username": "bob"}), "alice sees bob leave (v1 bytes)")
    check(not b.expect_none(is_msg(lobby, msg_type=5), 0.3), "bob gets no leave notice for himself")

    # leaving a room not joined (existing, and the other one) broadcasts nothing
    b.send_json({"command": "leave", "room": lobby})
    b.send_json({"command": "leave", "room": other})
    bad = a.expect_none(lambda o: o.get("msg_type") == 5, 1.0)
    check(not bad, "leaving rooms not joined broadcasts no leave notice", bad)
    b.drain(0.3)
    obj, _ = join(b, lobby)
    check.eq(obj.get("join"), lobby, "bob's connection still works after those leaves")
    a.expect(is_msg(lobby, username="bob", msg_type=4), what="enter notice")

    # killed client (RST, no close frame): the others see it leave
    b.abort()
    try:
        obj, raw = a.expect(is_msg(lobby, username="bob", msg_type=5), 5 * SLOW, what="leave notice after a kill")
        check(True, "alice sees bob leave when his socket is reset without a close frame")
    except TimeoutError as e:
        check(False, "alice sees bob leave when his socket is reset without a close frame", str(e))

    # closed with a FIN, no close frame
    b = d.ws(jar=bjar)
    join(b, lobby)
    a.expect(is_msg(lobby, username="bob", msg_type=4), what="enter notice")
    b.shutdown()
    try:
        a.expect(is_msg(lobby, username="bob", msg_type=5), 5 * SLOW, what="leave notice after a FIN")
        check(True, "alice sees bob leave when his socket closes without a close frame")
    except TimeoutError as e:
        check(False, "alice sees bob leave when his socket closes without a close frame", str(e))

    # a clean close handshake
    b = d.ws(jar=bjar)
    join(b, lobby)
    a.expect(is_msg(lobby, username="bob", msg_type=4), what="enter notice")
    b.close(1000)
    check.eq(b.wait_close(5), 1000, "bob's close is answered")
    try:
        a.expect(is_msg(lobby, username="bob", msg_type=5), 5 * SLOW, what="leave notice after close")
        check(True, "alice sees bob leave after a close handshake")
    except TimeoutError as e:
        check(False, "alice sees bob leave after a close handshake", str(e))

    # the room has only alice again
    b = d.ws(jar=bjar)
    obj, _ = join(b, lobby)
    if "members" in obj:
        check.eq(sorted(obj["members"]), ["alice", "bob"], "members after the departures: alice and bob only")
    check(a.is_open() and b.is_open(), "connections still open")
    check(d.alive, "the daemon is still running")


harness.main(test)
