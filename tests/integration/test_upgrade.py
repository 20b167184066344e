#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The upgrade from the first key layout: the daemon of the release before
it (built from that commit, cached) writes rooms, messages with an edit and
a delete, read markers and a session; then two new daemons start at once on
the same Redis. Exactly one migrates, both become ready, and everything is
found over HTTP, WebSocket and D-Bus, the old session cookie included."""

import fcntl
import os
import subprocess
import sys
import tarfile
import io
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, expect_message, join, send  # noqa: E402

# The last commit with the first key layout.
OLD_COMMIT = "b303d1c"
CACHE = Path(os.environ.get("MULTICHAT_UPGRADE_CACHE") or "/var/cache/multichat-test")
MIGRATED = "Migrated Redis's data to key layout 2"
# Longer than the daemons' status interval (5 s): both say they wait.
LOCK_HELD_MS = 6000


def old_daemon_dir():
    """A build of OLD_COMMIT: the directory holding its multichatd and
    multichat-auth. Built once (a few minutes) and cached; a run that finds
    it built takes no time. MULTICHAT_OLD_BUILD_DIR names one built elsewhere."""
    given = os.environ.get("MULTICHAT_OLD_BUILD_DIR")
    if given:
        return Path(given) / "daemon"
    if subprocess.run(["git", "-C", str(harness.SRC), "cat-file", "-e", OLD_COMMIT + "^{commit}"],
                      capture_output=True).returncode != 0:
        raise harness.Skip(f"commit {OLD_COMMIT} is not in {harness.SRC} (a git checkout is needed)")
    root = CACHE / f"old-daemon-{OLD_COMMIT}"
    root.mkdir(parents=True, exist_ok=True)
    built = root / "build" / "daemon"
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (built / "multichatd").exists() and (built / "multichat-auth").exists():
            return built
        src = root / "src"
        if not (src / "meson.build").exists():
            tar = subprocess.run(["git", "-C", str(harness.SRC), "archive", OLD_COMMIT],
                                 check=True, capture_output=True).stdout
            with tarfile.open(fileobj=io.BytesIO(tar)) as t:
                t.extractall(src)
        harness.log(f"# building the daemon of {OLD_COMMIT} in {root} (once)")
        if not (root / "build" / "build.ninja").exists():
            subprocess.run(["meson", "setup", str(root / "build"), str(src)], check=True,
                           stdout=subprocess.DEVNULL)
        subprocess.run(["ninja", "-C", str(root / "build"), "-j2", "daemon/multichatd", "daemon/multichat-auth"],
                       check=True, stdout=subprocess.DEVNULL)
    return built


class OldDaemon(harness.Daemon):
    """The previous release's multichatd, on the stack's Redis and bus."""

    def __init__(self, stack, name, bus, binary):
        super().__init__(stack, name, bus)
        self.binary = binary

    def argv(self):
        a = super().argv()
        return [str(self.binary)] + a[1:]


def reply(ws, cmd):
    ws.send_json(cmd)
    return ws.expect(lambda o: o.get("ref") == cmd["ref"], 5 * SLOW, what=f"answer to {cmd['ref']}")


def hello(ws, ref="h"):
    return reply(ws, {"command": "hello", "version": 2, "ref": ref})


def write_old(stack, check, old_dir):
    """Through the old daemon: rooms, messages, an edit, a delete, read
    markers; returns alice's cookie jar and what was written."""
    stack.redis.start()
    bus = stack.bus
    old = OldDaemon(stack, "old", bus, old_dir / "multichatd")
    stack.daemons.append(old)
    old.start()
    old.wait_ready(30.0 * SLOW)
    lobby = old.create_room("Lobby")
    staff = old.create_room("Back office", staff_only=True)

    jar = old.login("alice")
    a = old.ws(jar=jar)
    a.expect(lambda o: "rooms" in o, 5 * SLOW, what="room list (old)")
    hello(a, "h-old")
    join(a, lobby)
    bob = old.ws("bob")
    bob.expect(lambda o: "rooms" in o, 5 * SLOW, what="room list (old, bob)")
    hello(bob, "hb-old")
    join(bob, lobby)
    ids = {}
    for text, ref in (("first", "s1"), ("second, soon gone", "s2"), ("third", "s3")):
        obj, raw = reply(a, {"command": "send", "room": lobby, "message": text, "ref": ref})
        check.fatal(obj.get("ok") is True and obj.get("id"), f"the old daemon stores {text!r}", raw)
        ids[text] = obj["id"]
    obj, raw = reply(a, {"command": "edit", "room": lobby, "id": ids["first"], "message": "first, edited", "ref": "e1"})
    check.fatal(obj.get("ok") is True, "the old daemon edits", raw)
    obj, raw = reply(a, {"command": "delete", "room": lobby, "id": ids["second, soon gone"], "ref": "d1"})
    check.fatal(obj.get("ok") is True, "the old daemon deletes", raw)
    obj, raw = reply(bob, {"command": "send", "room": lobby, "message": "hi @alice", "ref": "b1"})
    check.fatal(obj.get("ok") is True, "bob writes to alice", raw)
    ids["hi @alice"] = obj["id"]
    a.close()
    bob.close()
    old.stop()
    check.eq(old.exit_code, 0, "the old daemon stops cleanly")
    keys = stack.redis.command("KEYS", "mc:*")
    check("mc:rooms" in keys and f"mc:room:{lobby}:log" in keys and "mc:user:alice:rooms" in keys,
          "Redis holds the first layout", keys)
    return jar, lobby, staff, ids


