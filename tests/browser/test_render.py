#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The page's rendering code under node's test runner with jsdom: markup in
anything that came from the network must end up as text. Skips (77) only
without node >= 20 or the npm packages (npm ci --prefix tests/browser)."""

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    node = shutil.which("node")
    if not node:
        print("SKIP: node is not installed (apt-get install nodejs)")
        return 77
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        print(f"SKIP: jsdom needs node >= 20, this is {version}")
        return 77
    if not (HERE / "node_modules" / "jsdom").is_dir():
        print("SKIP: tests/browser/node_modules is missing: run npm ci --prefix tests/browser")
        return 77
    return subprocess.run([node, "--test", str(HERE / "render.test.mjs")], cwd=HERE, timeout=120).returncode


if __name__ == "__main__":
    sys.exit(main())
