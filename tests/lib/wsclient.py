# SPDX-License-Identifier: LGPL-2.1-or-later
"""A minimal RFC 6455 client over a raw socket, plus HTTP and login helpers.

Our own rather than a library so tests can also send what a polite client
never would: unmasked or oversized frames, invalid UTF-8, stray continuation
frames, a connection dropped without a close frame. Python 3 stdlib only;
every socket operation is bounded by a timeout.
"""

import base64
import hashlib
import html.parser
import http.client as httpclient
import json
import os
import select
import socket
import ssl
import struct
import time
import urllib.parse

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEFAULT_TIMEOUT = 5.0


class WSRefused(Exception):
    """The server answered the upgrade with something other than 101."""

    def __init__(self, status, headers, body):
        super().__init__(f"WebSocket handshake refused: HTTP {status}")
        self.status = status
        self.headers = headers      # {lowercase name: value}, last one wins
        self.body = body


class WSClosed(Exception):
    """The connection is closed (after a close frame, or without one)."""

    def __init__(self, code=None, reason=b""):
        super().__init__(f"WebSocket closed (code {code})")
        self.code = code
        self.reason = reason


def _split_url(base):
    u = urllib.parse.urlsplit(base)
    return u.hostname, u.port or (443 if u.scheme == "https" else 80)


def _origin_of(base):
    u = urllib.parse.urlsplit(base)
    host, port = _split_url(base)
    return f"{u.scheme}://{host}:{port}"


def _tls_context(base):
    """For an https:// base: a context that verifies the server against the
    default trust store (SSL_CERT_FILE names a test CA); None for http://."""
    if urllib.parse.urlsplit(base).scheme != "https":
        return None
    return ssl.create_default_context()


def cookie_header(jar):
    return "; ".join(f"{k}={v}" for k, v in jar.items())


