#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""SIGHUP re-reads the configuration file: systemd hears RELOADING=1 then
READY=1, a changed limit applies to connections already open and to
logins, and a broken file leaves the old configuration in force with the
daemon serving on."""

import os
import signal
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import wsclient  # noqa: E402
from harness import SLOW, expect_message, join, send  # noqa: E402


def reload(d):
    """SIGHUP, then the RELOADING=1 … READY=1 pair systemd 252 expects."""
    before = len(d.notified("READY", "1"))
    d.proc.send_signal(signal.SIGHUP)
    d.wait_notify("RELOADING", "1")
    harness.wait_until(lambda: len(d.notified("READY", "1")) > before, 5 * SLOW, what="READY=1 after reload")


def too_long(ws, room, text):
    send(ws, room, text, ref="long")
    obj, _ = ws.expect(lambda o: o.get("ref") == "long" or o.get("message") == text)
    return obj.get("error") == "MESSAGE_TOO_LONG"


def test(stack, check):
    conf = stack.dir / "multichat.conf"
    conf.write_text("[multichat]\nmax-message-bytes=64\n")
    d = stack.start_daemon(config=conf)
    lobby = stack.create_room("Lobby")
    a = d.ws("alice")
    b = d.ws("bob")
    join(a, lobby)
    join(b, lobby)

    text = "x" * 100
    check(too_long(a, lobby, text), "100 bytes are over max-message-bytes=64")

    conf.write_text("[multichat]\nmax-message-bytes=4096\n")
    reload(d)
    check(True, "SIGHUP: RELOADING=1 then READY=1")
    check(not too_long(a, lobby, text), "after the reload, the open connection may send 100 bytes")
    expect_message(b, lobby, text, "alice")

    # A broken file: the daemon says why, keeps the old settings, serves on.
    conf.write_text("[multichat]\nmax-message-bytes=4096\nno-such-key=1\n")
    reload(d)
    time.sleep(0.2)
    check("unknown key 'no-such-key'" in d.log_text(), "a broken file is reported with its key", d.log_tail(5))
    check(not too_long(a, lobby, text), "... and the old configuration stays in force")
    check(a.is_open() and b.is_open(), "... and the connections stay open")
    jar = d.login("bob")
    check(bool(jar), "... and logins still work")

    # The login limit follows a reload too, both ways (the attempts of this
    # minute stay counted: several from 127.0.0.1 above).
    def login_status():
        jar, csrf, _ = wsclient.login_form(d.base)
        return wsclient.post_login(d.base, jar, "bob", harness.PASSWORDS["bob"], csrf).status

    conf.write_text("[multichat]\nmax-message-bytes=4096\nlogin-attempts=1\n")
    reload(d)
    check.eq(login_status(), 429, "after a reload to login-attempts=1, a further login this minute gets 429")
    conf.write_text("[multichat]\nmax-message-bytes=4096\nlogin-attempts=100\n")
    reload(d)
    check.eq(login_status(), 303, "after a reload to login-attempts=100, it gets through again")
    check(d.alive, "the daemon is still running")


if __name__ == "__main__":
    harness.main(test)
