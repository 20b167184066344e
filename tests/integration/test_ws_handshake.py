#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The WebSocket handshake: refused (403) without a session, with a bogus
cookie, with a foreign Origin; 404 on another path; accepted otherwise."""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from wsclient import WS, WSRefused  # noqa: E402


def refused(check, what, status_ok=(403,), **kw):
    try:
        ws = WS.connect(kw.pop("base"), **kw)
    except WSRefused as e:
        check(e.status in status_ok, f"{what}: refused with {'/'.join(map(str, status_ok))}", e.status)
        return e
    except (ConnectionError, OSError) as e:
        check(False, f"{what}: refused with an HTTP status", repr(e))
        return None
    check(False, f"{what}: refused", "the upgrade was accepted")
    ws.shutdown()
    return None


def test(stack, check):
    d = stack.start_daemon()
    base = d.base
    jar = d.login("alice")

    refused(check, "no cookie", base=base)
    # A well-formed id needs Redis to tell; lws 4.1 cannot hold a handshake
    # for that, so the refusal comes right after it (docs/protocol.md).
    try:
        ws = WS.connect(base, cookies={k: "A" * len(v) for k, v in jar.items()})
        obj, _ = ws.recv_json()
        check.eq(obj, {"error": "USER_HAS_TO_LOGIN"}, "a made-up session cookie: USER_HAS_TO_LOGIN")
        check.eq(ws.wait_close(), 4001, "... then close 4001")
    except WSRefused as e:
        check(e.status == 403, "a made-up session cookie: refused with 403", e.status)
    e = refused(check, "a foreign Origin", base=base, cookies=jar, origin="http://evil.example")
    if e is not None:
        check(not any(k.startswith("sec-websocket-accept") for k in e.headers), "... without an accept header")
    refused(check, "Origin of another port", base=base, cookies=jar, origin="http://127.0.0.1:1")
    refused(check, "Origin https:// of the same host", base=base, cookies=jar,
            origin=f"https://127.0.0.1:{d.port}")
    refused(check, "Origin null", base=base, cookies=jar, origin="null")
    refused(check, "an unknown WebSocket path", status_ok=(404,), base=base, cookies=jar, path="/chat/other/")

    try:
        ws = WS.connect(base, cookies=jar)
        check(True, "with the session and the page's own Origin: 101")
        obj, raw = ws.expect(lambda o: "rooms" in o, what="rooms list")
        check(isinstance(obj["rooms"], list), "the room list is pushed on connect", raw)
        ws.close(1000)
        code = ws.wait_close(5)
        check.eq(code, 1000, "a client close 1000 is answered with close 1000")
    except WSRefused as e:
        check(False, "with the session and the page's own Origin: 101", f"HTTP {e.status}: {e.body[:200]!r}")

    check(d.alive, "the daemon is still running")


harness.main(test)