class WS:
    """One WebSocket connection. Use connect() to make one."""

    def __init__(self, sock, leftover=b"", response_headers=None):
        self.sock = sock
        self.buf = bytearray(leftover)
        self.response_headers = response_headers or {}
        self.close_code = None      # code of the server's close frame
        self.close_reason = b""
        self.closed = False         # no more frames will come
        self.got_close_frame = False
        self.sent_close = False
        self.pongs = []             # payloads of pongs received
        self.pings = []             # payloads of pings received (each answered)
        self.pending = []           # JSON messages read but not yet consumed by expect()
        self.log = []               # every text message received, in order (raw str)

    # --- connecting -------------------------------------------------------

    @classmethod
    def connect(cls, base, path="/chat/stream/", cookies=None, origin=True,
                headers=None, timeout=DEFAULT_TIMEOUT):
        """base: "http://127.0.0.1:PORT" or "https://...". origin: True = the base itself,
        None/False = no Origin header, a string = that Origin. Raises
        WSRefused on a non-101 answer."""
        host, port = _split_url(base)
        sock = socket.create_connection((host, port), timeout=timeout)
        ctx = _tls_context(base)
        if ctx:
            try:
                sock = ctx.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        sock.settimeout(timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1",
                 f"Host: {host}:{port}",
                 "Upgrade: websocket",
                 "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13"]
        if origin is True:
            origin = _origin_of(base)
        if origin:
            lines.append(f"Origin: {origin}")
        if cookies:
            lines.append(f"Cookie: {cookie_header(cookies)}")
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            data = b""
            deadline = time.monotonic() + timeout
            while b"\r\n\r\n" not in data:
                if time.monotonic() > deadline or len(data) > 65536:
                    raise TimeoutError("no complete handshake response")
                chunk = sock.recv(4096)
                if not chunk:
                    if not data:
                        raise ConnectionError("connection closed during handshake")
                    break
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            status_line, *hdr_lines = head.decode("iso-8859-1").split("\r\n")
            parts = status_line.split(" ", 2)
            status = int(parts[1])
            hdrs = {}
            for line in hdr_lines:
                if ":" in line:
                    k, v = line.split(":", 1)
                    hdrs[k.strip().lower()] = v.strip()
            if status != 101:
                body = rest
                clen = int(hdrs.get("content-length", "0") or 0)
                try:
                    while len(body) < clen and time.monotonic() < deadline:
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        body += chunk
                except OSError:
                    pass
                sock.close()
                raise WSRefused(status, hdrs, body)
            want = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
            if hdrs.get("sec-websocket-accept") != want:
                sock.close()
                raise ConnectionError(f"bad Sec-WebSocket-Accept {hdrs.get('sec-websocket-accept')!r}")
        except BaseException:
            try:
                sock.close()
            except OSError:
                pass
            raise
        return cls(sock, rest, hdrs)

    # --- sending ----------------------------------------------------------

    @staticmethod
    def build_frame(opcode, payload, fin=True, mask=True, rsv=0, length=None):
        """length overrides the declared payload length (for lying headers)."""
        if isinstance(payload, str):
            payload = payload.encode()
        n = len(payload) if length is None else length
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        mbit = 0x80 if mask else 0
        if n < 126:
            head = struct.pack("!BB", b0, mbit | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            head = struct.pack("!BBQ", b0, mbit | 127, n)
        if mask:
            key = os.urandom(4)
            head += key
            payload = _xor(payload, key)
        return head + payload

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0):
        self.send_raw(self.build_frame(opcode, payload, fin=fin, mask=mask, rsv=rsv))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text)

    def send_binary(self, data):
        self.send_frame(OP_BINARY, data)

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def ping(self, payload=b""):
        self.send_frame(OP_PING, payload)

    def close(self, code=1000, reason=b""):
        """Sends a close frame (does not wait for the answer)."""
        payload = b"" if code is None else struct.pack("!H", code) + reason
        try:
            self.send_frame(OP_CLOSE, payload)
        except OSError:
            pass
        self.sent_close = True

    def send_until_closed(self, data, chunk=16384, timeout=DEFAULT_TIMEOUT):
        """Sends data in chunks, stopping early as soon as the server has
        answered something (e.g. a close frame) or the socket fails.
        Returns the number of bytes sent. For frames the server is expected
        to refuse part-way: blocking on a full send buffer would hide the
        close frame, and a reset could lose it."""
        sent = 0
        deadline = time.monotonic() + timeout
        while sent < len(data) and time.monotonic() < deadline:
            r, w, _ = select.select([self.sock], [self.sock], [], max(0.0, deadline - time.monotonic()))
            if r:
                break
            if not w:
                continue
            try:
                n = self.sock.send(data[sent:sent + chunk])
            except (BlockingIOError, socket.timeout):
                continue
            except OSError:
                break
            sent += n
        return sent

    def abort(self):
        """Drops the TCP connection without a close frame (RST: SO_LINGER 0)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()
        self.closed = True

    def shutdown(self):
        """Closes our socket without any close handshake (a FIN)."""
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    # --- receiving --------------------------------------------------------

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out waiting for a frame")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                raise WSClosed(self.close_code, self.close_reason)
            self.buf += chunk

    def _take(self, n):
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def recv_frame(self, timeout=DEFAULT_TIMEOUT):
        """One raw frame: (fin, opcode, payload). Raises socket.timeout or WSClosed."""
        if self.closed:
            raise WSClosed(self.close_code, self.close_reason)
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        hlen = 2
        if n == 126:
            self._fill(4, deadline)
            n = struct.unpack("!H", bytes(self.buf[2:4]))[0]
            hlen = 4
        elif n == 127:
            self._fill(10, deadline)
            n = struct.unpack("!Q", bytes(self.buf[2:10]))[0]
            hlen = 10
        masked = bool(b1 & 0x80)
        if masked:
            hlen += 4
        self._fill(hlen + n, deadline)
        head = self._take(hlen)
        payload = self._take(n)
        if masked:  # servers must not mask; decode anyway so tests can see it
            payload = _xor(payload, head[-4:])
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv(self, timeout=DEFAULT_TIMEOUT):
        """The next message: (opcode, payload). Reassembles fragments, answers
        pings, records pongs. A close frame gives (OP_CLOSE, payload) once,
        with close_code set; after that WSClosed. A connection dropped
        without a close frame raises WSClosed(None)."""
        deadline = time.monotonic() + timeout
        parts = []
        first_op = None
        while True:
            fin, op, payload = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if op == OP_PING:
                self.pings.append(payload)
                if not self.sent_close:
                    try:
                        self.send_frame(OP_PONG, payload)
                    except OSError:
                        pass
                continue
            if op == OP_PONG:
                self.pongs.append(payload)
                continue
            if op == OP_CLOSE:
                self.got_close_frame = True
                if len(payload) >= 2:
                    self.close_code = struct.unpack("!H", payload[:2])[0]
                    self.close_reason = payload[2:]
                else:
                    self.close_code = 1005
                if not self.sent_close:
                    self.close(self.close_code if self.close_code != 1005 else None)
                self.closed = True
                return OP_CLOSE, payload
            if first_op is None:
                first_op = op
            parts.append(payload)
            if fin:
                return first_op, b"".join(parts)

    def recv_text(self, timeout=DEFAULT_TIMEOUT):
        """The next text message as str (raw, for byte-exact checks)."""
        op, payload = self.recv(timeout)
        if op == OP_CLOSE:
            raise WSClosed(self.close_code, self.close_reason)
        if op != OP_TEXT:
            raise AssertionError(f"expected a text frame, got opcode {op}")
        text = payload.decode("utf-8")
        self.log.append(text)
        return text

    def recv_json(self, timeout=DEFAULT_TIMEOUT):
        """The next JSON message: (obj, raw str). Pending ones come first."""
        if self.pending:
            return self.pending.pop(0)
        raw = self.recv_text(timeout)
        return json.loads(raw), raw

    def expect(self, pred, timeout=DEFAULT_TIMEOUT, what=None):
        """The first message (obj, raw) matching pred(obj); others read on the
        way stay pending for later calls. pred may also be a dict: all its
        items must be equal in the message."""
        if isinstance(pred, dict):
            want = pred
            pred = lambda o: isinstance(o, dict) and all(k in o and o[k] == v for k, v in want.items())  # noqa: E731
            what = what or json.dumps(want)
        for i, (obj, raw) in enumerate(self.pending):
            if pred(obj):
                del self.pending[i]
                return obj, raw
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no message matching {what or pred} within {timeout}s; "
                                   f"got meanwhile: {seen[-8:]}")
            try:
                raw = self.recv_text(left)
            except socket.timeout:
                continue
            obj = json.loads(raw)
            if pred(obj):
                return obj, raw
            self.pending.append((obj, raw))
            seen.append(raw)

    def expect_none(self, pred, timeout=1.0):
        """Asserts that no message matching pred arrives within timeout;
        returns the list of messages seen (kept pending too)."""
        if isinstance(pred, dict):
            want = pred
            pred = lambda o: isinstance(o, dict) and all(k in o and o[k] == v for k, v in want.items())  # noqa: E731
        for obj, raw in self.pending:
            if pred(obj):
                return [(obj, raw)]
        bad = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return bad
            try:
                raw = self.recv_text(left)
            except socket.timeout:
                return bad
            obj = json.loads(raw)
            self.pending.append((obj, raw))
            if pred(obj):
                bad.append((obj, raw))

    def drain(self, quiet=0.3, timeout=DEFAULT_TIMEOUT):
        """Reads until nothing came for `quiet` seconds; returns what was read
        (plus what was pending), and clears pending."""
        out = list(self.pending)
        self.pending.clear()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                raw = self.recv_text(quiet)
            except socket.timeout:
                break
            out.append((json.loads(raw), raw))
        return out

    def wait_close(self, timeout=DEFAULT_TIMEOUT):
        """Reads (discarding data) until the server closes. Returns the close
        code, or None when the TCP connection ended without a close frame.
        Raises socket.timeout if it stays open."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("connection still open")
            try:
                op, _ = self.recv(left)
            except WSClosed as e:
                return e.code if self.got_close_frame else None
            if op == OP_CLOSE:
                return self.close_code

    def is_open(self, timeout=0.3):
        """True when a ping is answered by a pong within timeout."""
        token = os.urandom(8).hex().encode()
        try:
            self.ping(token)
        except OSError:
            return False
        deadline = time.monotonic() + timeout
        while token not in self.pongs:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                fin, op, payload = self.recv_frame(left)
            except (socket.timeout, WSClosed):
                return False
            if op == OP_PONG:
                self.pongs.append(payload)
            elif op == OP_CLOSE:
                self.closed = True
                return False
            elif op == OP_TEXT and fin:
                raw = payload.decode()
                self.log.append(raw)
                self.pending.append((json.loads(raw), raw))
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.sock.close()
        except OSError:
            pass

    def fileno(self):
        return self.sock.fileno()


