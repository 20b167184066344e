#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Keep-alive: a quiet WebSocket is pinged after `keepalive`; one that
answers stays, one that does not is dropped after as long again, and the
others see it leave. Talking counts as an answer."""

import os
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, is_msg, join  # noqa: E402
from wsclient import WSClosed  # noqa: E402


def read_for(ws, seconds):
    """Reads (answering pings) for this long; False if the connection ended."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            ws.recv(max(0.05, end - time.monotonic()))
        except socket.timeout:
            pass
        except (WSClosed, OSError):
            return False
    return True


def test(stack, check):
    d = stack.start_daemon(args=["--keepalive=1s"])
    lobby = stack.create_room("Lobby")
    alice = d.ws("alice")
    join(alice, lobby)
    bob = d.ws("bob")
    join(bob, lobby)
    alice.expect(is_msg(lobby, username="bob", msg_type=4), what="bob's enter notice")
    carol = d.ws("alice")
    join(carol, lobby)

    # bob reads nothing from now on, so he answers no ping. alice reads and
    # answers; a second connection of alice ("carol" here) talks every half second and reads nothing but her own
    # echo.
    started = time.monotonic()
    left_at = None
    end = started + 4.0 * SLOW
    next_talk = started
    while time.monotonic() < end:
        if time.monotonic() >= next_talk:
            carol.send_json({"command": "send", "room": lobby, "message": "still here"})
            next_talk += 0.5
        try:
            obj, _ = alice.recv_json(0.1)
            if left_at is None and obj.get("msg_type") == 5 and obj.get("username") == "bob":
                left_at = time.monotonic() - started
        except socket.timeout:
            pass
    check(len(alice.pings) >= 1, "a quiet connection is pinged", alice.pings)
    check(left_at is not None, "bob, who answers no ping, is dropped and alice sees him leave", left_at)
    if left_at is not None:
        check(1.5 <= left_at <= 3.5 * SLOW, "dropped after about twice keepalive (1 s), not before",
              f"{left_at:.2f} s")
    check(read_for(alice, 0.2), "alice, who answers pings, is still connected")

    # Bursts (within the rate limit), with quiet between them (a sweep gives
    # a grown send queue back meanwhile): every message arrives, in order.
    for burst in range(3):
        for i in range(15):
            carol.send_json({"command": "send", "room": lobby, "message": f"burst {burst}.{i}"})
        got = []
        while len(got) < 15:
            obj, _ = alice.expect(lambda o: str(o.get("message", "")).startswith(f"burst {burst}."),
                                  5 * SLOW, what=f"burst {burst}")
            got.append(obj["message"])
        check.eq(got, [f"burst {burst}.{i}" for i in range(15)], f"burst {burst}: 15 messages, in order")
        read_for(alice, 0.6)
    carol.drain(0.3)
    check(carol.is_open(), "a connection that talks but reads little is still connected")
    check(not read_for(bob, 2.0), "bob's socket is closed by the daemon")
    check(d.alive, "the daemon is still running")


harness.main(test)
