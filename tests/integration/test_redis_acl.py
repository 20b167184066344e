#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The daemon as a Redis ACL user with the least privilege documented in
docs/operations.md: login, join, send, edit, history and D-Bus CreateRoom
work and Redis refuses nothing; the password comes from a systemd
credential. A wrong password, or an unreadable password file, exits once
with status 78 and one clear error. A Redis that turns into a replica
makes /healthz 503 with the reason."""

import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, expect_message, join, send  # noqa: E402

PASSWORD = "multichat-acl-test-pw"
EXIT_REDIS_CREDENTIALS = 78


def documented_acl_line():
    text = (harness.SRC / "docs" / "operations.md").read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("user multichat ")]
    assert len(lines) == 1, f"expected one 'user multichat' line in docs/operations.md, found {len(lines)}"
    assert ">CHANGE-ME" in lines[0]
    return lines[0].replace(">CHANGE-ME", ">" + PASSWORD)


def reply_to(ws, ref):
    return ws.expect(lambda o: o.get("ref") == ref, 5 * SLOW, what=f"reply to {ref}")[0]


def start_refused(stack, check, what, args, env=None):
    d = stack.start_daemon(args=args, env=env, wait=False, own_bus=True)
    try:
        d.proc.wait(10 * SLOW)
    except Exception:
        check(False, f"{what}: the daemon exits")
        return
    check.eq(d.proc.returncode, EXIT_REDIS_CREDENTIALS, f"{what}: exit status 78 (no restart loop)")
    return d


def test(stack, check):
    acl = stack.dir / "users.acl"
    acl.write_text(documented_acl_line() + "\n"
                   # the harness's own side channel
                   "user default on nopass ~* &* +@all\n")
    stack.redis.args = ["--aclfile", str(acl)]
    stack.redis.port = harness._free_port()
    creds = stack.dir / "creds"
    creds.mkdir()
    (creds / "redis-password").write_text(PASSWORD + "\n")
    os.chmod(creds / "redis-password", 0o600)
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    args = ["--redis-user=multichat", "--redis-password-file=redis-password"]

    d = stack.start_daemon(args=args, env=env)
    check(d.alive, "the daemon starts as the ACL user, with the password from a credential")
    lobby = stack.create_room("Lobby")
    a = d.ws("alice")
    b = d.ws("bob")
    join(a, lobby)
    join(b, lobby)
    send(a, lobby, "hello", ref="s1")
    ack = reply_to(a, "s1")
    check(ack.get("ok") is True, "send is acknowledged", ack)
    expect_message(b, lobby, "hello", "alice")
    a.send_json({"command": "edit", "room": lobby, "id": ack.get("id"), "message": "hello, edited", "ref": "e1"})
    check(reply_to(a, "e1").get("ok") is True, "edit is acknowledged")
    b.send_json({"command": "history", "room": lobby, "limit": 10, "ref": "h1"})
    hist = reply_to(b, "h1").get("history") or []
    check.eq([h.get("message") for h in hist], ["hello, edited"], "history has the edited message")
    check.eq(d.http("GET", "/healthz").status, 200, "/healthz 200")

    denied = stack.redis.command("ACL", "LOG")
    check.eq(denied, [], "Redis refused the multichat user nothing (ACL LOG is empty)")
    clients = stack.redis.command("CLIENT", "LIST")
    check("user=multichat" in clients, "the daemon's connections are the multichat user's")

    # A Redis that turns into a replica (plain redis=, no sentinels): the
    # roles of it and a replica of it swap, the data stays.
    other = harness.Redis(stack.dir, name="other", port=harness._free_port(),
                          args=["--replicaof", "127.0.0.1", str(stack.redis.port)])
    stack.more_redis.append(other)
    other.start()
    harness.wait_until(lambda: "master_link_status:up" in other.command("INFO", "replication"), 10,
                       what="the replica in sync")
    other.command("REPLICAOF", "NO", "ONE")
    stack.redis.command("REPLICAOF", "127.0.0.1", other.port)
    send(a, lobby, "to a replica", ref="s2")
    r = reply_to(a, "s2")
    check("error" in r, "a send to a replica is refused", r)
    try:
        harness.wait_until(lambda: d.http("GET", "/healthz").status == 503, 5 * SLOW, what="/healthz 503")
    except TimeoutError:
        pass
    h = d.http("GET", "/healthz")
    check.eq((h.status, h.text), (503, "redis is a replica\n"), "/healthz says the Redis is a replica")
    try:
        d.wait_notify("STATUS", timeout=5, pred=lambda v: "redis is a replica" in v)
        check(True, "STATUS= says the Redis is a replica")
    except TimeoutError:
        check(False, "STATUS= says the Redis is a replica", d.status())
    check(re.search(r"Redis at unix:\S+ is a replica", d.log_text()) is not None,
          "the log says the Redis is a replica")
    stack.redis.command("REPLICAOF", "NO", "ONE")
    harness.wait_until(lambda: d.http("GET", "/healthz").status == 200, 10 * SLOW, what="/healthz 200 again")
    send(a, lobby, "master again", ref="s3")
    check(reply_to(a, "s3").get("ok") is True, "sends work once it is a master again")
    check.eq(d.log_text().count("is a replica ("), 1, "the replica is logged once")
    d.stop()

    # A wrong password: one clear error, exit 78.
    (creds / "wrong").write_text("not-the-password\n")
    bad = start_refused(stack, check, "wrong password",
                        ["--redis-user=multichat", "--redis-password-file=wrong"], env)
    if bad:
        text = bad.log_text()
        check.eq(text.count("Redis refused our credentials"), 1, "one error line")
        check("WRONGPASS" in text, "... that names Redis's answer", text[-2000:])

    # The credential is not there ($CREDENTIALS_DIRECTORY unset).
    bad = start_refused(stack, check, "no credentials directory", args, {})
    if bad:
        check("$CREDENTIALS_DIRECTORY is not set" in bad.log_text(), "... and says why", bad.log_tail(5))

    # An ACL user without the commands it needs is told at start too (NOPERM on ROLE).
    stack.redis.command("ACL", "SETUSER", "weak", "on", ">" + PASSWORD, "~mc:*", "&*", "+@all", "-role")
    bad = start_refused(stack, check, "a user without +role",
                        ["--redis-user=weak", "--redis-password-file=redis-password"], env)
    if bad:
        check("NOPERM" in bad.log_text(), "... naming NOPERM", bad.log_tail(5))


harness.main(test)
