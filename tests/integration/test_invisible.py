#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Messages and room titles with nothing visible are refused: over the
WebSocket (send and edit: BAD_REQUEST, nobody receives anything) and over
D-Bus (CreateRoom and the Title property: InvalidArgument). Emoji with
U+FE0F, right-to-left and CJK text still pass."""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import ERROR_INVALID_ARGUMENT, ROOM_IFACE, expect_message, join, room_path, send  # noqa: E402

INVISIBLE = {
    "U+3164 HANGUL FILLER": "\u3164",
    "U+200E LEFT-TO-RIGHT MARK": "\u200e",
    "U+200F RIGHT-TO-LEFT MARK": "\u200f",
    "U+202E RIGHT-TO-LEFT OVERRIDE": "\u202e",
    "U+2066 LEFT-TO-RIGHT ISOLATE": "\u2066",
    "U+00AD SOFT HYPHEN": "\u00ad",
    "U+FE0F VARIATION SELECTOR-16": "\ufe0f",
    "U+2800 BRAILLE PATTERN BLANK": "\u2800",
    "U+115F U+1160 U+FFA0 Hangul fillers": "\u115f\u1160\uffa0",
    "U+200B ZERO WIDTH SPACE": "\u200b",
    "tag characters": "\U000e0020\U000e007f",
    "all of them with spaces": " \u3164\u200e\u200f \u202e\u2066\u00ad\ufe0f\u2800\t",
}

VISIBLE = {
    "an emoji with U+FE0F": "\u2764\ufe0f",
    "Hebrew": "\u05e9\u05dc\u05d5\u05dd",
    "Arabic after an RLM": "\u200f\u0645\u0631\u062d\u0628\u0627",
    "CJK": "\u4f60\u597d",
    "one letter among fillers": "\u3164x\u2800",
}


def test(stack, check):
    d = stack.start_daemon(args=["--rate-limit=1000", "--rate-burst=1000"])
    bus = d.bus
    lobby = stack.create_room("Lobby")
    a = d.ws("alice")
    b = d.ws("bob")
    join(a, lobby)
    join(b, lobby)

    def refused(cmd, what):
        a.send_json(cmd)
        try:
            obj, _ = a.expect(lambda o: "error" in o or o.get("ok"), what=f"answer to {what}")
        except (TimeoutError, harness.WSClosed) as e:
            check(False, f"{what} → BAD_REQUEST", repr(e))
            return
        check.eq(obj.get("error"), "BAD_REQUEST", f"{what} → BAD_REQUEST")
        check.eq(obj.get("ref"), cmd["ref"], f"{what}: the error echoes ref")

    # a message to edit
    send(a, lobby, "original", ref="orig")
    obj, _ = a.expect(lambda o: o.get("ok") or "error" in o, what="ack of the original")
    mid = obj.get("id")
    check(isinstance(mid, str) and "-" in mid, "send with ref is acknowledged with an id", obj)
    expect_message(b, lobby, "original", "alice")

    for i, (name, text) in enumerate(INVISIBLE.items()):
        refused({"command": "send", "room": lobby, "message": text, "ref": f"s{i}"}, f"send of {name}")
        refused({"command": "edit", "room": lobby, "id": mid, "message": text, "ref": f"e{i}"},
                f"edit to {name}")

    for name, text in VISIBLE.items():
        send(a, lobby, text)
        try:
            expect_message(b, lobby, text, "alice")
            check(True, f"{name} is relayed")
        except TimeoutError as e:
            check(False, f"{name} is relayed", str(e))

    # bob saw none of the refused messages nor edits: the first thing he
    # gets after the visible ones is this marker
    send(a, lobby, "marker")
    seen = []
    try:
        b.expect(lambda o: seen.append(o) or o.get("message") == "marker", what="the marker")
    except TimeoutError as e:
        check(False, "bob gets the marker", str(e))
    stray = [o for o in seen if o.get("message") in INVISIBLE.values() or o.get("edited")]
    check(not stray, "no refused message or edit reached anyone", stray)

    # D-Bus: CreateRoom and the Title property
    path = room_path(lobby)
    before = len(bus.call("ListRooms")[0])
    for name, text in INVISIBLE.items():
        check.eq(bus.call_error("CreateRoom", text, False), ERROR_INVALID_ARGUMENT, f"CreateRoom titled {name}")
        check.eq(bus.set_property_error(path, "Title", "string:" + text), ERROR_INVALID_ARGUMENT,
                 f"setting Title to {name}")
    check.eq(len(bus.call("ListRooms")[0]), before, "no room was created with an invisible title")
    check.eq(bus.get_property("Title", path=path, iface=ROOM_IFACE), "Lobby", "the title is unchanged")

    for name, text in VISIBLE.items():
        room, _ = bus.call("CreateRoom", "sb", text, False)
        check.eq(bus.get_property("Title", path=room_path(room), iface=ROOM_IFACE), text,
                 f"CreateRoom titled {name}")
    check.eq(bus.set_property_error(path, "Title", "string:\u05e9\u05dc\u05d5\u05dd \u2764\ufe0f"), None,
             "setting Title to Hebrew and an emoji")

    check(a.is_open() and b.is_open(), "both connections are still open")
    check(d.alive, "the daemon is still running")


harness.main(test)