def test(stack, check):
    try:
        old_dir = old_daemon_dir()
    except subprocess.CalledProcessError as e:
        check.fatal(False, f"the daemon of {OLD_COMMIT} builds", str(e))
    jar, lobby, staff, ids = write_old(stack, check, old_dir)

    # A daemon that died while migrating left its lock: the two new ones
    # started at once wait, say so, and then one of them takes over.
    stack.redis.command("SET", "mc:migrate-lock", "killed-daemon", "PX", str(LOCK_HELD_MS))
    d1 = stack.start_daemon(name="d1", wait=False)
    d2 = stack.start_daemon(name="d2", own_bus=True, wait=False)
    for d in (d1, d2):
        d.wait_notify("STATUS", timeout=10, pred=lambda s: "waiting for another daemon to migrate" in s)
        check(not d.notified("READY"), f"{d.name} says it waits for the migration, and is not ready", d.status())
    d1.wait_ready(20 * SLOW)
    d2.wait_ready(20 * SLOW)
    migrated = [d.name for d in (d1, d2) if MIGRATED in d.log_text()]
    check(len(migrated) == 1, "exactly one of the two daemons migrated", migrated)
    waited = [d.name for d in (d1, d2) if "Another daemon migrated" in d.log_text()]
    check(len(waited) == 1 and waited != migrated, "the other one says it waited for it", waited)
    check.eq(stack.redis.command("GET", "mc:schema"), "2", "Redis is at key layout 2")
    old_keys = [k for k in stack.redis.command("KEYS", "mc:*")
                if k.startswith(("mc:room:", "mc:user:")) or k in ("mc:rooms", "mc:rooms:seq", "mc:epoch")]
    check.eq(old_keys, [], "no key of the first layout is left")

    # D-Bus: the rooms, on both daemons.
    for d in (d1, d2):
        listed = sorted(r[0] for r in d.bus.call("ListRooms")[0])
        check.eq(listed, sorted([lobby, staff]), f"{d.name}'s ListRooms has both rooms")

    # HTTP: the old session cookie is still logged in.
    r = d2.http("GET", "/api/session", cookies=jar)
    check.eq(r.status, 200, "the old session cookie is logged in on a new daemon")
    check('"alice"' in r.text, "... as alice", r.text[:200])

    # WebSocket with that cookie: rooms, the user's rooms, history with the edit.
    a = d2.ws(jar=jar)
    obj, raw = a.expect(lambda o: "rooms" in o, 5 * SLOW, what="room list (new)")
    check.eq(sorted(x["id"] for x in obj["rooms"]), sorted([lobby, staff]), "the room list (alice is staff)")
    obj, raw = hello(a, "h-new")
    check(obj.get("rooms") == [lobby], "alice's rooms came along", raw)
    obj, raw = a.expect(lambda o: o.get("join") == lobby, 5 * SLOW, what="alice's room joined after hello")
    history = [(h.get("id"), h.get("message"), h.get("edited", False)) for h in obj.get("history") or []]
    check(history == [(ids["first"], "first, edited", True), (ids["third"], "third", False),
                      (ids["hi @alice"], "hi @alice", False)],
          "history: the edit kept, the deleted message gone", raw)
    check((obj.get("read"), obj.get("unread"), obj.get("mentions")) == (ids["third"], 1, 1),
          "alice's read marker came along: bob's mention is unread", raw)

    # New messages in the migrated room reach both daemons.
    b = d1.ws("bob")
    b.expect(lambda o: "rooms" in o, 5 * SLOW, what="room list (d1)")
    join(b, lobby)
    send(b, lobby, "after the upgrade")
    expect_message(a, lobby, "after the upgrade", "bob")
    check(True, "a message after the upgrade crosses daemons")
    new_room = d1.create_room("New")
    check(int(new_room) > int(staff), "room ids go on after the migrated ones", new_room)


if __name__ == "__main__":
    harness.main(test, timeout=float(os.environ.get("MULTICHAT_TEST_TIMEOUT") or 600))
