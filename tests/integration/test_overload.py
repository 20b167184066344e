#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Overload is not silent: while a daemon relays messages later than
overload-lag (here it was stopped while another daemon's user talked), its
users' new messages and typing notices are refused with RATE_LIMITED
(and their ref), nothing already sent is lost, and once caught up it
accepts again. On-time traffic is never refused."""

import os
import signal
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, expect_message, is_error, join, send  # noqa: E402


def reply_to(ws, ref, timeout=5.0):
    obj, _ = ws.expect(lambda o: o.get("ref") == ref, timeout * SLOW, what=f"the answer to {ref}")
    return obj


def test(stack, check):
    d1 = stack.start_daemon(name="d1", args=["--overload-lag=200ms"])
    d2 = stack.start_daemon(name="d2", own_bus=True)
    lobby = d1.create_room("Lobby")
    alice = d1.ws("alice")
    bob = d2.ws("bob")
    join(alice, lobby)
    join(bob, lobby)

    # on time: accepted
    for i in range(20):
        send(alice, lobby, f"on time {i}", ref=f"t{i}")
    answers = [reply_to(alice, f"t{i}") for i in range(20)]
    check(all("error" not in a for a in answers), "messages relayed on time are accepted",
          [a for a in answers if "error" in a][:2])
    expect_message(bob, lobby, "on time 19", "alice")

    # d1 stops reading for 1.5 s while bob (on d2) talks: when it wakes, it
    # relays those messages 1.5 s late.
    d1.proc.send_signal(signal.SIGSTOP)
    try:
        for i in range(5):
            send(bob, lobby, f"while away {i}")
        for i in range(5):
            expect_message(bob, lobby, f"while away {i}", "bob")
        time.sleep(1.5)
    finally:
        d1.proc.send_signal(signal.SIGCONT)
    for i in range(5):
        expect_message(alice, lobby, f"while away {i}", "bob")
    check(True, "after the pause alice (d1) gets every message bob sent meanwhile")

    send(alice, lobby, "too late", ref="late")
    obj = reply_to(alice, "late")
    check.eq(obj.get("error"), "RATE_LIMITED", "a message sent while d1 is behind is refused with RATE_LIMITED")
    alice.send_json({"command": "typing", "room": lobby, "ref": "typing-late"})
    obj = reply_to(alice, "typing-late")
    check.eq(obj.get("error"), "RATE_LIMITED", "so is a typing notice")
    bad = bob.expect_none(lambda o: o.get("message") == "too late", 0.5)
    check(not bad, "the refused message reaches nobody", bad)

    # Nothing late arrives any more: within about a second d1 accepts again.
    def accepted():
        send(alice, lobby, "caught up", ref="again")
        return "error" not in reply_to(alice, "again")
    try:
        harness.wait_until(accepted, 5 * SLOW, interval=0.3, what="d1 accepting again")
        check(True, "once caught up, d1 accepts messages again")
        expect_message(bob, lobby, "caught up", "alice")
    except TimeoutError as e:
        check(False, "once caught up, d1 accepts messages again", str(e))
    log = d1.log_text()
    check("refusing new ones" in log and "accepting new ones again" in log,
          "d1 logs the start and the end of the overload")
    check(bob.is_open() and alice.is_open(), "no connection was closed")
    check(d1.alive and d2.alive, "both daemons still run")


harness.main(test)
