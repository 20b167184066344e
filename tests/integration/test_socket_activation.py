#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Socket activation: the listening socket comes in as fd 3 with
LISTEN_FDS=1, LISTEN_PID, LISTEN_FDNAMES=http, exactly like systemd; the
daemon serves on it like with --listen, and connections queued before it
was ready are served too."""

import os
import socket
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import expect_message, join, send  # noqa: E402


def test(stack, check):
    d = stack.start_daemon(mode="socket", wait=False)
    # A client that connects before the daemon is ready waits in the backlog.
    early = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    early.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{d.port}\r\nConnection: close\r\n\r\n".encode())
    d.wait_ready(10)
    check(True, "READY=1 arrives with a socket-activated listener")
    data = b""
    try:
        while True:
            chunk = early.recv(4096)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    early.close()
    check(data.startswith(b"HTTP/1.1 200"), "a connection queued before READY is served", data[:60])

    r = d.http("GET", "/healthz")
    check.eq(r.status, 200, "/healthz on the inherited socket")
    r = d.http("GET", "/login")
    check.eq(r.status, 200, "GET /login on the inherited socket")

    lobby = stack.create_room("Lobby")
    a = d.ws("alice")
    b = d.ws("bob")
    join(a, lobby)
    join(b, lobby)
    send(a, lobby, "activated")
    expect_message(b, lobby, "activated", "alice")
    check(True, "login, WebSocket, join and send work on the inherited socket")

    try:
        check(os.readlink(f"/proc/{d.proc.pid}/fd/3").startswith("socket:"), "fd 3 of the daemon is a socket")
    except OSError as e:
        check(False, "fd 3 of the daemon is a socket", repr(e))

    rc = d.stop()
    check.eq(rc, 0, "SIGTERM: exit status 0")


harness.main(test)
