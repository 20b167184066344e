#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A burst of messages of every frame-length class (7-bit, 16-bit and
64-bit WebSocket lengths) reaches a reader complete, in order and byte for
byte, also when many are queued for it and go out in batched writes; the
writer's own copies come back marked own."""

import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import join, send  # noqa: E402
from wsclient import OP_TEXT  # noqa: E402

# 400 messages are ~10 MB each way; under the sanitizers on a loaded
# machine that alone took longer than the test's time limit. 120 still
# cycle every size class 15 times and queue far more than a batch.
COUNT = 120 if harness.ASAN else 400
SIZES = (1, 100, 125, 126, 1000, 65535, 65536, 70000)


def body(i):
    size = SIZES[i % len(SIZES)]
    head = f"#{i:04d} "
    return head + "é" * ((size - len(head)) // 2) if i % 3 == 0 else head + "x" * (size - len(head))


def read_messages(ws, room, n, check, who):
    got = []
    while len(got) < n:
        op, payload = ws.recv(10 * harness.SLOW)
        if op != OP_TEXT:
            check(False, f"{who}: only text frames", op)
            return got
        obj = json.loads(payload)
        if obj.get("room") == room and obj.get("msg_type") == 0:
            got.append(obj)
    return got


def test(stack, check):
    # bob answers no ping while he does not read: on a loaded machine under
    # the sanitizers alice's part alone has taken over a minute, past
    # keep-alive's default 2 x 30 s.
    d = stack.start_daemon(args=["--rate-limit=10000", "--rate-burst=100000",
                                 "--max-message-bytes=100000", "--keepalive=10min"])
    lobby = stack.create_room("Lobby")
    a = d.ws("alice")
    b = d.ws("bob")
    join(a, lobby)
    join(b, lobby)

    # bob does not read while alice sends: his queue fills up.
    for i in range(COUNT):
        send(a, lobby, body(i))

    mine = read_messages(a, lobby, COUNT, check, "alice")
    theirs = read_messages(b, lobby, COUNT, check, "bob")
    check.eq(len(theirs), COUNT, "bob got every message")
    check.eq([m["message"] for m in theirs], [body(i) for i in range(COUNT)],
             "... in order, byte for byte")
    ids = [m["id"] for m in theirs]
    check(len(set(ids)) == COUNT, "... with distinct ids")
    check(all(m.get("own") is True for m in mine) and len(mine) == COUNT, "alice's copies are all own")
    check(not any("own" in m for m in theirs), "bob's are not")
    check(a.is_open() and b.is_open(), "both connections stay open")


if __name__ == "__main__":
    harness.main(test)
