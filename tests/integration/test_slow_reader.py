#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A WebSocket client that stops reading: the kernel holds a bounded
amount for it (SO_SNDBUF), it is closed with 1013 when its queue fills,
and its TCP connection is really gone within seconds even if it never
reads again; one that reads again gets what was sent, then the 1013
close frame. One that stopped reading and then sends a close frame the
daemon refuses (code 5000) is hung up on at once, and its TCP connection is
gone within seconds too, though the kernel still holds data for it."""

import os
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, join  # noqa: E402
from wsclient import OP_TEXT  # noqa: E402

QUEUE = 64
GONE_WITHIN = 8.0       # the close grace (2 s) plus a keep-alive sweep (5 s), and a margin
SNDBUF_MAX = 512 * 1024


def server_sockets(d, client_port):
    """(state, Send-Q) of the daemon's sockets towards client_port."""
    out = subprocess.run(["ss", "-tanH", f"( sport = :{d.port} and dport = :{client_port} )"],
                         capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 3:
            rows.append((f[0], int(f[2])))
    return rows


def too_slow_lines(d):
    return [l for l in d.log_text().splitlines() if "reads too slowly" in l]


def flood_until_closed(d, sender, lobby, victim_port, n_before):
    """Sends big messages until the daemon gives up on the victim; returns
    the largest Send-Q seen towards it. The sender reads as it goes, never
    more than half its own queue behind."""
    biggest = 0
    text = "x" * 3000
    received = 0
    for i in range(5000):
        sender.send_json({"command": "send", "room": lobby, "message": f"{i} {text}"})
        while i + 1 - received > QUEUE // 2:
            op, _ = sender.recv(5 * SLOW)
            if op == OP_TEXT:
                received += 1
        if i % 20 == 0:
            for _, q in server_sockets(d, victim_port):
                biggest = max(biggest, q)
            if len(too_slow_lines(d)) > n_before:
                return biggest
    return biggest


def wait_gone(d, port):
    """Seconds until the daemon's socket towards port is gone (TIME-WAIT
    counts as gone), or None."""
    start = time.monotonic()
    while time.monotonic() - start < 3 * GONE_WITHIN * SLOW:
        if not [r for r in server_sockets(d, port) if r[0] != "TIME-WAIT"]:
            return time.monotonic() - start
        time.sleep(0.2)
    return None


def test(stack, check):
    d = stack.start_daemon(args=[f"--send-queue-frames={QUEUE}", "--rate-limit=10000", "--rate-burst=10000",
                                 "--overload-lag=1h"])
    d.wait_notify("STATUS", pred=lambda s: s.startswith("Serving"))
    lobby = stack.create_room("Lobby")
    bob = d.ws("bob")
    join(bob, lobby)

    # One that never reads again.
    mute = d.ws("alice")
    join(mute, lobby)
    mute.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    port = mute.sock.getsockname()[1]
    biggest = flood_until_closed(d, bob, lobby, port, 0)
    check(len(too_slow_lines(d)) == 1, "the client that stopped reading is found too slow", too_slow_lines(d))
    check(biggest <= SNDBUF_MAX, f"the kernel holds at most {SNDBUF_MAX // 1024} KiB for it", biggest)
    gone = wait_gone(d, port)
    check(gone is not None and gone <= GONE_WITHIN * SLOW,
          f"its TCP connection is gone within {GONE_WITHIN:.0f} s, though it never reads", gone)
    mute.abort()

    # One that reads again right after the daemon gave up on it.
    slow = d.ws("alice")
    join(slow, lobby)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    port = slow.sock.getsockname()[1]
    flood_until_closed(d, bob, lobby, port, 1)
    check(len(too_slow_lines(d)) == 2, "the second slow client is found too slow", too_slow_lines(d))
    try:
        code = slow.wait_close(10 * SLOW)
    except socket.timeout:
        code = "still open"
    check.eq(code, 1013, "reading again, it gets what was sent, then the close frame 1013")

    # One that stops reading, lets the kernel fill up for it, then sends a
    # close the daemon refuses: the daemon hangs up with data still queued
    # in the kernel.
    bad = d.ws("alice")
    join(bad, lobby)
    bad.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    port = bad.sock.getsockname()[1]
    queued = 0
    for i in range(QUEUE * 4):
        bob.send_json({"command": "send", "room": lobby, "message": f"b{i} {'y' * 3000}"})
        bob.recv(5 * SLOW)
        queued = max([q for _, q in server_sockets(d, port)] or [0])
        if queued >= 100 * 1024:
            break
    check(queued >= 100 * 1024, "the kernel holds data for the client that stopped reading", queued)
    bad.send_frame(0x8, (5000).to_bytes(2, "big"))
    gone = wait_gone(d, port)
    check(gone is not None and gone <= GONE_WITHIN * SLOW,
          f"after a refused close its TCP connection is gone within {GONE_WITHIN:.0f} s, though it never reads", gone)
    check.eq(len(too_slow_lines(d)), 2, "... and it was not cut as too slow first")
    bad.abort()

    bob.drain(0.3)
    check(bob.is_open(), "the sender is still connected")
    check(d.alive, "the daemon is still running")


harness.main(test)
