#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Join, send and receive between alice and bob, with the version-1 wire
format checked byte for byte (Python json.dumps spacing) and the
extensions (id, ts, own, members, rooms list) checked by type."""

import json
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import expect_message, is_msg, join, leave, send  # noqa: E402


def id_key(i):
    a, _, b = i.partition("-")
    return int(a), int(b or 0)


def check_message(check, obj, raw, room, user, text, own, what):
    v1 = json.dumps({"msg_type": 0, "room": room, "username": user, "message": text})
    check(raw.startswith(v1[:-1]), f"{what}: v1 bytes {v1[:-1]}...", raw)
    check(raw.startswith('{"msg_type": 0, "room": '), f"{what}: begins exactly with {{\"msg_type\": 0, \"room\": ")
    check(isinstance(obj.get("id"), str) and obj["id"], f"{what}: id is a string", obj.get("id"))
    ts = obj.get("ts")
    check(isinstance(ts, int) and not isinstance(ts, bool) and abs(ts - time.time() * 1000) < 120000,
          f"{what}: ts is milliseconds since the epoch", ts)
    if own:
        check(obj.get("own") is True, f"{what}: own: true for the writer's connection", raw)
    else:
        check("own" not in obj, f"{what}: no own key for someone else", raw)


def test(stack, check):
    d = stack.start_daemon()
    lobby = stack.create_room("Lobby")
    other = stack.create_room("Other")
    check(isinstance(lobby, str) and lobby.isdigit(), "CreateRoom returns a decimal id", lobby)

    ajar = d.login("alice")
    a = d.ws(jar=ajar)
    b = d.ws("bob")

    obj, raw = a.expect(lambda o: "rooms" in o, what="rooms list")
    entry = [r for r in obj["rooms"] if r.get("id") == lobby]
    check(entry and entry[0].get("title") == "Lobby" and entry[0].get("staff_only") is False,
          "the rooms list pushed on connect has Lobby", raw)
    check(raw.startswith('{"rooms": [{"id": '), "rooms list in json.dumps form", raw[:80])
    titles = [r.get("title") for r in obj["rooms"]]
    check(titles == sorted(titles), "the rooms list is ordered by title", titles)

    # --- join ------------------------------------------------------------
    obj, raw = join(a, lobby)
    want = '{"join": %s, "title": "Lobby"' % json.dumps(lobby)
    check(raw.startswith(want), f"join reply begins with {want}", raw)
    check(isinstance(obj.get("join"), str), "join id is a string", obj)
    if "staff_only" in obj:
        check(obj["staff_only"] is False, "join: staff_only false", obj)
    if "members" in obj:
        check(isinstance(obj["members"], list) and "alice" in obj["members"], "join: members has alice", obj)
    if "history" in obj:
        check(isinstance(obj["history"], list), "join: history is a list", obj)

    obj, raw = join(b, int(lobby))
    check.eq(obj.get("join"), lobby, "join with a JSON number id: the reply carries the id as a string")
    if "members" in obj:
        check(sorted(set(obj["members"])) == ["alice", "bob"], "bob's join: members alice and bob", obj)

    obj, raw = a.expect(is_msg(lobby, username="bob", msg_type=4), what="enter notice")
    check.eq(raw, json.dumps({"msg_type": 4, "room": lobby, "username": "bob"}),
             "alice gets the exact v1 enter notice for bob")
    check(not b.expect_none(is_msg(lobby, username="bob", msg_type=4), 0.5),
          "bob gets no enter notice for himself")

    # --- send ------------------------------------------------------------
    send(a, lobby, "hi")
    oa, ra = expect_message(a, lobby, "hi", "alice")
    ob, rb = expect_message(b, lobby, "hi", "alice")
    check_message(check, oa, ra, lobby, "alice", "hi", True, "alice's copy")
    check_message(check, ob, rb, lobby, "alice", "hi", False, "bob's copy")
    check.eq(oa.get("id"), ob.get("id"), "both copies carry the same id")

    # alice's second connection: own true there too, not for bob
    a2 = d.ws(jar=ajar)
    join(a2, lobby)
    send(b, lobby, "hello from bob")
    o1, r1 = expect_message(a, lobby, "hello from bob", "bob")
    o2, r2 = expect_message(a2, lobby, "hello from bob", "bob")
    o3, r3 = expect_message(b, lobby, "hello from bob", "bob")
    check("own" not in o1 and "own" not in o2, "bob's message has no own for alice's connections", (r1, r2))
    check(o3.get("own") is True, "bob's message has own: true on bob's connection", r3)
    send(a2, lobby, "from a2")
    o1, r1 = expect_message(a, lobby, "from a2", "alice")
    o2, r2 = expect_message(a2, lobby, "from a2", "alice")
    o3, r3 = expect_message(b, lobby, "from a2", "alice")
    check(o1.get("own") is True and o2.get("own") is True, "own: true on every connection of the writer",
          (r1, r2))
    check("own" not in o3, "no own for bob", r3)

    # --- escaping: non-ASCII as \uXXXX (surrogate pairs above U+FFFF) ----
    text = 'h\u00e9llo \u2603 \U0001F600 <b>&"\'\\ end'
    send(a, lobby, text)
    ob, rb = expect_message(b, lobby, text, "alice")
    v1 = json.dumps({"msg_type": 0, "room": lobby, "username": "alice", "message": text})
    check(rb.startswith(v1[:-1]), "non-ASCII and quotes escaped like json.dumps", rb)
    check(rb.isascii(), "the frame is pure ASCII", rb)

    # --- ids increase ----------------------------------------------------
    ids = []
    for i in range(3):
        send(a, lobby, f"n{i}")
        o, _ = expect_message(b, lobby, f"n{i}", "alice")
        ids.append(o.get("id", ""))
    try:
        check(all(id_key(x) < id_key(y) for x, y in zip(ids, ids[1:])), "message ids increase", ids)
    except ValueError:
        check(ids == sorted(ids) and len(set(ids)) == len(ids), "message ids increase", ids)

    # --- rooms are separate ----------------------------------------------
    join(a, other)
    send(a, other, "only in other")
    expect_message(a, other, "only in other", "alice")
    check(not b.expect_none(lambda o: o.get("message") == "only in other", 0.7),
          "bob (not in Other) does not get its messages")

    # --- leave -----------------------------------------------------------
    obj, raw = leave(a, other)
    check.eq(raw, json.dumps({"leave": other}), "leave reply is exactly {\"leave\": id}")
    send(b, lobby, "after alice left other")
    expect_message(a, lobby, "after alice left other", "bob")
    check(a.is_open(), "alice's connection is still open")
    check(b.is_open(), "bob's connection is still open")
    check(d.alive, "the daemon is still running")


harness.main(test)
