#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""sd_notify: READY=1 once Redis and the bus are up, STATUS= mentions the
connections, WATCHDOG=1 when WATCHDOG_USEC is set, MAINPID not wrong."""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import join  # noqa: E402


def test(stack, check):
    d = stack.start_daemon(watchdog_usec=1_000_000)
    check(d.notified("READY", "1"), "READY=1 arrives")
    ready = d.notified("READY", "1")[0]
    if "MAINPID" in ready:
        check.eq(ready["MAINPID"], str(d.proc.pid), "MAINPID is the daemon's pid")
    check(d.status() is not None, "a STATUS= is sent", d.notifications)

    try:
        d.wait_notify("WATCHDOG", "1", timeout=3)
        check(True, "WATCHDOG=1 is sent when WATCHDOG_USEC is set")
    except TimeoutError as e:
        check(False, "WATCHDOG=1 is sent when WATCHDOG_USEC is set", str(e))

    lobby = stack.create_room("Lobby")
    a = d.ws("alice")
    b = d.ws("bob")
    join(a, lobby)
    try:
        m = d.wait_notify("STATUS", timeout=8, pred=lambda s: "connection" in s.lower() and "2" in s)
        check(True, f"STATUS mentions the 2 connections: {m['STATUS']!r}")
    except TimeoutError:
        check(False, "STATUS mentions the 2 connections", d.status())

    # Redis down: not required to show in STATUS, but worth seeing in the log
    before = d.status()
    stack.redis.kill()
    try:
        m = d.wait_notify("STATUS", timeout=4, pred=lambda s: s != before)
        harness.log(f"# STATUS with Redis down: {m['STATUS']!r}")
    except TimeoutError:
        harness.log(f"# STATUS did not change with Redis down: {d.status()!r}")
    stack.redis.start()

    a.shutdown()
    b.shutdown()
    rc = d.stop()
    check.eq(rc, 0, "exit status 0")
    check(d.notified("STOPPING", "1"), "STOPPING=1 on SIGTERM")


harness.main(test)
