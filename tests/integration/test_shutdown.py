#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""SIGTERM with open WebSockets: every one gets close 1001, STOPPING=1 is
sent, and the daemon exits 0 within 5 s."""

import os
import signal
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, join  # noqa: E402
from wsclient import WS  # noqa: E402


def test(stack, check):
    d = stack.start_daemon()
    lobby = stack.create_room("Lobby")
    ajar = d.login("alice")
    bjar = d.login("bob")
    socks = []
    for i in range(10):
        ws = WS.connect(d.base, cookies=ajar if i % 2 else bjar)
        if i < 5:
            join(ws, lobby)
        socks.append(ws)
    # one idle HTTP keep-alive connection, half a request on another
    import socket
    idle = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    half = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    half.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    codes = []
    for ws in socks:
        try:
            codes.append(ws.wait_close(5 * SLOW))
        except Exception as e:  # noqa: BLE001
            codes.append(repr(e))
    check(all(c == 1001 for c in codes), "every open WebSocket gets close 1001", codes)
    try:
        rc = d.stop(timeout=5)
    except TimeoutError as e:
        rc = str(e)
    took = time.monotonic() - t0
    check.eq(rc, 0, "the daemon exits with status 0")
    check(took < 5 * SLOW, f"... within 5 s ({took:.2f}s)")
    check(d.notified("STOPPING", "1"), "STOPPING=1 was sent", d.notifications)
    idle.close()
    half.close()


harness.main(test)
