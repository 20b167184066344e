#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A login storm on freshly started daemons: every right password gets a
session, every wrong one 401, nothing 503 (finding 7 of tests/bench/README.md:
right passwords answered 401 now and then by a daemon started a second
before).

The causes were in the test tools, and the auth helper now stays clear of
both (daemon/auth/multichat-auth.c):
- pam_wrapper 1.1.4 copies each process's PAM service files into one of 62
  machine-wide /tmp/pam.? directories, chosen check-then-create. Processes
  that start at the same moment (parallel tests, several daemons, anybody's
  on this machine) can end up in the same one; the other's start truncates
  and rewrites the files, its exit deletes them, and libpam then reads no
  service file (only "other": pam_deny, 401) or none at all (503). The
  helper now reads the service from $MULTICHAT_PAM_CONFDIR with
  pam_start_confdir() and never looks at pam_wrapper's copy.
- nss_wrapper 1.1.12 answers getpwnam_r() from concurrent threads with a
  spurious ENOENT, or crashes, while it loads its files; the helper turned a
  user gone missing after PAM into "wrong password". Its lookups now take
  turns, and such a failure is helper trouble (503), not a refusal.

The tests no longer preload pam_wrapper at all (tests/lib/pamenv.py): the
helper reads the test's service directory itself. A helper that still went
through /etc/pam.d or pam_wrapper's copy would answer every right password
here 401.
"""

import http.client
import os
import subprocess
import sys
import threading
import urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import pamenv  # noqa: E402
from harness import SLOW  # noqa: E402
from wsclient import login_form  # noqa: E402

DAEMONS = 3
RIGHT, WRONG = 20, 8            # per daemon; below the helper's --max-concurrent=32
USERS = [pamenv.User(f"u{i:05d}", 10000 + i, "pw") for i in range(RIGHT + WRONG)] + \
        [pamenv.User("root", 0, os.urandom(12).hex(), home="/root")]


def post_login(base, source, jar, user, password, csrf):
    """POST /login from the given local address; (status, set-cookie names)."""
    host, port = base[len("http://"):].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=20 * SLOW, source_address=(source, 0))
    try:
        body = urllib.parse.urlencode({"username": user, "password": password, "csrf": csrf, "next": "/"})
        conn.request("POST", "/login", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": base,
            "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())})
        r = conn.getresponse()
        r.read()
        cookies = [h.split("=", 1)[0].strip() for k, h in r.getheaders() if k.lower() == "set-cookie"]
        return r.status, cookies
    finally:
        conn.close()


def storm(daemons):
    """RIGHT right and WRONG wrong logins per daemon, all at the same moment,
    each from its own 127.0.x.y address. Returns [(daemon, user, right, status, cookies)]."""
    forms = [login_form(d.base) for d in daemons]
    jobs = []
    for k, d in enumerate(daemons):
        jar, csrf, r = forms[k]
        if r.status != 200 or csrf is None:
            raise AssertionError(f"GET /login on {d.name}: {r.status}")
        for i in range(RIGHT + WRONG):
            jobs.append((d, jar, csrf, USERS[i].name, i < RIGHT))
    results = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def run(n):
        d, jar, csrf, user, right = jobs[n]
        source = f"127.0.{1 + n // 250}.{1 + n % 250}"
        barrier.wait()
        try:
            status, cookies = post_login(d.base, source, jar, user, "pw" if right else "not-pw", csrf)
        except OSError as e:
            status, cookies = repr(e), []
        results[n] = (d, user, right, status, cookies)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60 * SLOW)
    return [r for r in results if r is not None]


def test(stack, check):
    env = {"MULTICHAT_PAM_CONFDIR": stack.base_env.get("MULTICHAT_PAM_CONFDIR") or stack.pam.service_dir}

    # Started together, as a bench stack or parallel tests start them.
    stack.redis.start()
    buses = [stack.bus] + [stack.new_bus() for _ in range(DAEMONS - 1)]

    def kw(i):
        return dict(name=f"d{i + 1}", bus=buses[i], env=env, args=["--login-attempts=10000"])

    daemons = [stack.start_daemon(wait=False, **kw(i)) for i in range(DAEMONS)]
    for i, d in enumerate(daemons):
        try:
            d.wait_ready(10.0)
        except harness.DaemonDied:
            # The port picked a moment ago was taken by a parallel test:
            # start_daemon() retries that only when it waits itself.
            if "in use" not in d.log_text():
                raise
            d.cleanup()
            stack.daemons.remove(d)
            daemons[i] = stack.start_daemon(**dict(kw(i), name=f"d{i + 1}b"))

    results = storm(daemons)
    check.eq(len(results), DAEMONS * (RIGHT + WRONG), "every login got an answer")

    for d in daemons:
        mine = [r for r in results if r[0] is d]
        refused = [(u, s) for _, u, right, s, _ in mine if right and s != 303]
        accepted = [(u, s) for _, u, right, s, _ in mine if not right and s != 401]
        no_session = [u for _, u, right, s, c in mine if right and s == 303 and "multichat_session" not in c]
        what = f" on {d.name}"
        check(not refused, f"all {RIGHT} right passwords get 303{what}", refused)
        check(not no_session, f"... each with a session cookie{what}", no_session)
        check(not accepted, f"all {WRONG} wrong passwords get 401{what}", accepted)
        text = d.log_text()
        check("Could not check the password" not in text, f"no helper trouble{what}",
              [l for l in text.splitlines() if "Could not check" in l][:3])
        check(d.alive, f"{d.name} is still running")

    # An account PAM accepts but the user database does not know: trouble
    # on our side (503, logged), never "wrong password".
    with open(stack.pam.passdb, "a") as f:
        f.write("ghost:ghost-pw:multichat\n")
    jar, csrf, _ = login_form(daemons[1].base)
    status, _ = post_login(daemons[1].base, "127.0.0.1", jar, "ghost", "ghost-pw", csrf)
    check.eq(status, 503, "a user PAM accepts but NSS cannot find gets 503")
    check("PAM accepted ghost, but looking the user up failed" in daemons[1].log_text(),
          "... and the helper says why in the log")

    # Set but unusable, the variable stops the helper instead of letting it
    # fall back to the system's PAM configuration.
    for bad in ("relative/pam.d", str(stack.dir / "missing")):
        env = dict(stack.base_env, MULTICHAT_PAM_CONFDIR=bad)
        r = subprocess.run([str(harness.AUTH_HELPER)], env=env, capture_output=True, text=True, timeout=10 * SLOW)
        check(r.returncode != 0 and "MULTICHAT_PAM_CONFDIR" in r.stderr,
              f"MULTICHAT_PAM_CONFDIR={bad} is refused", (r.returncode, r.stderr[-300:]))


harness.main(test, stack_args={"pam_users": USERS})
