#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""multichatd behind Debian's nginx, configured with the nginx example of
docs/operations.md itself: the test reads that block from the file and
changes only the listen ports (loopback, ephemeral; the [::] lines go),
the certificate paths (a test CA's) and the daemon's address. A wrong or
incomplete example fails here.

Through nginx over https: the login page with the daemon's security
headers, a login whose cookies nginx marks Secure, /healthz, the WebSocket
(wss) carrying a message between two users, the Origin check (the public
https origin accepted through allowed-origin; a foreign one and the plain
http one refused, and without allowed-origin the page's own refused too);
plain http redirected to https; nginx's own limit on /login answering 429.
The daemon's allowed-origin is set as the documentation says, to the
public origin (here https://127.0.0.1:PORT)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import testca  # noqa: E402
import wsclient  # noqa: E402
from harness import expect_message, join, send  # noqa: E402
from wsclient import WS, WSRefused  # noqa: E402

DOC = harness.SRC / "docs" / "operations.md"
DOC_FIRST_LINE = "# /etc/nginx/sites-available/multichat"
NGINX = "/usr/sbin/nginx"


def documented_site():
    """The ```nginx block of docs/operations.md that starts with DOC_FIRST_LINE."""
    blocks = re.findall(r"^```nginx\n(.*?)^```", DOC.read_text(), re.M | re.S)
    for b in blocks:
        if b.startswith(DOC_FIRST_LINE + "\n"):
            return b
    raise AssertionError(f"{DOC}: no ```nginx block starting with {DOC_FIRST_LINE!r}")


def substitute(text, pattern, repl, count, what):
    """re.subn on lines, insisting on exactly count matches: if the example
    changes shape, this test must be looked at, not silently pass."""
    out, n = re.subn(pattern, repl, text, flags=re.M)
    if n != count:
        raise AssertionError(f"docs/operations.md nginx example: expected {count} {what}, found {n}")
    return out


def site_for_test(site, http_port, https_port, cert, key, daemon_port):
    s = substitute(site, r"^(\s*)listen 80;$", rf"\1listen 127.0.0.1:{http_port};", 1, "'listen 80;'")
    s = substitute(s, r"^(\s*)listen 443 ssl;$", rf"\1listen 127.0.0.1:{https_port} ssl;", 1, "'listen 443 ssl;'")
    s = substitute(s, r"^\s*listen \[::\]:(80|443 ssl);\n", "", 2, "'listen [::]:…' lines")
    s = substitute(s, r"^(\s*)ssl_certificate\s+\S+;$", rf"\1ssl_certificate {cert};", 1, "ssl_certificate")
    s = substitute(s, r"^(\s*)ssl_certificate_key\s+\S+;$", rf"\1ssl_certificate_key {key};", 1,
                   "ssl_certificate_key")
    return substitute(s, r"http://127\.0\.0\.1:8080;$", f"http://127.0.0.1:{daemon_port};", 3,
                      "proxy_pass lines to 127.0.0.1:8080")


class Nginx:
    """nginx in the foreground, one process, everything under dir."""

    def __init__(self, dir, site):
        self.dir = dir
        self.conf = dir / "nginx.conf"
        self.errlog = dir / "nginx-error.log"
        tmp = dir / "nginx-tmp"
        tmp.mkdir()
        (dir / "multichat-site.conf").write_text(site)
        temp_paths = "\n".join(f"    {k}_temp_path {tmp / k};"
                               for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.conf.write_text(f"""\
daemon off;
master_process off;
pid {dir / "nginx.pid"};
error_log {self.errlog} info;
events {{
    worker_connections 256;
}}
http {{
    access_log {dir / "nginx-access.log"};
{temp_paths}
    include {dir / "multichat-site.conf"};
}}
""")
        self.proc = None

    def argv(self, *extra):
        return [NGINX, "-p", str(self.dir), "-c", str(self.conf), "-e", str(self.errlog), *extra]

    def start(self, port):
        p = subprocess.run(self.argv("-t"), capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise AssertionError(f"nginx -t refused the documented configuration:\n{p.stderr}")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        harness.wait_until(lambda: self._listening(port), 10, what="nginx listening")

    def _listening(self, port):
        if self.proc.poll() is not None:
            raise AssertionError(f"nginx exited with {self.proc.returncode}:\n{self.errlog.read_text()}")
        try:
            wsclient.socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def check_login(check, base):
    r = wsclient.http(base, "GET", "/login")
    check.eq(r.status, 200, "the login page through nginx")
    harness.check_security_headers(check, r, "the login page through nginx")
    hsts = r.header("Strict-Transport-Security") or ""
    check("max-age=" in hsts, "nginx adds Strict-Transport-Security", hsts)
    check(all(a.get("secure") is True for _, _, a in r.set_cookies()) and r.set_cookies(),
          "the CSRF cookie is Secure through nginx", r.headers.get_all("Set-Cookie"))

    jar, csrf, _ = wsclient.login_form(base)
    r = wsclient.post_login(base, jar, "alice", harness.PASSWORDS["alice"], csrf)
    check.eq(r.status, 303, "login through nginx")
    cookies = {name: attrs for name, _, attrs in r.set_cookies()}
    attrs = cookies.get("multichat_session")
    check(attrs is not None, "the session cookie comes through nginx", list(cookies))
    if attrs is not None:
        check(attrs.get("secure") is True, "... marked Secure by nginx", attrs)
        check(attrs.get("httponly") is True, "... HttpOnly", attrs)
        check(str(attrs.get("samesite", "")).lower() == "strict", "... SameSite=Strict", attrs)
    r = wsclient.http(base, "GET", "/api/session", cookies=jar)
    check(r.status == 200 and r.json().get("username") == "alice", "the session works through nginx", r)
    r = wsclient.http(base, "GET", "/healthz")
    check(r.status == 200 and r.text == "ok\n", "/healthz through nginx", r)
    return jar


def check_origins(check, base, jar, https_port):
    for origin, what in ((f"https://127.0.0.1:{https_port}", None),
                         ("https://evil.example", "a foreign Origin"),
                         (f"http://127.0.0.1:{https_port}", "the plain http Origin of the same host"),
                         (None, "no Origin")):
        try:
            ws = WS.connect(base, cookies=jar, origin=origin or False)
        except WSRefused as e:
            if what:
                check.eq(e.status, 403, f"{what} is refused through nginx")
            else:
                check(False, "the public https origin (allowed-origin) opens the WebSocket through nginx",
                      e.status)
            continue
        ws.shutdown()
        check(what is None, f"{what or 'the public https origin (allowed-origin)'} "
              f"{'is refused' if what else 'opens the WebSocket'} through nginx")


def check_chat(check, stack, base, jar):
    lobby = stack.create_room("Lobby")
    a = WS.connect(base, cookies=jar)
    b = WS.connect(base, cookies=wsclient.login(base, "bob", harness.PASSWORDS["bob"]))
    join(a, lobby)
    join(b, lobby)
    send(a, lobby, "through nginx")
    expect_message(b, lobby, "through nginx", "alice")
    expect_message(a, lobby, "through nginx", "alice")
    check(True, "a message goes from one wss client to another through nginx")
    send(b, lobby, "and back")
    expect_message(a, lobby, "and back", "bob")
    check(a.is_open(2 * harness.SLOW), "the WebSocket answers pings through nginx")
    a.close(1000)
    check.eq(a.wait_close(5), 1000, "a client close goes through nginx and back")
    b.close(1000)


def check_login_limit(check, base):
    statuses = []
    for _ in range(40):
        statuses.append(wsclient.http(base, "GET", "/login").status)
        if statuses[-1] == 429:
            break
    check(429 in statuses, "nginx limits /login per address (429)", statuses)
    r = wsclient.http(base, "GET", "/healthz")
    check.eq(r.status, 200, "... and only /login")


def check_without_allowed_origin(check, d, conf, base, jar):
    """What docs/operations.md says allowed-origin is for: without it, the
    daemon behind a TLS proxy refuses the page's own WebSocket."""
    before = len(d.notified("READY", "1"))
    conf.write_text("[multichat]\n")
    d.proc.send_signal(signal.SIGHUP)
    harness.wait_until(lambda: len(d.notified("READY", "1")) > before, 5 * harness.SLOW,
                       what="READY=1 after reload")
    try:
        WS.connect(base, cookies=jar).shutdown()
        check(False, "without allowed-origin the WebSocket through a TLS proxy is refused")
    except WSRefused as e:
        check.eq(e.status, 403, "without allowed-origin the WebSocket through a TLS proxy is refused")


def test(stack, check):
    if not os.access(NGINX, os.X_OK):
        raise harness.Skip("nginx is not installed (apt install nginx)")
    tls_dir = stack.dir / "tls"
    tls_dir.mkdir()
    ca = testca.make_ca(tls_dir)
    testca.trust_only(ca)
    cert, key = testca.make_server_cert(tls_dir, ca, "proxy")

    https_port, http_port = harness._free_port(), harness._free_port()
    public = f"https://127.0.0.1:{https_port}"
    conf = stack.dir / "multichat.conf"
    conf.write_text(f"[multichat]\nallowed-origin = {public}\n")
    d = stack.start_daemon(config=conf)

    site = site_for_test(documented_site(), http_port, https_port, cert, key, d.port)
    nginx = Nginx(Path(stack.dir), site)
    try:
        nginx.start(https_port)
        r = wsclient.http(f"http://127.0.0.1:{http_port}", "GET", "/login?next=/")
        check(r.status == 301 and (r.header("Location") or "").startswith("https://"),
              "plain http is redirected to https", (r.status, r.header("Location")))
        jar = check_login(check, public)
        check_origins(check, public, jar, https_port)
        check_chat(check, stack, public, jar)
        check_login_limit(check, public)
        check_without_allowed_origin(check, d, conf, public, jar)
        time.sleep(0.2)
        errors = [line for line in nginx.errlog.read_text().splitlines() if "[emerg]" in line or "[crit]" in line]
        check(not errors, "nginx logged no critical errors", errors[:5])
    finally:
        nginx.stop()


if __name__ == "__main__":
    harness.main(test)
