#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Too many login attempts: 429 with Retry-After, and no session even with
the right password while limited."""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from wsclient import login_form, post_login  # noqa: E402


def test(stack, check):
    d = stack.start_daemon(args=["--login-attempts=3"])
    statuses = []
    limited = None
    for i in range(8):
        jar, csrf, r = login_form(d.base)
        if csrf is None:
            break
        r = post_login(d.base, jar, "alice", f"wrong-{i}", csrf)
        statuses.append(r.status)
        if r.status == 429:
            limited = r
            break
    check(statuses[:3] == [401, 401, 401], "the first 3 wrong attempts are 401", statuses)
    check(limited is not None, "a later attempt is 429", statuses)
    if limited is not None:
        ra = limited.headers.get("Retry-After") or ""
        check(ra.strip().isdigit() and 0 < int(ra) <= 3600, "429 carries Retry-After (seconds)", ra)
        harness.check_security_headers(check, limited, "429")
        jar, csrf, _ = login_form(d.base)
        r = post_login(d.base, jar, "alice", "alice-pw", csrf)
        check.eq(r.status, 429, "while limited, even the right password is 429")
        check(d.http("GET", "/", cookies=jar).status == 303, "... and gives no session")
    # Another user from the same address is limited too (per address), or
    # not (per username only): both are allowed; what matters is no 5xx.
    jar, csrf, _ = login_form(d.base)
    r = post_login(d.base, jar, "bob", "bob-pw", csrf)
    check(r.status in (303, 429), "another user's login is 303 or 429", r.status)
    check(d.alive, "the daemon is still running")


harness.main(test)
