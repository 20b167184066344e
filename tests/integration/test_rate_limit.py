#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Per-connection command rate: a burst of 50 sends with --rate-limit=5
--rate-burst=5 gets RATE_LIMITED errors (with ref), a bounded number goes
through, and the connection is usable again afterwards."""

import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, expect_message, join, send  # noqa: E402


def test(stack, check):
    d = stack.start_daemon(args=["--rate-limit=5", "--rate-burst=5"])
    lobby = stack.create_room("Lobby")
    a = d.ws("alice")
    b = d.ws("bob")
    join(a, lobby)
    join(b, lobby)
    time.sleep(1.2)     # refill alice's bucket after the join

    t0 = time.monotonic()
    for i in range(50):
        send(a, lobby, f"flood {i}", ref=f"f{i}")
    sent_in = time.monotonic() - t0

    limited, refs = 0, set()
    deadline = time.monotonic() + 3 * SLOW
    while time.monotonic() < deadline:
        try:
            obj, raw = a.recv_json(0.5)
        except Exception:  # noqa: BLE001 (quiet for 0.5 s: done)
            break
        if obj.get("error") == "RATE_LIMITED":
            limited += 1
            refs.add(obj.get("ref"))
    delivered = [o for o, _ in b.drain(0.5) if o.get("msg_type") == 0 and str(o.get("message", "")).startswith("flood")]
    allowed = 5 + int(5 * (sent_in + 0.5)) + 1
    check(limited >= 50 - allowed, f"most of the 50 sends are RATE_LIMITED ({limited})", limited)
    check(1 <= len(delivered) <= allowed, f"a bounded number went through ({len(delivered)}, at most {allowed})",
          len(delivered))
    check.eq(limited + len(delivered), 50, "every send was either relayed or refused")
    check(None not in refs and all(r.startswith("f") for r in refs), "RATE_LIMITED errors echo ref", refs)
    got = [int(o["message"].split()[1]) for o in delivered]
    check(got == sorted(got), "what went through kept its order", got)

    time.sleep(1.5)
    check(a.is_open(), "the connection is still open")
    send(a, lobby, "after the flood")
    try:
        expect_message(b, lobby, "after the flood", "alice")
        check(True, "after a pause, alice can send again")
    except (TimeoutError, harness.WSClosed) as e:
        check(False, "after a pause, alice can send again", repr(e))

    # bob was not limited by alice's flood
    send(b, lobby, "bob unaffected")
    expect_message(a, lobby, "bob unaffected", "bob")
    check(True, "the limit is per connection: bob's send goes through")
    check(d.alive, "the daemon is still running")


harness.main(test)
