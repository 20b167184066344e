#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""An open WebSocket keeps its login session from expiring as unused
(session-idle): the chat open in a tab is use. A session nobody uses
expires as before."""

import os
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, join  # noqa: E402
from wsclient import WS, WSClosed  # noqa: E402

IDLE = 2.0


def first_event(ws):
    """The first thing a new connection is told: the room list or an error."""
    obj, _ = ws.expect(lambda o: "rooms" in o or "error" in o, 5 * SLOW, what="room list or error")
    return obj


def test(stack, check):
    d = stack.start_daemon(args=[f"--session-idle={IDLE:g}s", "--keepalive=1s"])
    lobby = stack.create_room("Lobby")
    alice_jar = d.login("alice")
    bob_jar = d.login("bob")
    alice = WS.connect(d.base, cookies=alice_jar)
    join(alice, lobby)

    # alice keeps her tab open (and answers pings); bob has no tab open.
    end = time.monotonic() + 2.5 * IDLE
    while time.monotonic() < end:
        try:
            alice.recv(0.2)
        except socket.timeout:
            pass
        except (WSClosed, OSError) as e:
            check(False, "alice's connection stays open", repr(e))
            break

    again = WS.connect(d.base, cookies=alice_jar)
    obj = first_event(again)
    check("rooms" in obj, f"after {2.5 * IDLE:g} s with the chat open, alice's session is still valid", obj)
    later = WS.connect(d.base, cookies=bob_jar)
    obj = first_event(later)
    check.eq(obj.get("error"), "USER_HAS_TO_LOGIN", f"bob's session, unused for {2.5 * IDLE:g} s, has expired")
    try:
        code = later.wait_close(5 * SLOW)
    except Exception as e:  # noqa: BLE001
        code = repr(e)
    check.eq(code, 4001, "... and his new connection is closed with 4001")
    check(d.alive, "the daemon is still running")


harness.main(test)
