#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""End to end in a real browser: starts the stack, creates room "Lobby" and
runs tests/browser/chat.mjs (playwright-core + Debian's chromium) with
alice and bob. Skips (77) when node, chromium or the npm packages are
missing (npm ci --prefix tests/browser)."""

import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402

BROWSER_DIR = harness.SRC / "tests" / "browser"
SCRIPT = BROWSER_DIR / "chat.mjs"


def test(stack, check):
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        raise harness.Skip("node is not installed")
    try:
        ver = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
        major = int(ver.lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        ver, major = "?", 0
    if major < 20:
        # playwright-core and jsdom need Node >= 20; Debian 12 ships 18.
        raise harness.Skip(f"node {ver} is too old for playwright-core (needs >= 20)")
    if not SCRIPT.exists():
        raise harness.Skip(f"{SCRIPT} does not exist")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        raise harness.Skip("tests/browser/node_modules is missing: run npm ci --prefix tests/browser")
    if not any(os.path.exists(p) for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium")):
        raise harness.Skip("chromium is not installed")

    d = stack.start_daemon()
    room = stack.create_room("Lobby")
    harness.log(f"# room Lobby is {room}; daemon at {d.base}")
    argv = [node, str(SCRIPT), "--url", d.base, "--user", "alice:alice-pw", "--user", "bob:bob-pw",
            "--room-title", "Lobby"]
    harness.log("# " + " ".join(argv))
    try:
        p = subprocess.run(argv, cwd=str(BROWSER_DIR), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=90)
        out, rc = p.stdout, p.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""), None
    for line in out.splitlines():
        harness.log(f"  | {line}")
    if rc == 77:
        raise harness.Skip("chat.mjs skipped")
    check.eq(rc, 0, "the browser test (chat.mjs) passes")
    check(d.alive, "the daemon is still running")


harness.main(test, timeout=110)
