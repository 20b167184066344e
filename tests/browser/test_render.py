#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The page's modules under node's test runner with jsdom: rendering,
formatting, unread counts, the outbox, storage, protocol versions. Runs on
Debian 12's node 18 and Debian 13's node 20. Skips (77) only without node or
the npm packages (npm ci --prefix tests/browser); CI installs them."""

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        print("SKIP: node is not installed (apt-get install nodejs)")
        return 77
    if not (HERE / "node_modules" / "jsdom").is_dir():
        print("SKIP: tests/browser/node_modules is missing: run npm ci --prefix tests/browser")
        return 77
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    major, minor = (int(x) for x in version.lstrip("v").split(".")[:2])
    argv = [node]
    if (major, minor) < (20, 19):
        # Older node does not recognise web/*.js as modules by their syntax.
        argv += ["--no-warnings", "--experimental-loader", "./web-modules.mjs"]
    print(f"# node {version}")
    return subprocess.run(argv + ["--test", "render.test.mjs"], cwd=HERE, timeout=120).returncode


if __name__ == "__main__":
    sys.exit(main())
