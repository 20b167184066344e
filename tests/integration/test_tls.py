#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""HTTPS and WSS served by the daemon itself (tls-certificate, tls-key),
with a CA and certificates made by openssl for this test only.

- The page over https, verified against the test CA.
- Login sets the session cookie as `__Host-multichat_session` with
  `Secure`, `Path=/` and no `Domain`.
- A WebSocket over wss sends and receives.
- `openssl s_client`: TLS 1.0 and 1.1 refused, TLS 1.2 and 1.3 accepted;
  RC4, 3DES, DES, EXPORT, NULL, anonymous (aNULL) and MD5 cipher suites
  refused. The daemon runs with an OpenSSL configuration that allows all of
  them (MinProtocol TLSv1, SECLEVEL 0): the limits must be the daemon's own,
  not Debian's /etc/ssl/openssl.cnf, which an administrator may loosen. A
  suite this OpenSSL cannot offer at all is reported, not counted.
- The certificate files replaced and SIGHUP: new connections get the new
  certificate, and an open wss connection keeps working.
"""

import os
import re
import signal
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import testca  # noqa: E402
import wsclient  # noqa: E402
from harness import SLOW, expect_message, join, send  # noqa: E402
from wsclient import WS  # noqa: E402

# Lets a client (and, through OPENSSL_CONF, the daemon) use every protocol
# and suite this OpenSSL has, the legacy provider's included.
PERMISSIVE_OPENSSL_CNF = """\
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
providers = provider_sect
[provider_sect]
default = default_sect
legacy = legacy_sect
[default_sect]
activate = 1
[legacy_sect]
activate = 1
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1
CipherString = ALL:@SECLEVEL=0
"""

WEAK_SUITES = ("RC4", "3DES", "DES", "EXPORT", "eNULL", "aNULL", "MD5")


class SClient:
    """openssl s_client against the daemon with the permissive configuration."""

    def __init__(self, port, ca_pem, cnf):
        self.port = port
        self.ca_pem = ca_pem
        self.env = dict(os.environ, OPENSSL_CONF=str(cnf))

    def run(self, *args):
        """(handshake completed, negotiated protocol, cipher, the client
        could offer what was asked, output)."""
        p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{self.port}",
                            "-CAfile", str(self.ca_pem), *args],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=30, env=self.env)
        out = p.stdout + p.stderr
        m = re.search(r"New, (\S+), Cipher is (\S+)", out)
        done = bool(m) and m.group(2) != "(NONE)"
        offered = not re.search(r"no protocols available|no cipher match|no ciphers available", out)
        p = re.search(r"Protocol\s*:\s*(\S+)", out)
        return done, p.group(1) if done and p else None, m.group(2) if done else None, offered, out

    def subject_cn(self):
        p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{self.port}",
                            "-CAfile", str(self.ca_pem), "-verify_return_error"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        m = re.search(r"^subject=.*CN ?= ?([^,\n/]+)", p.stdout, re.M)
        return m.group(1).strip() if m else None


def check_protocols(check, sc):
    for flag, name, want in (("-tls1", "TLS 1.0", False), ("-tls1_1", "TLS 1.1", False),
                             ("-tls1_2", "TLS 1.2", True), ("-tls1_3", "TLS 1.3", True)):
        args = [flag] if flag == "-tls1_3" else [flag, "-cipher", "ALL:@SECLEVEL=0"]
        done, proto, cipher, offered, out = sc.run(*args)
        check(offered, f"s_client could offer {name}", out[-400:])
        if want:
            check(done, f"{name} is accepted", out[-400:])
            if done:
                check(re.search(r"GCM|CHACHA20|CCM", cipher),
                      f"... with an AEAD suite by default ({cipher})")
        else:
            check(not done, f"{name} is refused", f"negotiated {proto} {cipher}")


def check_weak_suites(check, sc):
    tested = 0
    for suite in WEAK_SUITES:
        done, proto, cipher, offered, out = sc.run("-tls1_2", "-cipher", f"{suite}:@SECLEVEL=0")
        if not offered:
            harness.log(f"# {suite}: this OpenSSL cannot offer such a suite, so neither can the daemon's")
            continue
        tested += 1
        check(not done, f"TLS 1.2 with only {suite} suites offered is refused", f"negotiated {cipher}")
    check(tested >= 3, f"at least three weak suite families were tried ({tested})")


def check_page_and_login(check, d, base):
    r = wsclient.http(base, "GET", "/login")
    check.eq(r.status, 200, "the login page over https")
    jar, csrf, _ = wsclient.login_form(base)
    r = wsclient.post_login(base, jar, "alice", harness.PASSWORDS["alice"], csrf)
    check.eq(r.status, 303, "login over https")
    cookies = {name: attrs for name, _, attrs in r.set_cookies()}
    attrs = cookies.get("__Host-multichat_session")
    check(attrs is not None, "the session cookie is __Host-multichat_session", list(cookies))
    if attrs is not None:
        check(attrs.get("secure") is True, "... with Secure", attrs)
        check(attrs.get("path") == "/", "... with Path=/", attrs)
        check("domain" not in attrs, "... without Domain", attrs)
        check(attrs.get("httponly") is True, "... with HttpOnly", attrs)
    check("multichat_session" not in jar, "no plain-named session cookie over https", list(jar))
    r = wsclient.http(base, "GET", "/api/session", cookies=jar)
    check.eq(r.status, 200, "the session works over https")

    plain = f"http://127.0.0.1:{d.port}"
    try:
        r = wsclient.http(plain, "GET", "/login", timeout=5)
        check(r.status != 200, "plain HTTP on the TLS port serves no page", r.status)
    except (OSError, wsclient.httpclient.HTTPException):
        check(True, "plain HTTP on the TLS port serves no page")
    return jar


def test(stack, check):
    tls_dir = stack.dir / "tls"
    tls_dir.mkdir()
    ca = testca.make_ca(tls_dir)
    testca.trust_only(ca)
    cnf = stack.dir / "openssl-permissive.cnf"
    cnf.write_text(PERMISSIVE_OPENSSL_CNF)

    cert, key = stack.dir / "chat.pem", stack.dir / "chat.key"
    first = testca.make_server_cert(tls_dir, ca, "first")
    os.replace(first[0], cert)
    os.replace(first[1], key)
    conf = stack.dir / "multichat.conf"
    conf.write_text(f"[multichat]\ntls-certificate = {cert}\ntls-key = {key}\n")

    d = stack.start_daemon(config=conf, env={"OPENSSL_CONF": str(cnf)})
    base = f"https://127.0.0.1:{d.port}"
    sc = SClient(d.port, ca[1], cnf)
    lobby = stack.create_room("Lobby")

    jar = check_page_and_login(check, d, base)

    a = WS.connect(base, cookies=jar)
    b = WS.connect(base, cookies=wsclient.login(base, "bob", harness.PASSWORDS["bob"]))
    join(a, lobby)
    join(b, lobby)
    send(a, lobby, "over wss")
    expect_message(b, lobby, "over wss", "alice")
    check(True, "a message sent over wss reaches another wss client")
    try:
        WS.connect(base, cookies=jar, origin=f"http://127.0.0.1:{d.port}")
        check(False, "an http:// Origin is refused on the https listener")
    except wsclient.WSRefused as e:
        check.eq(e.status, 403, "an http:// Origin is refused on the https listener")

    check_protocols(check, sc)
    check_weak_suites(check, sc)

    check.eq(sc.subject_cn(), "first", "the first certificate is served")
    second = testca.make_server_cert(tls_dir, ca, "second")
    os.replace(second[0], cert)
    os.replace(second[1], key)
    before = len(d.notified("READY", "1"))
    d.proc.send_signal(signal.SIGHUP)
    harness.wait_until(lambda: len(d.notified("READY", "1")) > before, 5 * SLOW, what="READY=1 after reload")
    check.eq(sc.subject_cn(), "second", "after the files are replaced and SIGHUP, new connections get the new certificate")
    check(a.is_open(2 * SLOW) and b.is_open(2 * SLOW), "the open wss connections stay open across the reload")
    send(b, lobby, "after reload")
    expect_message(a, lobby, "after reload", "bob")
    check(True, "... and still carry messages")
    c = WS.connect(base, cookies=jar)
    join(c, lobby)
    send(c, lobby, "new connection")
    expect_message(b, lobby, "new connection", "alice")
    check(True, "a new wss connection after the reload carries messages")

    # A broken key on reload: reported, and the certificate in force stays.
    key.write_text("not a key\n")
    before = len(d.notified("READY", "1"))
    d.proc.send_signal(signal.SIGHUP)
    harness.wait_until(lambda: len(d.notified("READY", "1")) > before, 5 * SLOW, what="READY=1 after reload")
    check.eq(sc.subject_cn(), "second", "a reload with an unreadable key keeps the certificate in force")
    check(a.is_open(2 * SLOW), "... and the open connections")
    check(d.alive, "the daemon is still running")


if __name__ == "__main__":
    harness.main(test)
