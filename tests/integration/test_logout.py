#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Logout: POST /logout with the CSRF token from /api/session → 303 to
/login; that session's WebSockets close with 4001; the cookie no longer
works; other sessions are untouched; no CSRF → no logout."""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, expect_message, join, location_path, send  # noqa: E402
from wsclient import WS, WSRefused, update_jar  # noqa: E402


def test(stack, check):
    d = stack.start_daemon()
    lobby = stack.create_room("Lobby")
    jar = d.login("alice")
    other_jar = d.login("alice")      # a second session of the same user
    bob = d.ws("bob")
    join(bob, lobby)

    w1 = WS.connect(d.base, cookies=jar)
    w2 = WS.connect(d.base, cookies=jar)
    w3 = WS.connect(d.base, cookies=other_jar)
    for w in (w1, w2, w3):
        join(w, lobby)

    r = d.http("GET", "/api/session", cookies=jar)
    check.eq(r.status, 200, "GET /api/session is 200")
    csrf = r.json().get("csrf") if r.status == 200 else None
    check(isinstance(csrf, str) and csrf, "/api/session carries a csrf token", r.body[:200])

    origin = {"Origin": d.base}
    r = d.http("POST", "/logout", body={}, cookies=jar, headers=origin)
    check.within(r.status, (400, 403), "POST /logout without csrf is refused")
    r = d.http("POST", "/logout", body={"csrf": "x" * len(csrf or "x")}, cookies=jar, headers=origin)
    check.within(r.status, (400, 403), "POST /logout with a wrong csrf is refused")
    check(w1.is_open(), "... and the session's WebSocket stays open")
    check.eq(d.http("GET", "/", cookies=jar).status, 200, "... and the session still works")

    r = d.http("POST", "/logout", body={"csrf": csrf}, cookies=jar, headers=origin)
    check.eq(r.status, 303, "POST /logout with the csrf token is 303")
    path, same = location_path(r)
    check(same and path.startswith("/login"), "... to /login", r.headers.get("Location"))
    harness.check_security_headers(check, r, "303 from /logout")
    expired = [c for c in r.set_cookies()
               if c[2].get("max-age") == "0" or c[1] == "" or "1970" in str(c[2].get("expires", ""))]
    check(expired, "the session cookie is expired", r.set_cookies())

    for w, what in ((w1, "first"), (w2, "second")):
        try:
            code = w.wait_close(5 * SLOW)
            check.eq(code, 4001, f"the session's {what} WebSocket is closed with 4001")
        except Exception as e:  # noqa: BLE001
            check(False, f"the session's {what} WebSocket is closed with 4001", repr(e))

    # the old cookie (as a client that ignores the expiry would keep it) is dead
    old = dict(jar)
    update_jar(jar, r)
    check.eq(d.http("GET", "/", cookies=old).status, 303, "the old session cookie gives 303 on GET /")
    check.within(d.http("GET", "/api/session", cookies=old).status, (401, 403), "... and no /api/session")
    # Refused at the handshake, or (when only Redis can tell, see
    # docs/protocol.md) right after it with USER_HAS_TO_LOGIN and 4001.
    try:
        w = WS.connect(d.base, cookies=old)
        obj, _ = w.recv_json()
        check.eq(obj, {"error": "USER_HAS_TO_LOGIN"}, "a WebSocket with the old cookie gets USER_HAS_TO_LOGIN")
        check.eq(w.wait_close(), 4001, "... and is closed with 4001")
    except WSRefused as e:
        check.eq(e.status, 403, "a WebSocket with the old cookie is refused with 403")

    # other sessions are untouched
    check(w3.is_open(), "alice's other session keeps its WebSocket")
    send(w3, lobby, "still here")
    expect_message(bob, lobby, "still here", "alice")
    check(True, "... and can still send")
    check.eq(d.http("GET", "/", cookies=other_jar).status, 200, "alice's other session still works")

    # logging out twice, or without a session
    r = d.http("POST", "/logout", body={"csrf": csrf}, cookies=old, headers=origin)
    check(r.status in (303, 400, 401, 403), "a second logout with the dead session is harmless", r.status)
    check(d.alive, "the daemon is still running")


harness.main(test)