def _xor(data, key):
    if not data:
        return b""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


# --- HTTP -----------------------------------------------------------------

class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers      # http.client.HTTPMessage (case-insensitive .get, .get_all)
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name)

    def set_cookies(self):
        """[(name, value, {attr-lowercase: value-or-True})] of every Set-Cookie."""
        out = []
        for line in self.headers.get_all("Set-Cookie") or []:
            parts = [p.strip() for p in line.split(";")]
            name, _, value = parts[0].partition("=")
            attrs = {}
            for p in parts[1:]:
                if not p:
                    continue
                k, eq, v = p.partition("=")
                attrs[k.strip().lower()] = v.strip() if eq else True
            out.append((name.strip(), value.strip(), attrs))
        return out

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


def http(base, method, path, headers=None, body=None, cookies=None, timeout=10.0):
    """One request on a fresh connection; never follows redirects.
    body: bytes, str, or a dict (sent as a form)."""
    host, port = _split_url(base)
    hdrs = dict(headers or {})
    if isinstance(body, dict):
        body = urllib.parse.urlencode(body)
        hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
    if isinstance(body, str):
        body = body.encode()
    if cookies:
        hdrs["Cookie"] = cookie_header(cookies)
    ctx = _tls_context(base)
    if ctx:
        conn = httpclient.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = httpclient.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.reason, r.headers, data)
    finally:
        conn.close()


