#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The chat page end to end in Debian's chromium: starts the stack, creates
rooms "Lobby", "Random" and "Big" (filled with 10,000 messages over the
WebSocket) and runs tests/browser/chat.mjs (playwright-core, axe-core) with
alice and bob. Runs on Debian 12's node 18 and Debian 13's node 20. Skips
(77) only when node, chromium or the npm packages are missing (npm ci
--prefix tests/browser); CI installs them.

MULTICHAT_SCREENSHOTS=DIR also writes the README screenshots there."""

import os
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402

BROWSER_DIR = harness.SRC / "tests" / "browser"
SCRIPT = BROWSER_DIR / "chat.mjs"
BIG = 10000
# Enough for the filler connection; the page itself stays far below it.
DAEMON_ARGS = ("--history-size=20000", "--rate-limit=5000", "--rate-burst=10000")


def fill(d, room, n, user="bob"):
    """Sends n messages "big 1".."big n" to room over one WebSocket, 200 in
    flight; a refused send (RATE_LIMITED under load) is sent again."""
    ws = d.ws(user)
    ws.expect(lambda e: "rooms" in e, what="the room list")
    ws.send_json({"command": "join", "room": room, "ref": "j"})
    ws.expect(lambda e: e.get("join") == room, what="joined")
    todo = list(range(1, n + 1))
    done = set()
    started = time.monotonic()
    while todo or len(done) < n:
        batch, todo = todo[:200], todo[200:]
        for i in batch:
            ws.send_json({"command": "send", "room": room, "message": f"big {i}", "ref": f"b{i}"})
        waiting = set(batch)
        while waiting:
            e, _ = ws.recv_json(timeout=20)
            ref = e.get("ref", "")
            if not ref.startswith("b"):
                continue
            i = int(ref[1:])
            waiting.discard(i)
            if e.get("ok") is True:
                done.add(i)
            else:
                todo.append(i)
        if time.monotonic() - started > 60:
            raise AssertionError(f"filling {room}: only {len(done)} of {n} messages stored in 60 s")
    ws.close()
    return time.monotonic() - started


def test(stack, check):
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        raise harness.Skip("node is not installed (apt-get install nodejs)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir() \
            or not (BROWSER_DIR / "node_modules" / "axe-core").is_dir():
        raise harness.Skip("tests/browser/node_modules is missing: run npm ci --prefix tests/browser")
    if not any(os.path.exists(p) for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium")):
        raise harness.Skip("chromium is not installed (apt-get install --no-install-recommends chromium)")

    d = stack.start_daemon(args=DAEMON_ARGS)
    rooms = {t: stack.create_room(t) for t in ("Lobby", "Random", "Big")}
    harness.log(f"# rooms {rooms}; daemon at {d.base}")
    secs = fill(d, rooms["Big"], BIG)
    harness.log(f"# {BIG} messages stored in Big in {secs:.1f} s")
    argv = [node, str(SCRIPT), "--url", d.base, "--user", "alice:alice-pw", "--user", "bob:bob-pw",
            "--big", str(BIG)]
    shots = os.environ.get("MULTICHAT_SCREENSHOTS")
    if shots:
        argv += ["--screenshots", shots]
    harness.log("# " + " ".join(argv))
    try:
        p = subprocess.run(argv, cwd=str(BROWSER_DIR), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=360)
        out, rc = p.stdout, p.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        rc = None
    for line in out.splitlines():
        harness.log(f"  | {line}")
    if rc == 77:
        raise harness.Skip("chat.mjs skipped")
    check.eq(rc, 0, "the browser test (chat.mjs) passes")
    check(d.alive, "the daemon is still running")


harness.main(test, timeout=400)
