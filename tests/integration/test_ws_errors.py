#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Every bad command gets its error and the connection stays open: after
each one a valid command still gets its answer. ref is echoed."""

import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import expect_message, join, send  # noqa: E402

LIMIT = 64


def test(stack, check):
    d = stack.start_daemon(args=[f"--max-message-bytes={LIMIT}", "--rate-limit=1000", "--rate-burst=1000"])
    lobby = stack.create_room("Lobby")
    elsewhere = stack.create_room("Elsewhere")
    a = d.ws("alice")
    join(a, lobby)
    probe_n = [0]

    def still_works(what):
        probe_n[0] += 1
        text = f"probe {probe_n[0]}"
        send(a, lobby, text)
        try:
            expect_message(a, lobby, text, "alice")
            return True
        except (TimeoutError, harness.WSClosed) as e:
            check(False, f"after {what}: the connection still works", repr(e))
            return False

    def bad(frame, code, what, ref=None):
        if isinstance(frame, (dict, list)) or frame is None:
            frame = json.dumps(frame)
        a.send_text(frame)
        try:
            obj, raw = a.expect(harness.is_error(), what=f"error for {what}")
        except (TimeoutError, harness.WSClosed) as e:
            check(False, f"{what} → {code}", repr(e))
            return None
        if isinstance(code, tuple):
            check.within(obj.get("error"), code, f"{what} → {' or '.join(code)}")
        else:
            check.eq(obj.get("error"), code, f"{what} → {code}")
        if ref is not None:
            check.eq(obj.get("ref"), ref, f"{what}: the error echoes ref")
        if raw.startswith('{"error"'):
            check(raw.startswith(json.dumps({"error": obj.get("error")})[:-1]), f"{what}: v1 error bytes", raw)
        still_works(what)
        return obj

    # not JSON, not an object
    bad("this is not json", "BAD_REQUEST", "not JSON")
    bad("{\"command\": \"join\", ", "BAD_REQUEST", "truncated JSON")
    bad("", "BAD_REQUEST", "an empty frame")
    bad([1, 2], "BAD_REQUEST", "a JSON array")
    bad("\"join\"", "BAD_REQUEST", "a JSON string")
    bad("42", "BAD_REQUEST", "a JSON number")
    bad("null", "BAD_REQUEST", "JSON null")
    # (kept small: the frame limit follows --max-message-bytes)
    bad("[" * 200 + "]" * 200, "BAD_REQUEST", "arrays nested 200 deep")
    bad('{"command": "join", "room": "%s", "x": %s}' % (lobby, "[" * 100 + "]" * 100), "BAD_REQUEST",
        "an ignored key nested 100 deep")

    # command
    bad({"room": lobby}, "BAD_REQUEST", "no command")
    bad({"command": "dance", "room": lobby}, "BAD_REQUEST", "an unknown command")
    bad({"command": 1, "room": lobby}, "BAD_REQUEST", "command as a number")
    bad({"command": "JOIN", "room": lobby}, "BAD_REQUEST", "command in upper case")
    bad('{"command": "join", "command": "leave", "room": "%s"}' % lobby, "BAD_REQUEST", "duplicate keys")

    # room
    bad({"command": "join"}, "BAD_REQUEST", "join without room")
    bad({"command": "send", "message": "x"}, "BAD_REQUEST", "send without room")
    bad({"command": "join", "room": 1.5}, "BAD_REQUEST", "room as a float")
    bad({"command": "join", "room": float(lobby)}, "BAD_REQUEST", "room as a float with an integral value")
    bad({"command": "join", "room": True}, "BAD_REQUEST", "room as a bool")
    bad({"command": "join", "room": [lobby]}, "BAD_REQUEST", "room as an array")
    bad({"command": "join", "room": {"id": lobby}}, "BAD_REQUEST", "room as an object")
    bad({"command": "join", "room": None}, "BAD_REQUEST", "room null")
    bad({"command": "join", "room": f" {lobby} "}, "ROOM_INVALID", "room with spaces")
    bad({"command": "join", "room": "999999"}, "ROOM_INVALID", "room 999999 (no such room)")
    bad({"command": "join", "room": 999999}, "ROOM_INVALID", "room 999999 as a number")
    bad({"command": "join", "room": "0" + lobby}, "ROOM_INVALID", "room with a leading zero")
    bad({"command": "join", "room": ""}, "ROOM_INVALID", "empty room")
    bad({"command": "join", "room": -1}, "ROOM_INVALID", "negative room")
    bad({"command": "join", "room": "1" * 30}, "ROOM_INVALID", "a 30-digit room")
    bad({"command": "join", "room": "abc"}, "ROOM_INVALID", "room abc")

    # send
    bad({"command": "send", "room": elsewhere, "message": "x"}, "ROOM_ACCESS_DENIED", "send to a room not joined")
    bad({"command": "send", "room": "999999", "message": "x"}, ("ROOM_INVALID", "ROOM_ACCESS_DENIED"),
        "send to no such room")
    bad({"command": "send", "room": lobby}, "BAD_REQUEST", "send without message")
    bad({"command": "send", "room": lobby, "message": 42}, "BAD_REQUEST", "message as a number")
    bad({"command": "send", "room": lobby, "message": None}, "BAD_REQUEST", "message null")
    bad({"command": "send", "room": lobby, "message": ""}, "BAD_REQUEST", "empty message")
    bad({"command": "send", "room": lobby, "message": "   \n "}, "BAD_REQUEST", "blank message")
    bad({"command": "send", "room": lobby, "message": "x" * (LIMIT + 1)}, "MESSAGE_TOO_LONG",
        f"a {LIMIT + 1}-byte message (limit {LIMIT})")
    bad({"command": "send", "room": lobby, "message": "\u00e9" * (LIMIT // 2 + 1)}, "MESSAGE_TOO_LONG",
        f"{LIMIT // 2 + 1} two-byte characters (counted in bytes)")
    text = "y" * LIMIT
    send(a, lobby, text)
    try:
        expect_message(a, lobby, text, "alice")
        check(True, f"a message of exactly {LIMIT} bytes is accepted")
    except TimeoutError as e:
        check(False, f"a message of exactly {LIMIT} bytes is accepted", str(e))
    nul = "a\u0000b"
    a.send_text(json.dumps({"command": "send", "room": lobby, "message": nul}))
    obj, _ = a.expect(lambda o: "error" in o or o.get("message") == nul, what="answer to a NUL message")
    check(obj.get("error") == "BAD_REQUEST", "a message with NUL is BAD_REQUEST", obj)
    still_works("a message with NUL")

    # ref
    bad({"command": "join", "room": "999999", "ref": "r-1"}, "ROOM_INVALID", "unknown room with ref", ref="r-1")
    bad({"command": "dance", "ref": "r-2"}, "BAD_REQUEST", "unknown command with ref", ref="r-2")
    bad({"command": "send", "room": lobby, "message": "z" * 100, "ref": "r-3"}, "MESSAGE_TOO_LONG",
        "too long with ref", ref="r-3")
    bad({"command": "join", "room": lobby, "ref": 7}, "BAD_REQUEST", "ref as a number")
    bad({"command": "join", "room": lobby, "ref": "r" * 65}, "BAD_REQUEST", "ref over 64 bytes")
    obj, raw = join(a, elsewhere, ref="r-4")
    check.eq(obj.get("join"), elsewhere, "join with ref works")
    check.eq(obj.get("ref"), "r-4", "the join reply echoes ref")

    # unknown keys are ignored
    a.send_json({"command": "send", "room": lobby, "message": "with extra", "extra": {"x": [1, 2]}})
    try:
        expect_message(a, lobby, "with extra", "alice")
        check(True, "unknown keys are ignored")
    except TimeoutError as e:
        check(False, "unknown keys are ignored", str(e))

    check(a.is_open(), "the connection is still open after all that")
    check(d.alive, "the daemon is still running")


harness.main(test)
