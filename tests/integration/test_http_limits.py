#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Requests a broken or hostile client sends: a cookie-heavy request head
is served, an oversized one gets 431, an over-long URL 414, other methods
405 with Allow, conflicting Content-Length 400; a head or body that
trickles in is cut off after request-timeout; one address gets at most
max-connections-per-address connections, answered 503 beyond that and
logged once. The daemon keeps serving through all of it."""

import os
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW  # noqa: E402
from wsclient import WS, WSRefused  # noqa: E402

TIMEOUT = 2        # --request-timeout, seconds
PER_ADDRESS = 20   # --max-connections-per-address


def connect(d, source="127.0.0.1"):
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10, source_address=(source, 0))
    return s


def read_reply(s, timeout=5.0):
    """Everything until the server closes or a whole response arrived:
    (status or None, head text, raw bytes)."""
    s.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                if len(body) >= length:
                    break
    except (socket.timeout, ConnectionResetError):
        pass
    if not data.startswith(b"HTTP/1.1 "):
        return None, "", data
    head = data.partition(b"\r\n\r\n")[0].decode("latin-1")
    return int(data[9:12]), head, data


def exchange(d, raw, source="127.0.0.1"):
    with connect(d, source) as s:
        s.sendall(raw)
        return read_reply(s)


def get(path="/healthz", extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def closed_within(s, seconds):
    """Seconds until the server closed s, or None if it stayed open."""
    start = time.monotonic()
    s.settimeout(0.2)
    while time.monotonic() - start < seconds:
        try:
            if s.recv(65536) == b"":
                return time.monotonic() - start
        except socket.timeout:
            pass
        except OSError:
            return time.monotonic() - start
    return None


def test(stack, check):
    d = stack.start_daemon(args=[f"--request-timeout={TIMEOUT}s",
                                 f"--max-connections-per-address={PER_ADDRESS}"])
    # The spawned auth helper's own READY=1 may come first.
    d.wait_notify("STATUS", pred=lambda s: s.startswith("Serving"))
    jar = d.login("alice")

    # Headers
    cookies = "; ".join(f"other_app_{i}={'v' * 80}" for i in range(100))      # ~9 KB
    status, head, _ = exchange(d, get("/login", f"Cookie: {cookies}\r\n"))
    check.eq(status, 200, "a 9 KB Cookie header (other applications' cookies) is served")
    big_jar = dict(jar)
    big_jar.update({f"other_app_{i}": "v" * 80 for i in range(100)})
    try:
        ws = WS.connect(d.base, cookies=big_jar)
        check(True, "a WebSocket upgrade with 9 KB of cookies is accepted")
        ws.shutdown()
    except (WSRefused, OSError) as e:
        check(False, "a WebSocket upgrade with 9 KB of cookies is accepted", repr(e))

    status, head, raw = exchange(d, get("/", "X-Filler: " + "f" * 20000 + "\r\n"))
    check.eq(status, 431, "20 KB of headers: 431")
    check(head.startswith("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "... with its reason phrase", head)
    check("Connection: close" in head, "... and the connection closes", head)
    status, _, _ = exchange(d, get("/", "".join(f"X-H{i}: {'h' * 200}\r\n" for i in range(100))))
    check.eq(status, 431, "100 headers of 200 bytes (20 KB): 431")
    status, _, _ = exchange(d, get("/" + "a" * 5000))
    check.eq(status, 414, "a 5,000-byte URL: 414")
    status, _, _ = exchange(d, b"GET /" + b"a" * 30000)
    check.eq(status, 414, "a URL that never ends: 414")

    for method in ("TRACE", "CONNECT", "OPTIONS", "PUT", "DELETE", "PATCH", "BREW"):
        path = "127.0.0.1:1" if method == "CONNECT" else "/"
        status, head, _ = exchange(d, f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        check.eq(status, 405, f"{method}: 405")
        check("Allow: GET, HEAD, POST" in head, f"{method}: ... with Allow", head)

    # A later request on a kept-alive connection goes to lws; still 405 with Allow.
    with connect(d) as s:
        s.sendall(get("/healthz"))
        first, _, _ = read_reply(s)
        s.sendall(b"DELETE /login HTTP/1.1\r\nHost: x\r\n\r\n")
        status, head, _ = read_reply(s)
    check.eq((first, status), (200, 405), "DELETE as the second request of a connection: 405")
    check("allow: get, head, post" in head.lower(), "... with Allow", head)
    status, head, _ = exchange(d, b"POST /api/rooms HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    check.eq(status, 405, "POST to /api/rooms: 405")
    check("allow: get, head" in head.lower(), "... with Allow: GET, HEAD", head)

    status, _, _ = exchange(d, b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                               b"Content-Length: 40\r\n\r\nuser=")
    check.eq(status, 400, "two different Content-Length headers: 400")
    status, _, _ = exchange(d, b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    check.eq(status, 400, "Content-Length with Transfer-Encoding: 400")
    status, _, _ = exchange(d, b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nuser=")
    check.eq(status, 400, "a Content-Length that is no number: 400")
    status, _, _ = exchange(d, b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
    check.eq(status, 200, "after all that, a plain GET is served")

    # Deadlines: a head and a body that trickle in, one byte a second.
    s_head = connect(d)
    s_head.sendall(b"GET / HTTP/1.1\r\n")
    s_body = connect(d)
    s_body.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                   b"Content-Length: 100\r\n\r\nu")
    start = time.monotonic()
    head_closed = body_closed = None
    for s in (s_head, s_body):
        s.setblocking(False)
    while time.monotonic() - start < 3 * TIMEOUT * SLOW and (head_closed is None or body_closed is None):
        for s, which in ((s_head, "head"), (s_body, "body")):
            if (head_closed if which == "head" else body_closed) is not None:
                continue
            try:
                s.send(b"X")
                data = s.recv(65536)
                if data == b"" or data.startswith(b"HTTP/1.1 408"):
                    raise ConnectionResetError
            except BlockingIOError:
                continue
            except OSError:
                t = time.monotonic() - start
                if which == "head":
                    head_closed = t
                else:
                    body_closed = t
        time.sleep(0.25)
    check(head_closed is not None and head_closed <= TIMEOUT + 1.5,
          f"a request head trickled in is cut off after request-timeout ({TIMEOUT} s)", head_closed)
    check(body_closed is not None and body_closed <= TIMEOUT + 1.5,
          f"a request body trickled in is cut off after request-timeout ({TIMEOUT} s)", body_closed)
    s_head.close()
    s_body.close()

    # An idle connection that never sends a byte.
    with connect(d) as s:
        t = closed_within(s, 3 * TIMEOUT * SLOW)
        check(t is not None and t <= TIMEOUT + 1.5, "a connection that sends nothing is closed after "
              "request-timeout", t)

    # Per address: PER_ADDRESS connections, then a 503 and one log line.
    held = [connect(d, "127.0.0.2") for _ in range(PER_ADDRESS)]
    for s in held:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    for s in held:
        read_reply(s)
    refused = [exchange(d, get(), "127.0.0.2")[0] for _ in range(5)]
    check.eq(refused, [503] * 5, f"connection {PER_ADDRESS + 1} and more from one address: 503")
    status, _, _ = exchange(d, get(), "127.0.0.3")
    check.eq(status, 200, "another address is still served")
    lines = [l for l in d.log_text().splitlines() if "127.0.0.2" in l and "connections" in l]
    check(len(lines) == 1, "one log line for the address, not one per connection", lines)
    for s in held:
        s.close()
    harness.wait_until(lambda: exchange(d, get(), "127.0.0.2")[0] == 200, 5 * SLOW,
                       what="the address served again once its connections closed")
    check(True, "once its connections close, the address is served again")

    # Many addresses at once (the table grows, entries come and go): each
    # is still counted on its own.
    many = [connect(d, f"127.0.1.{i}") for i in range(1, 81)]
    for s in many:              # answered, so kept alive past request-timeout
        s.sendall(get())
        read_reply(s)
    for s in many[::2]:
        s.close()
    time.sleep(0.3)
    extra = [connect(d, "127.0.1.40") for _ in range(PER_ADDRESS - 1)]
    for s in extra:
        s.sendall(get())
        read_reply(s)
    status, _, _ = exchange(d, get(), "127.0.1.40")
    check.eq(status, 503, "with 80 addresses connected, one address still gets its own limit")
    status, _, _ = exchange(d, get(), "127.0.1.41")
    check.eq(status, 200, "... and its neighbour is served")
    for s in many[1::2] + extra:
        s.close()
    time.sleep(0.3)
    served = [exchange(d, get(), f"127.0.1.{i}")[0] for i in range(1, 81)]
    check(served == [200] * 80, "once they close, all 80 addresses are served", served)

    check(d.alive, "the daemon is still running")
    status, _, _ = exchange(d, get())
    check.eq(status, 200, "and serving")


harness.main(test)
