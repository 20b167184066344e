#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fails when a module of daemon/ includes a header of a layer above its
own, or when modules include each other in a circle.

The layers, lowest first, and what each may include, are in LAYERS below
and drawn in docs/architecture.md. A module is a name.c/name.h pair; its
tests (test-*.c) may include what the module may. Usage:
check-layers.py DAEMON_DIR
"""
import os
import re
import sys

# layer -> the layers it may include (itself always)
LAYERS = {
    "basic": [],
    "wire": ["basic"],
    "redis": ["basic"],
    "store": ["basic", "wire", "redis"],
    "auth": ["basic", "wire"],
    "chat": ["basic", "wire", "redis", "store"],
    "net": ["basic", "wire", "redis", "store", "auth"],
    "bus": ["basic", "wire", "redis", "store", "auth", "chat"],
    "test": ["basic"],
    ".": ["basic", "wire", "redis", "store", "auth", "chat", "net", "bus"],
}
# Headers the build generates: no module, no layer.
GENERATED = {"config-build.h", "unicode-invisible-table.h"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def module_of(path):
    base = os.path.basename(path)
    name = base.rsplit(".", 1)[0]
    return os.path.join(os.path.dirname(path), name)


def main(root):
    errors = []
    graph = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if not f.endswith((".c", ".h")):
                continue
            path = os.path.relpath(os.path.join(dirpath, f), root)
            layer = os.path.dirname(path) or "."
            if layer not in LAYERS:
                errors.append(f"{path}: folder {layer} is not a known layer")
                continue
            allowed = set(LAYERS[layer]) | {layer}
            if f.startswith("test-"):
                allowed.add("test")     # the assertion kit and the test Redis
            text = open(os.path.join(root, path), encoding="utf-8").read()
            for inc in INCLUDE.findall(text):
                if inc in GENERATED:
                    continue
                inc_layer = os.path.dirname(inc) or "."
                if not os.path.exists(os.path.join(root, inc)):
                    errors.append(f"{path}: includes \"{inc}\", which is not a header of daemon/")
                    continue
                if inc_layer not in allowed:
                    errors.append(f"{path}: layer {layer} includes {inc} from layer {inc_layer} above it")
                if not os.path.basename(path).startswith("test-"):
                    src, dst = module_of(path), module_of(inc)
                    if src != dst:
                        graph.setdefault(src, set()).add(dst)

    # A circle between modules: depth-first search for a back edge.
    state = {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                errors.append("modules include each other in a circle: " + " -> ".join(cycle))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])

    for e in errors:
        print(e)
    print(f"{len(graph)} modules checked, {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "daemon")))
