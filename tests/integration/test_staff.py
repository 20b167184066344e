#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Staff-only rooms: refused for bob (ROOM_ACCESS_DENIED), allowed for
alice (multichat-staff); bob gets nothing from them."""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import expect_message, join, send  # noqa: E402


def test(stack, check):
    d = stack.start_daemon()
    staff = stack.create_room("Staff", True)
    lobby = stack.create_room("Lobby")
    a = d.ws("alice")
    b = d.ws("bob")

    obj, raw = join(b, staff, ref="s1")
    check.eq(obj.get("error"), "ROOM_ACCESS_DENIED", "bob may not join the staff-only room")
    check.eq(obj.get("ref"), "s1", "the error echoes ref")
    obj, raw = join(a, staff)
    check.eq(obj.get("join"), staff, "alice (multichat-staff) may join it")
    if "staff_only" in obj:
        check(obj["staff_only"] is True, "join reply says staff_only true", raw)

    b.send_json({"command": "send", "room": staff, "message": "let me in"})
    obj, _ = b.expect(harness.is_error(), what="error")
    check.eq(obj.get("error"), "ROOM_ACCESS_DENIED", "bob may not send to it")
    send(a, staff, "staff only talk")
    expect_message(a, staff, "staff only talk", "alice")
    check(not b.expect_none(lambda o: o.get("room") == staff and "msg_type" in o, 0.7),
          "bob receives nothing from the staff room")
    check(not a.expect_none(lambda o: o.get("msg_type") == 0 and o.get("message") == "let me in", 0.3),
          "bob's refused message went nowhere")

    obj, _ = join(b, lobby)
    check.eq(obj.get("join"), lobby, "bob's connection still works")
    check(d.alive, "the daemon is still running")


harness.main(test)
