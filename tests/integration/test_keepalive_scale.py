#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Keep-alive at scale: thousands of WebSockets that never answer a ping
are each dropped about twice `keepalive` after they last spoke, and one
that answers stays. The first argument sets the count (default 3000);
meson runs it with 3000 in the integration suite and with 19000 in the
scale suite, as many as one process may open here (RLIMIT_NOFILE's hard
limit is 20000)."""

import base64
import os
import resource
import selectors
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW  # noqa: E402
from wsclient import WSClosed, cookie_header  # noqa: E402

COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
KEEPALIVE = 2.0
BATCH = 500


def open_and_watch(d, jar, n, quiet_for):
    """Opens n WebSockets that complete the handshake and then never answer
    (what they get is read and thrown away), BATCH at a time, and watches
    them all the while. Returns ({socket: seconds from its handshake to the
    daemon closing it}, how many were accepted, seconds to open them all)."""
    sel = selectors.DefaultSelector()
    request = ("GET /chat/stream/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
               "Origin: http://127.0.0.1:%d\r\nCookie: %s\r\n\r\n" %
               (d.port, base64.b64encode(b"k" * 16).decode(), d.port, cookie_header(jar))).encode()
    heads = {}          # socket -> response bytes so far, while handshaking
    opened = {}         # socket -> when its 101 came
    closed = {}
    refused = 0
    started = time.monotonic()
    all_open = None
    last_close = started
    while True:
        now = time.monotonic()
        if not heads and len(opened) + refused < n:
            for _ in range(min(BATCH, n - len(opened) - refused)):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", d.port))
                sel.register(s, selectors.EVENT_WRITE)
                heads[s] = b""
        if all_open is None and len(opened) + refused == n:
            all_open = now - started
        if len(closed) + refused == n or now - last_close > quiet_for:
            break
        for key, ev in sel.select(0.2):
            s = key.fileobj
            if s in heads and ev & selectors.EVENT_WRITE:
                s.send(request)
                sel.modify(s, selectors.EVENT_READ)
                continue
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if s in heads:
                heads[s] += data
                if b"\r\n\r\n" in heads[s] or not data:
                    if heads.pop(s).startswith(b"HTTP/1.1 101"):
                        opened[s] = time.monotonic()
                    else:
                        refused += 1
                        sel.unregister(s)
                        s.close()
            elif not data:
                closed[s] = time.monotonic() - opened[s]
                last_close = time.monotonic()
                sel.unregister(s)
                s.close()
    for s in list(heads) + [s for s in opened if s not in closed]:
        sel.unregister(s)
        s.close()
    return closed, len(opened), all_open


def answer_pings(ws, stop, result):
    """Reads ws (answering pings) until stop is set; result[0]: still open."""
    while not stop.is_set():
        try:
            ws.recv(0.2)
        except socket.timeout:
            pass
        except (WSClosed, OSError):
            result[0] = False
            return


def test(stack, check):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = COUNT + 500
    if need > hard:
        raise harness.Skip(f"{COUNT} connections need RLIMIT_NOFILE {need}; the hard limit is {hard}")
    # The daemon inherits it.
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, need + 500)), hard))
    d = stack.start_daemon(args=[f"--keepalive={KEEPALIVE:g}s", "--max-connections-per-address=0"])
    d.wait_notify("STATUS", pred=lambda s: s.startswith("Serving"))
    jar = d.login("alice")
    alive = d.ws("alice")
    stop = threading.Event()
    alive_open = [True]
    reader = threading.Thread(target=answer_pings, args=(alive, stop, alive_open))
    reader.start()

    closed, accepted, took = open_and_watch(d, jar, COUNT, 2 * KEEPALIVE + 10 * SLOW)
    harness.log(f"# {accepted} WebSockets open in {took or 0:.1f} s")
    check.eq(accepted, COUNT, f"{COUNT} silent WebSockets are accepted")
    check.eq(len(closed), accepted, f"every one of {COUNT} silent WebSockets is dropped")
    if closed:
        late = max(closed.values())
        early = min(closed.values())
        harness.log(f"# dropped {early:.2f}-{late:.2f} s after their handshake")
        # Quiet for keepalive: a ping; as long again: dropped. The sweep
        # runs every keepalive / 4.
        check(early >= 2 * KEEPALIVE - 0.1, "none is dropped before twice keepalive", f"{early:.2f} s")
        check(late <= 2 * KEEPALIVE + 1.5 * SLOW, "each is dropped within 1.5 s of twice keepalive",
              f"{late:.2f} s")
    stop.set()
    reader.join()
    check(alive_open[0] and alive.is_open(), "a connection that answers pings all along is still open")
    check(d.alive, "the daemon is still running")


harness.main(test, timeout=120 if COUNT > 5000 else None)