def update_jar(jar, response):
    """Applies a response's Set-Cookie headers to jar (deletions too)."""
    for name, value, attrs in response.set_cookies():
        expired = False
        if "max-age" in attrs:
            try:
                expired = int(attrs["max-age"]) <= 0
            except (TypeError, ValueError):
                pass
        if "expires" in attrs and attrs["expires"] is not True:
            try:
                import email.utils
                t = email.utils.parsedate_to_datetime(attrs["expires"]).timestamp()
                expired = expired or t < time.time()
            except (TypeError, ValueError):
                pass
        if expired or value == "":
            jar.pop(name, None)
        else:
            jar[name] = value
    return jar


class _CsrfFinder(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.csrf = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("name") == "csrf" and self.csrf is None:
            self.csrf = a.get("value") or ""


def find_csrf(html_text):
    p = _CsrfFinder()
    p.feed(html_text)
    return p.csrf


class LoginFailed(Exception):
    def __init__(self, response):
        super().__init__(f"login failed: HTTP {response.status}")
        self.response = response


def login_form(base):
    """GET /login: (cookie jar, csrf token, response)."""
    r = http(base, "GET", "/login")
    jar = update_jar({}, r)
    return jar, find_csrf(r.text), r


def post_login(base, jar, user, password, csrf, next_path="/", origin=True):
    """POST /login with what login_form() gave; returns the response (jar is
    updated in place)."""
    headers = {}
    if origin is True:
        origin = _origin_of(base)
    if origin:
        headers["Origin"] = origin
    form = {"username": user, "password": password}
    if csrf is not None:
        form["csrf"] = csrf
    if next_path is not None:
        form["next"] = next_path
    r = http(base, "POST", "/login", headers=headers, body=form, cookies=jar)
    update_jar(jar, r)
    return r


def login(base, user, password):
    """Logs in like a browser; returns the cookie jar. Raises LoginFailed
    unless the answer is 303 with a cookie."""
    jar, csrf, r = login_form(base)
    if r.status != 200 or csrf is None:
        raise LoginFailed(r)
    r = post_login(base, jar, user, password, csrf)
    if r.status != 303 or not r.set_cookies():
        raise LoginFailed(r)
    return jar
