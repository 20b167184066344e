#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""HTTP side: login right/wrong/unknown/root/CSRF, redirects, session API,
security headers, 404s, /healthz."""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import check_security_headers, has_inline_script, location_path  # noqa: E402
from wsclient import find_csrf, login_form, post_login  # noqa: E402

GENERIC = "Invalid username or password"


def test(stack, check):
    # Generous login limit: this file makes many attempts from one address.
    d = stack.start_daemon(args=["--login-attempts=1000"])
    base = d.base

    # --- not logged in ---------------------------------------------------
    r = d.http("GET", "/")
    check.eq(r.status, 303, "GET / without a session is 303")
    path, same = location_path(r)
    check(same and path.endswith("/login?next=/"), "... to /login?next=/", r.headers.get("Location"))
    check_security_headers(check, r, "303 from GET /")

    r = d.http("GET", "/login")
    check.eq(r.status, 200, "GET /login is 200")
    check("text/html" in (r.headers.get("Content-Type") or ""), "GET /login is HTML", r.headers.get("Content-Type"))
    check_security_headers(check, r, "GET /login")
    check(find_csrf(r.text), "the login form has a hidden csrf input", r.text[:500])
    check('name="username"' in r.text and 'name="password"' in r.text, "the login form has username and password")
    check(not has_inline_script(r.text), "the login page has no inline script")

    r = d.http("GET", "/api/session")
    check.within(r.status, (401, 403), "GET /api/session without a session is refused")
    r = d.http("GET", "/api/rooms")
    check.within(r.status, (401, 403), "GET /api/rooms without a session is refused")

    # --- failures: all 401 with the same generic message -----------------
    bodies = {}
    for user, pw, what in [("alice", "wrong-pw", "wrong password"),
                           ("nosuchuser", "whatever", "unknown user"),
                           ("root", "root-pw", "root (uid below --min-uid) with its right password"),
                           ("alice", "", "empty password"),
                           ("", "alice-pw", "empty username")]:
        jar, csrf, _ = login_form(base)
        r = post_login(base, jar, user, pw, csrf)
        check.eq(r.status, 401, f"login with {what} is 401")
        check(GENERIC in r.text, "... with the generic message", r.text[:300])
        check(find_csrf(r.text) is not None, "... and the form again")
        if what == "wrong password":
            check_security_headers(check, r, "401")
        bodies[what] = r.text.replace(find_csrf(r.text) or "\0", "")
        r2 = d.http("GET", "/", cookies=jar)
        check.eq(r2.status, 303, f"... and no session ({what})")
    check(bodies["wrong password"].replace("alice", "U") == bodies["unknown user"].replace("nosuchuser", "U"),
          "the wrong-password and unknown-user pages are the same (but for the name and token)")
    low = bodies["unknown user"].lower()
    check("no such user" not in low and "unknown user" not in low and "does not exist" not in low,
          "the unknown-user answer does not say the user is unknown")

    # --- CSRF ------------------------------------------------------------
    jar, csrf, _ = login_form(base)
    r = post_login(base, jar, "alice", "alice-pw", None)
    check.within(r.status, (400, 403), "login without csrf (right password) is refused")
    check(d.http("GET", "/", cookies=jar).status == 303, "... and gives no session")
    jar, csrf, _ = login_form(base)
    bad = ("A" if csrf[:1] != "A" else "B") + csrf[1:]
    r = post_login(base, jar, "alice", "alice-pw", bad)
    check.within(r.status, (400, 403), "login with a wrong csrf is refused")
    check(d.http("GET", "/", cookies=jar).status == 303, "... and gives no session")

    # --- success ---------------------------------------------------------
    jar, csrf, _ = login_form(base)
    before = set(jar)
    r = post_login(base, jar, "alice", "alice-pw", csrf)
    check.eq(r.status, 303, "login with the right password is 303")
    path, same = location_path(r)
    check(same and path == "/", "... to next=/", r.headers.get("Location"))
    check_security_headers(check, r, "303 after login")
    cookies = r.set_cookies()
    good = [c for c in cookies if c[2].get("httponly") and str(c[2].get("samesite", "")).lower() == "strict"
            and c[2].get("path") == "/"]
    check(good, "the session cookie is HttpOnly; SameSite=Strict; Path=/", cookies)
    check(any(name not in before or jar.get(name) for name, _, _ in cookies), "a cookie was set")

    r = d.http("GET", "/", cookies=jar)
    check.eq(r.status, 200, "GET / with the session is 200")
    check("text/html" in (r.headers.get("Content-Type") or ""), "GET / is HTML")
    check_security_headers(check, r, "GET /")
    check(not has_inline_script(r.text), "the chat page has no inline script")

    r = d.http("GET", "/api/session", cookies=jar)
    check.eq(r.status, 200, "GET /api/session is 200")
    try:
        j = r.json()
    except ValueError:
        j = {}
    check.eq(j.get("username"), "alice", "/api/session username")
    check.eq(j.get("staff"), True, "/api/session staff is true for alice (multichat-staff)")
    check_security_headers(check, r, "GET /api/session")

    rb = stack.create_room("B room")
    ra = stack.create_room("A room")
    r = d.http("GET", "/api/rooms", cookies=jar)
    check.eq(r.status, 200, "GET /api/rooms is 200")
    try:
        rooms = r.json().get("rooms")
    except (ValueError, AttributeError):
        rooms = None
    check(isinstance(rooms, list), "/api/rooms has a rooms list", r.body[:300])
    rooms = rooms or []
    titles = [x.get("title") for x in rooms if x.get("id") in (ra, rb)]
    check.eq(titles, ["A room", "B room"], "/api/rooms is ordered by title")
    check(all(isinstance(x.get("id"), str) and isinstance(x.get("staff_only"), bool) for x in rooms),
          "/api/rooms entries: id string, staff_only bool", rooms)

    bjar = d.login("bob")
    r = d.http("GET", "/api/session", cookies=bjar)
    j = r.json() if r.status == 200 else {}
    check.eq((j.get("username"), j.get("staff")), ("bob", False), "/api/session for bob: staff false")

    # --- next= stays on this site ----------------------------------------
    for nxt, want in [("/api/rooms", "/api/rooms"), ("https://evil.example/x", None),
                      ("//evil.example/x", None), ("/\\evil.example", None)]:
        j2, csrf, _ = login_form(base)
        r = post_login(base, j2, "bob", "bob-pw", csrf, next_path=nxt)
        path, same = location_path(r)
        loc = r.headers.get("Location") or ""
        if want:
            check(r.status == 303 and same and path == want, f"login with next={nxt} goes there", loc)
        else:
            check(r.status == 303 and same and not loc.startswith("//") and "evil" not in loc,
                  f"login with next={nxt} stays on this site", loc)

    # --- other paths -----------------------------------------------------
    r = d.http("GET", "/no/such/path")
    check.eq(r.status, 404, "unknown path is 404")
    check_security_headers(check, r, "404")
    r = d.http("GET", "/no/such/path", cookies=jar)
    check.eq(r.status, 404, "unknown path with a session is 404")
    for p in ("/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
              "/static/..%2f..%2f..%2fetc%2fpasswd", "/static/", "/static"):
        r = d.http("GET", p)
        check(r.status in (400, 403, 404) and b"root:" not in r.body, f"GET {p} is refused, not served",
              f"HTTP {r.status}")
    r = d.http("GET", "/chat/other/", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                                "Sec-WebSocket-Version": "13"}, cookies=jar)
    check.eq(r.status, 404, "a WebSocket upgrade on an unknown path is 404 (not 500)")
    r = d.http("DELETE", "/login")
    check(400 <= r.status < 500, "DELETE /login is a 4xx", r.status)
    r = d.http("POST", "/login", body=b"x" * (256 * 1024),
               headers={"Content-Type": "application/x-www-form-urlencoded"})
    check(400 <= r.status < 500, "a 256 KiB login form is refused with a 4xx", r.status)

    r = d.http("GET", "/healthz")
    check.eq(r.status, 200, "/healthz is 200 with Redis up")
    check("ok" in r.text.lower(), "/healthz says ok", r.text[:100])
    check_security_headers(check, r, "/healthz")

    check(d.alive, "the daemon is still running")


harness.main(test)
