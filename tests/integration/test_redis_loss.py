#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Redis killed mid-session: send answers UNAVAILABLE, /healthz is 503,
RedisConnected false; Redis restarted: sends work again and reach the
other user, /healthz 200."""

import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, expect_message, join, send  # noqa: E402


def test(stack, check):
    d = stack.start_daemon()
    lobby = stack.create_room("Lobby")
    a = d.ws("alice")
    b = d.ws("bob")
    join(a, lobby)
    join(b, lobby)
    send(a, lobby, "before")
    expect_message(b, lobby, "before", "alice")
    check.eq(d.http("GET", "/healthz").status, 200, "/healthz 200 with Redis up")
    check.eq(d.bus.get_property("RedisConnected"), True, "RedisConnected is true")

    # The snapshot lets the restarted Redis come back with the rooms, as a
    # production Redis with persistence would.
    stack.redis.kill(save=True)
    t_kill = time.monotonic()

    got = None
    n = 0
    deadline = time.monotonic() + 5 * SLOW
    while time.monotonic() < deadline and got is None:
        n += 1
        send(a, lobby, f"during {n}", ref=f"d{n}")
        try:
            obj, _ = a.expect(lambda o: o.get("error") == "UNAVAILABLE", 0.5)
            got = obj
        except TimeoutError:
            pass
    check(got is not None, "with Redis gone, send answers UNAVAILABLE",
          f"{n} sends in {time.monotonic() - t_kill:.1f}s")
    if got is not None:
        check(str(got.get("ref", "")).startswith("d"), "... echoing ref", got)

    try:
        harness.wait_until(lambda: d.http("GET", "/healthz").status == 503, 5 * SLOW, what="/healthz 503")
        check(True, "/healthz is 503 while Redis is down")
    except TimeoutError as e:
        check(False, "/healthz is 503 while Redis is down", str(e))
    try:
        rc = d.bus.get_property("RedisConnected")
    except harness.BusError as e:
        rc = repr(e)
    check.eq(rc, False, "RedisConnected is false while Redis is down")
    check(a.is_open(), "alice's WebSocket stays open during the outage")
    check(b.is_open(), "bob's WebSocket stays open during the outage")
    check(d.alive, "the daemon keeps running without Redis")

    time.sleep(1.0)
    stack.redis.start()
    t_up = time.monotonic()
    ok = False
    n = 0
    b.drain(0.1)
    while time.monotonic() - t_up < 8 * SLOW and not ok:
        n += 1
        text = f"after {n}"
        send(a, lobby, text)
        try:
            expect_message(b, lobby, text, "alice", timeout=0.7 / SLOW)
            ok = True
        except TimeoutError:
            pass
    check(ok, f"after the restart, alice's message reaches bob ({time.monotonic() - t_up:.1f}s after restart)")
    try:
        harness.wait_until(lambda: d.http("GET", "/healthz").status == 200, 5 * SLOW, what="/healthz 200")
        check(True, "/healthz is 200 again")
    except TimeoutError as e:
        check(False, "/healthz is 200 again", str(e))
    check.eq(d.bus.get_property("RedisConnected"), True, "RedisConnected is true again")

    # and both directions work, also for a connection made after the outage
    send(b, lobby, "bob after")
    expect_message(a, lobby, "bob after", "bob")
    c = d.ws("bob")
    obj, _ = join(c, lobby)
    check.eq(obj.get("join"), lobby, "a new connection can join after the outage")
    check(d.alive, "the daemon is still running")


harness.main(test)
