#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A daemon SIGKILLed under load and started again, while another daemon
keeps taking messages: its member reconnects with her session, joins with
"since" set to the last message she got, and has every acknowledged
message exactly once and in order (or is told with "complete": false).
Counted by message id."""

import os
import signal
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, join  # noqa: E402
from steady import Sender, id_key  # noqa: E402

RATE = 100


def collect(ws, room, ids, notices, until):
    """bob's messages as alice gets them, until until() or the socket dies."""
    while not until():
        try:
            obj, _ = ws.recv_json(0.2)
        except (socket.timeout, TimeoutError):
            continue
        except (OSError, harness.WSClosed, ValueError):
            return
        for m in obj.get("history", []) if obj.get("join") == room else []:
            if m.get("username") == "bob":
                ids.append(m["id"])
        if obj.get("join") == room and obj.get("complete") is False:
            notices.append(obj)
        if obj.get("msg_type") == 0 and obj.get("room") == room and obj.get("username") == "bob":
            ids.append(obj["id"])


def test(stack, check):
    # Every send must be accepted, but on a machine loaded by other work
    # relaying lags and overload refuses some (RATE_LIMITED, test_overload).
    d2 = stack.start_daemon(name="d2", args=["--rate-limit=1000", "--rate-burst=1000",
                                             "--overload-lag=1h"])
    d1 = stack.start_daemon(name="d1", own_bus=True)
    lobby = stack.create_room("Lobby")
    jar = d1.login("alice")
    alice = d1.ws(jar=jar)
    bob = d2.ws("bob")
    join(alice, lobby)
    join(bob, lobby)
    alice.drain(0.2)
    bob.drain(0.2)

    sender = Sender(bob, lobby, RATE)
    sender.start()
    ids, notices = [], []
    t_kill = time.monotonic() + 2.0
    collect(alice, lobby, ids, notices, lambda: time.monotonic() >= t_kill)
    d1.stop(sig=signal.SIGKILL)
    check(len(ids) > 0, f"alice got messages before the kill ({len(ids)})")

    bus = d1.bus
    d1b = stack.start_daemon(name="d1b", bus=bus)
    last = max(ids, key=id_key)
    alice = d1b.ws(jar=jar)
    alice.expect(lambda o: "rooms" in o, 5 * SLOW, what="the room list")
    alice.send_json({"command": "join", "room": lobby, "since": last, "ref": "rejoin"})
    t_end = time.monotonic() + 2.0
    collect(alice, lobby, ids, notices, lambda: time.monotonic() >= t_end)
    sender.stop.set()
    sender.join(15 * SLOW)
    acked = set(sender.acked.values())
    t_end = time.monotonic() + 10 * SLOW
    collect(alice, lobby, ids, notices, lambda: acked <= set(ids) or time.monotonic() >= t_end)

    check.eq(sender.errors, [], "bob's sends were all accepted")
    check.eq(len(ids) - len(set(ids)), 0, "alice got no message twice")
    check(ids == sorted(ids, key=id_key), "alice got them in order")
    missing = sorted(acked - set(ids), key=id_key)
    check.eq(missing, [], f"every acknowledged message reached alice ({len(acked)} acknowledged, "
                          f"{len(notices)} gap notices)")


harness.main(test)
