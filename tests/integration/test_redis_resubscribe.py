#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The daemon's subscriber connection is dropped (CLIENT KILL TYPE pubsub, as
Redis does to a subscriber past client-output-buffer-limit): members get
every message published meanwhile from the room's stream, in order, exactly
once, also more than one page (1000) of them and while more keep coming;
when Redis trimmed some of them away, members are told with a join event
carrying "complete": false, and get the rest."""

import os
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, expect_message, join, send  # noqa: E402

# What another daemon's send does (daemon/store/store.c script_send), n times.
PUBLISH = """
local room, user, n, keep, prefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
for i = 1, n do
  local text = prefix .. i
  local id = redis.call('XADD', 'mc:{r' .. room .. '}:log', 'MAXLEN', '~', keep, '*', 'u', user, 'm', text)
  redis.call('SPUBLISH', 'mc:{r' .. room .. '}:ch', cjson.encode({'m', id, user, text}))
end
return n
"""

HISTORY_SIZE = 5000


def publish(stack, room, n, prefix, keep=HISTORY_SIZE):
    return stack.redis.command("EVAL", PUBLISH, 0, room, "carol", n, keep, prefix, timeout=10)


def collect(ws, room, prefix, want, timeout):
    """carol's messages with this prefix, in arrival order, until `want`
    arrived and nothing more came for a moment; and every other event of
    the room (gap notices)."""
    got, other = [], []
    collect.order = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            obj, _ = ws.recv_json(0.5 if len(got) >= want else deadline - time.monotonic())
        except (TimeoutError, OSError):
            if len(got) >= want:
                break
            continue
        if obj.get("msg_type") == 0 and obj.get("room") == room and str(obj.get("message", "")).startswith(prefix):
            got.append(obj)
            collect.order.append("message")
        elif obj.get("room") == room or obj.get("join") == room:
            other.append(obj)
            collect.order.append("join" if "join" in obj else "other")
    return got, other


def check_sequence(check, got, prefix, numbers, what):
    texts = [o.get("message") for o in got]
    want = [f"{prefix}{i}" for i in numbers]
    if texts == want:
        check(True, what)
        return
    missing = sorted(set(want) - set(texts), key=lambda t: int(t[len(prefix):]))
    dup = len(texts) - len(set(texts))
    order = all(int(a[len(prefix):]) < int(b[len(prefix):]) for a, b in zip(texts, texts[1:])
                if a.startswith(prefix) and b.startswith(prefix))
    check(False, what, f"{len(texts)} of {len(want)}, {len(missing)} missing (first {missing[:3]}), "
          f"{dup} twice, in order: {order}")


def kill_subscriber(stack):
    return stack.redis.command("CLIENT", "KILL", "TYPE", "pubsub")


def reconnects(d):
    return d.log_text().count("Connected to Redis.")


def test(stack, check):
    d = stack.start_daemon(args=[f"--history-size={HISTORY_SIZE}"])
    lobby = stack.create_room("Lobby")
    a = d.ws("alice")
    b = d.ws("bob")
    join(a, lobby)
    join(b, lobby)
    send(a, lobby, "before")
    expect_message(b, lobby, "before", "alice")
    expect_message(a, lobby, "before", "alice")

    # 1. A gap of 2,500 messages (three pages of the replay): the daemon
    # is stopped so that all of them go out while it has no subscriber.
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        check.eq(kill_subscriber(stack), 1, "Redis drops the daemon's subscriber connection")
        publish(stack, lobby, 2500, "gap ")
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    for who, ws in (("bob", b), ("alice", a)):
        got, other = collect(ws, lobby, "gap ", 2500, 30 * SLOW)
        check_sequence(check, got, "gap ", range(1, 2501),
                       f"{who} gets all 2,500 messages published while the subscriber was away, in order, once")
        check(all(isinstance(o.get("id"), str) for o in got), f"... with their ids ({who})")
        check.eq([o for o in other if "join" in o], [], f"... and no gap notice ({who})")
    check.eq(reconnects(d), 2, "the daemon reconnected once")

    # Live traffic goes on after the replay, through the daemon too.
    send(a, lobby, "after")
    expect_message(b, lobby, "after", "alice")

    # 2. Subscriber dropped three times while another daemon keeps sending:
    # what the replay reads and what arrives live overlap; each message
    # must still come once, in order.
    stop = threading.Event()
    sent = [0]

    def publisher():
        while not stop.is_set() and sent[0] < 3000:
            publish(stack, lobby, 20, "live ")
            sent[0] += 20
            time.sleep(0.01)

    # Each batch numbers from 1 again: tell them apart by arrival.
    t = threading.Thread(target=publisher)
    t.start()
    try:
        for _ in range(3):
            time.sleep(0.3)
            kill_subscriber(stack)
    finally:
        time.sleep(0.3)
        stop.set()
        t.join()
    n = sent[0]
    for who, ws in (("bob", b), ("alice", a)):
        got, other = collect(ws, lobby, "live ", n, 30 * SLOW)
        texts = [o.get("message") for o in got]
        ids = [o.get("id") for o in got]
        batches = [list(range(1, 21))] * (n // 20)
        check_sequence(check, got, "live ", [i for batch in batches for i in batch],
                       f"{who} gets all {n} messages sent while the subscriber was dropped three times, "
                       "in order, once")
        check.eq(len(set(ids)), len(texts), f"... no id twice ({who})")
        check.eq([o for o in other if "join" in o], [], f"... and no gap notice ({who})")
    check(reconnects(d) >= 4, "the daemon reconnected after each drop", reconnects(d))

    # 3. More published in the gap than the stream keeps (another daemon
    # with history-size 100 trimmed it): members are told, then get what
    # is left, once, in order.
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        kill_subscriber(stack)
        publish(stack, lobby, 1500, "trim ", keep=100)
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    kept = stack.redis.command("XLEN", f"mc:{{r{lobby}}}:log")
    check(100 <= kept < 1500, "the stream was trimmed", kept)
    for who, ws in (("bob", b), ("alice", a)):
        got, other = collect(ws, lobby, "trim ", 100, 30 * SLOW)
        # What is kept of the room's stream ends with the newest "trim " ones.
        check_sequence(check, got, "trim ", range(1501 - len(got), 1501) if got else [0],
                       f"{who} gets the newest messages the stream kept, in order, once")
        check.eq(len(got), min(kept, 1500), f"... all {kept} of them ({who})")
        gaps = [o for o in other if o.get("join") == lobby]
        check(len(gaps) == 1, f"{who} is told once that messages were missed", other[:3])
        if gaps:
            g = gaps[0]
            check(g.get("complete") is False and g.get("history") == [] and g.get("title") == "Lobby",
                  '... by a join event with "complete": false and an empty history', g)
            check(collect.order.index("join") == 0, "... before the messages that are left", collect.order[:3])

    send(a, lobby, "still here")
    expect_message(b, lobby, "still here", "alice")
    check(d.alive, "the daemon is still running")
    log = d.log_text()
    check("no answer within the timeout" not in log, "no reconnect for a late answer", log[-2000:])


harness.main(test)
