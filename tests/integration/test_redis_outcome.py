#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Redis stalled (SIGSTOP) under steady sends: a send that reached Redis
but got no answer is OUTCOME_UNKNOWN, never UNAVAILABLE ("nothing was
done"), and retrying it with the same ref stores it once: every message is
in the room exactly once. Redis restarted without its data: the rooms come
back, members are told messages are missing, and the journal says why.
Redis restarted from an older copy: members are told too."""

import os
import signal
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, join, send  # noqa: E402

STALL = 7.0             # longer than the daemon's command timeout (5 s)


def read_answers(ws, answers, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            obj, _ = ws.recv_json(max(0.01, end - time.monotonic()))
        except (socket.timeout, TimeoutError):
            return
        ref = obj.get("ref")
        if ref and ("ok" in obj or "error" in obj):
            answers[ref] = obj


def room_texts(ws, room):
    """Every message text in the room, through history paging."""
    texts, before = [], None
    while True:
        cmd = {"command": "history", "room": room, "limit": 100, "ref": f"h{len(texts)}"}
        if before:
            cmd["before"] = before
        ws.send_json(cmd)
        obj, _ = ws.expect(lambda o: "history" in o, 5 * SLOW)
        texts = [m["message"] for m in obj["history"]] + texts
        if obj.get("complete") or not obj["history"]:
            return texts
        before = obj["history"][0]["id"]


def test_stall(stack, check, d, lobby):
    alice = d.ws("alice")
    join(alice, lobby)
    alice.drain(0.2)
    answers, refs = {}, []
    pid = stack.redis.proc.pid
    stalled_at = None
    start = time.monotonic()
    while time.monotonic() - start < STALL + 4:
        if stalled_at is None and time.monotonic() - start > 1.0:
            os.kill(pid, signal.SIGSTOP)
            stalled_at = time.monotonic()
        if stalled_at and time.monotonic() - stalled_at > STALL and stalled_at > 0:
            os.kill(pid, signal.SIGCONT)
            stalled_at = -1
        ref = f"s{len(refs)}"
        refs.append(ref)
        send(alice, lobby, ref, ref=ref)
        read_answers(alice, answers, 0.05)
    if stalled_at and stalled_at > 0:
        os.kill(pid, signal.SIGCONT)
    read_answers(alice, answers, 3 * SLOW)

    codes = [a.get("error") for a in answers.values() if "error" in a]
    check("OUTCOME_UNKNOWN" in codes, f"sends cut short by the stall answer OUTCOME_UNKNOWN ({codes.count('OUTCOME_UNKNOWN')})")
    check(set(codes) <= {"OUTCOME_UNKNOWN", "UNAVAILABLE"}, f"no other refusal ({sorted(set(codes))})")

    # The client does what docs/protocol.md says: retry with the same ref.
    harness.wait_until(lambda: d.http("GET", "/healthz").status == 200, 15 * SLOW, what="Redis back")
    for _ in range(5):
        todo = [r for r in refs if not answers.get(r, {}).get("ok")]
        if not todo:
            break
        for r in todo:
            send(alice, lobby, r, ref=r)
        read_answers(alice, answers, 2 * SLOW)
    check(all(answers.get(r, {}).get("ok") for r in refs), "every send is acknowledged after retries")
    texts = room_texts(alice, lobby)
    doubled = sorted({t for t in texts if texts.count(t) > 1})
    missing = [r for r in refs if r not in texts]
    check.eq(doubled, [], "no message is in the room twice")
    check.eq(missing, [], "no acknowledged message is missing from the room")
    alice.close()


def test_lost_data(stack, check, d):
    room = stack.create_room("Kept")
    alice = d.ws("alice")
    join(alice, room)
    send(alice, room, "before the loss", ref="b1")
    alice.expect(lambda o: o.get("ok") and o.get("ref") == "b1", 5 * SLOW)
    alice.drain(0.2)

    stack.redis.kill(save=False)
    rdb = stack.dir / "redis.rdb"
    if rdb.exists():
        rdb.unlink()
    stack.redis.start()
    obj, _ = alice.expect(lambda o: o.get("join") == room and o.get("complete") is False, 15 * SLOW,
                          what="a notice that messages are missing")
    check(True, "after Redis lost its data, the member is told messages are missing")
    rooms = [r[0] for r in d.bus.call("ListRooms")[0]]
    check(room in rooms, "the room did not vanish")
    harness.wait_until(lambda: "lost its data" in d.log_text(), 5 * SLOW, what="the journal line")
    check(True, "the journal says Redis lost its data")
    try:
        d.wait_notify("STATUS", timeout=8, pred=lambda v: "lost its data" in v)
        check(True, "STATUS= says Redis lost its data")
    except TimeoutError:
        check(False, "STATUS= says Redis lost its data", d.status())
    send(alice, room, "after the loss", ref="a1")
    obj, _ = alice.expect(lambda o: o.get("ref") == "a1", 5 * SLOW)
    check(obj.get("ok") is True, "sending works again", obj)
    alice.close()


def test_older_copy(stack, check, d):
    room = stack.create_room("Rolled")
    alice = d.ws("alice")
    join(alice, room)
    stack.redis.command("SAVE", timeout=5)
    for i in range(5):
        send(alice, room, f"after the copy {i}", ref=f"c{i}")
        alice.expect(lambda o, i=i: o.get("ok") and o.get("ref") == f"c{i}", 5 * SLOW)
    alice.drain(0.2)
    stack.redis.kill(save=False)
    stack.redis.start()
    alice.expect(lambda o: o.get("join") == room and o.get("complete") is False, 15 * SLOW,
                 what="a notice that messages are missing")
    check(True, "after Redis came back from an older copy, the member is told messages are missing")
    harness.wait_until(lambda: "no longer has the messages" in d.log_text(), 5 * SLOW, what="the journal line")
    check(True, "the journal says so")
    alice.close()


def test(stack, check):
    d = stack.start_daemon(args=["--rate-limit=1000", "--rate-burst=1000"])
    lobby = stack.create_room("Lobby")
    test_stall(stack, check, d, lobby)
    test_older_copy(stack, check, d)
    test_lost_data(stack, check, d)
    check(d.alive, "the daemon kept running")


harness.main(test)
