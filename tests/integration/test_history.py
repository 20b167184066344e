#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""History on join (oldest first), replay with since on rejoin, and the
history command (extension)."""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import expect_message, join, leave, send  # noqa: E402


def texts(history):
    return [h.get("message") for h in history if isinstance(h, dict) and h.get("msg_type") == 0]


def test(stack, check):
    d = stack.start_daemon()
    lobby = stack.create_room("Lobby")
    ajar = d.login("alice")
    a = d.ws(jar=ajar)
    join(a, lobby)
    for m in ("m1", "m2", "m3"):
        send(a, lobby, m)
        expect_message(a, lobby, m, "alice")

    b = d.ws("bob")
    obj, raw = join(b, lobby)
    hist = obj.get("history")
    check(isinstance(hist, list), "join carries history", raw)
    hist = hist or []
    check.eq(texts(hist)[-3:], ["m1", "m2", "m3"], "history holds the 3 messages, oldest first")
    check(all(h.get("msg_type") == 0 and h.get("room") == lobby and h.get("username") == "alice"
              and isinstance(h.get("id"), str) and isinstance(h.get("ts"), int) for h in hist if h.get("msg_type") == 0),
          "history entries are shaped like message events", hist)
    check(all("own" not in h for h in hist), "no own in bob's history of alice's messages", hist)
    check(obj.get("complete", True) is not False, "complete is not false on a plain join", obj.get("complete"))
    last = hist[-1]["id"] if hist else None

    a2 = d.ws(jar=ajar)
    obj, _ = join(a2, lobby)
    mine = [h for h in obj.get("history") or [] if h.get("username") == "alice"]
    check(mine and all(h.get("own") is True for h in mine), "alice's own messages in her history carry own: true",
          mine)

    # since: bob leaves, two more messages, bob rejoins with since=<last id seen>
    leave(b, lobby)
    for m in ("m4", "m5"):
        send(a, lobby, m)
        expect_message(a, lobby, m, "alice")
    obj, raw = join(b, lobby, since=last)
    check.eq(texts(obj.get("history") or []), ["m4", "m5"], "join with since replays exactly what came after")
    check(obj.get("complete") is not False, "complete is not false (the gap is small)", raw)
    newest = (obj.get("history") or [{}])[-1].get("id")

    leave(b, lobby)
    obj, raw = join(b, lobby, since=newest)
    check.eq(texts(obj.get("history") or []), [], "join with since=<newest id> replays nothing")

    # since with a malformed id is a BAD_REQUEST, not a crash
    leave(b, lobby)
    obj, raw = join(b, lobby, since="not-an-id")
    check.eq(obj.get("error"), "BAD_REQUEST", "join with a malformed since is BAD_REQUEST")

    # the history command (extension)
    b.send_json({"command": "history", "room": lobby, "limit": 2, "ref": "h1"})
    obj, raw = b.expect(lambda o: ("history" in o and "join" not in o) or "error" in o, what="history reply")
    if "error" in obj:
        # bob's last join failed above: join again and retry
        join(b, lobby)
        b.send_json({"command": "history", "room": lobby, "limit": 2, "ref": "h1"})
        obj, raw = b.expect(lambda o: ("history" in o and "join" not in o) or "error" in o, what="history reply")
    check.eq(texts(obj.get("history") or []), ["m4", "m5"], "history limit 2 gives the newest 2, oldest first")
    check.eq(obj.get("room"), lobby, "history reply names the room")
    check.eq(obj.get("ref"), "h1", "history reply echoes ref")
    check(d.alive, "the daemon is still running")


harness.main(test)
