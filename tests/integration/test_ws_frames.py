#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""WebSocket framing: ping/pong, fragmented messages, binary frames,
invalid UTF-8 (1007), oversized messages (1009), protocol violations
(1002), and the daemon surviving all of them."""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, expect_message, join  # noqa: E402
from wsclient import OP_BINARY, OP_CONT, OP_PING, OP_TEXT, WS  # noqa: E402

LIMIT = 64
BIG = 4 * 1024 * 1024   # far above any reassembly limit (PROTOCOL_COMMAND_MAX is 1 MiB)


def test(stack, check):
    d = stack.start_daemon(args=[f"--max-message-bytes={LIMIT}", "--rate-limit=1000", "--rate-burst=1000"])
    lobby = stack.create_room("Lobby")
    jar = d.login("alice")
    watcher = d.ws("bob")
    join(watcher, lobby)

    def fresh():
        ws = WS.connect(d.base, cookies=jar)
        join(ws, lobby)
        return ws

    def closed_with(ws, codes, what, timeout=5.0):
        try:
            code = ws.wait_close(timeout * SLOW)
        except Exception as e:  # noqa: BLE001 (timeout: still open)
            check(False, what, f"still open ({e!r})")
            return None
        check(code in codes, what, f"close code {code} (None: no close frame)")
        return code

    a = fresh()

    # ping → pong with the same payload
    a.ping(b"hello-ping")
    check(a.is_open(2.0) and b"hello-ping" in a.pongs, "ping is answered by a pong with the same payload",
          a.pongs)

    # a message in three fragments, with a ping between them
    msg = '{"command": "send", "room": "%s", "message": "fragmented hello"}' % lobby
    p1, p2, p3 = msg[:10], msg[10:30], msg[30:]
    a.send_frame(OP_TEXT, p1, fin=False)
    a.send_frame(OP_CONT, p2, fin=False)
    a.send_frame(OP_PING, b"mid")
    a.send_frame(OP_CONT, p3, fin=True)
    try:
        expect_message(watcher, lobby, "fragmented hello", "alice")
        check(True, "a message sent in 3 fragments (a ping between) is reassembled")
    except TimeoutError as e:
        check(False, "a message sent in 3 fragments (a ping between) is reassembled", str(e))
    check(a.is_open(2.0) and b"mid" in a.pongs, "the ping between fragments is answered", a.pongs)

    # a UTF-8 character split across two fragments is fine
    msg = '{"command": "send", "room": "%s", "message": "split \u00e9 char"}' % lobby
    raw = msg.encode()
    cut = raw.index("\u00e9".encode()) + 1
    a.send_frame(OP_TEXT, raw[:cut], fin=False)
    a.send_frame(OP_CONT, raw[cut:], fin=True)
    try:
        expect_message(watcher, lobby, "split \u00e9 char", "alice")
        check(True, "a UTF-8 character split across fragments is accepted")
    except TimeoutError as e:
        check(False, "a UTF-8 character split across fragments is accepted", str(e))

    # binary frame: BAD_REQUEST with the connection open, or close 1003
    a.send_frame(OP_BINARY, b'{"command": "join", "room": "1"}')
    try:
        obj, _ = a.expect(lambda o: "error" in o, 3 * SLOW, what="error for a binary frame")
        check.eq(obj.get("error"), "BAD_REQUEST", "a binary frame → BAD_REQUEST (connection stays open)")
        check(a.is_open(2.0), "... and the connection is still open")
    except harness.WSClosed:
        check.eq(a.close_code, 1003, "a binary frame → close 1003")
        a = fresh()
    except TimeoutError as e:
        check(False, "a binary frame → BAD_REQUEST or close 1003", str(e))

    # invalid UTF-8 in a text frame → 1007
    a.send_frame(OP_TEXT, b'{"command": "send", "room": "%s", "message": "bad \xff\xfe"}' % lobby.encode())
    closed_with(a, (1007,), "invalid UTF-8 in a text frame → close 1007")
    check(not watcher.expect_none(lambda o: "bad" in str(o.get("message", "")), 0.3),
          "... and nothing of it was relayed")

    # UTF-8 truncated at the end of the message (valid so far) → 1007
    a = fresh()
    a.send_frame(OP_TEXT, b'{"command": "send", "room": "%s", "message": "x"}\xc3' % lobby.encode())
    closed_with(a, (1007,), "a message ending in half a UTF-8 character → close 1007")

    # an overlong encoding and a surrogate: invalid UTF-8 as well
    a = fresh()
    a.send_frame(OP_TEXT, b'{"command": "send", "room": "%s", "message": "\xc0\xaf"}' % lobby.encode())
    closed_with(a, (1007,), "an overlong UTF-8 encoding → close 1007")
    a = fresh()
    a.send_frame(OP_TEXT, b'{"command": "send", "room": "%s", "message": "\xed\xa0\x80"}' % lobby.encode())
    closed_with(a, (1007,), "a UTF-8 encoded surrogate → close 1007")

    # one frame far over the reassembly limit → 1009
    a = fresh()
    head = b'{"command": "send", "room": "%s", "message": "' % lobby.encode()
    payload = head + b"x" * (BIG - len(head) - 2) + b'"}'
    a.send_until_closed(WS.build_frame(OP_TEXT, payload))
    closed_with(a, (1009,), f"a {BIG // 1024 // 1024} MiB frame → close 1009")

    # the same in 64 KiB fragments → 1009
    a = fresh()
    step = 65536
    frames = b""
    for i in range(0, len(payload), step):
        last = i + step >= len(payload)
        frames += WS.build_frame(OP_TEXT if i == 0 else OP_CONT, payload[i:i + step], fin=last)
    a.send_until_closed(frames)
    closed_with(a, (1009,), f"a {BIG // 1024 // 1024} MiB message in 64 KiB fragments → close 1009")

    # protocol violations → 1002 (or the connection dropped)
    a = fresh()
    a.send_frame(OP_CONT, b"orphan", fin=True)
    closed_with(a, (1002, None), "a continuation frame without a start → close 1002")

    a = fresh()
    a.send_frame(OP_TEXT, b"{", fin=False)
    a.send_frame(OP_TEXT, b"}", fin=True)
    closed_with(a, (1002, None), "a new text frame inside a fragmented message → close 1002")

    a = fresh()
    a.send_frame(0x3, b"reserved")
    closed_with(a, (1002, None), "a reserved opcode → close 1002")

    a = fresh()
    a.send_frame(OP_TEXT, b"{}", rsv=4)
    closed_with(a, (1002, None), "RSV1 set without an extension → close 1002")

    a = fresh()
    a.send_frame(OP_PING, b"x" * 126)
    closed_with(a, (1002, None), "a control frame over 125 bytes → close 1002")

    a = fresh()
    a.send_frame(OP_PING, b"p", fin=False)
    closed_with(a, (1002, None), "a fragmented control frame → close 1002")

    # unmasked client frame: RFC 6455 says the server must close; libwebsockets
    # 4.1.6 may not enforce it, so this is reported, not failed, when ignored.
    a = fresh()
    a.send_frame(OP_TEXT, b'{"command": "send", "room": "%s", "message": "unmasked"}' % lobby.encode(), mask=False)
    try:
        code = a.wait_close(2 * SLOW)
        check(code in (1002, None), "an unmasked frame → close 1002 (or dropped)", code)
    except Exception:  # noqa: BLE001
        relayed = bool(watcher.expect_none(lambda o: o.get("message") == "unmasked", 0.3))
        harness.log(f"# NOTE: an unmasked client frame did not close the connection "
                    f"(relayed: {relayed}); libwebsockets does not enforce masking")
        a.shutdown()

    # the daemon survived all of it
    a = fresh()
    harness.send(a, lobby, "still alive")
    try:
        expect_message(watcher, lobby, "still alive", "alice")
        check(True, "after all the violations, a new connection works")
    except TimeoutError as e:
        check(False, "after all the violations, a new connection works", str(e))
    check(watcher.is_open(), "the watching connection was never disturbed")
    check(d.alive, "the daemon is still running")


harness.main(test)
