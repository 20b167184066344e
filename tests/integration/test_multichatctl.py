#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""multichatctl against a running daemon on a private bus: every verb, its
table and JSON output, what reaches a WebSocket client, the messages and
exit statuses of failures (no such room, not authorized, no daemon, Redis
gone, bad arguments), and the bash completion's room ids."""

import datetime
import json
import os
import re
import shlex
import subprocess
import sys
import time
import unicodedata

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import NOBODY, ROOM_IFACE, SLOW, join, room_path  # noqa: E402

CTL = harness.BUILD / "daemon" / "multichatctl"
COMPLETION = harness.SRC / "packaging" / "bash-completion" / "multichatctl"
BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"
NOT_AUTHORIZED = "Not authorized (run as root or a member of multichat-admin)"
NOT_RUNNING = "multichatd is not running (org.multichat.Chat1 not on the bus)"
# A zone east of UTC, so "local time" is told apart from UTC.
TZ = "MCT-3"
TZ_OFFSET = datetime.timezone(datetime.timedelta(hours=3))


class Ctl:
    """Runs the built multichatctl on one bus; remembers sanitizer reports."""

    def __init__(self, bus):
        self.bus = bus
        self.reports = []

    def __call__(self, *args, uid=None, address=None, env=None):
        argv = [str(CTL)]
        if address is not False:
            argv.append(f"--address={address or self.bus.address}")
        argv = self.bus._as(argv + [str(a) for a in args], uid)
        e = {k: v for k, v in os.environ.items() if not k.startswith("DBUS_")}
        e.update({"LC_ALL": "C.UTF-8", "TZ": TZ})
        e.update(env or {})
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=e, timeout=30)
        if any(m in p.stderr for m in harness.SANITIZER_MARKERS):
            self.reports.append(f"{args}: {p.stderr[:4000]}")
        return p

    def json(self, *args, **kw):
        p = self("--json", *args, **kw)
        if p.returncode != 0:
            raise AssertionError(f"multichatctl --json {args} failed ({p.returncode}): {p.stderr}")
        return json.loads(p.stdout)


def width(s):
    """Terminal columns, as wcwidth() counts them in a UTF-8 locale."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def at_column(line, col):
    """The rest of line from terminal column col; None inside a wide character."""
    w = 0
    for i, c in enumerate(line):
        if w == col:
            return line[i:]
        if w > col:
            return None
        w += width(c)
    return "" if w == col else None


def check_table(check, out, header, rows, what, legend=True):
    """out is a table with these header words and rows (lists of cells, in
    order): every cell starts in its header's column, one space or more after
    the previous cell, and the last cell ends the line."""
    lines = out.split("\n")
    if legend:
        check.eq(lines[0].split(), header, f"{what}: the header")
        starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
        body = lines[1:1 + len(rows)]
        noun = "room" if header[0] == "ID" else "connection"
        footer = f"{len(rows)} {noun}{'' if len(rows) == 1 else 's'} listed."
        check.eq(lines[1 + len(rows):], ["", footer, ""], f"{what}: a blank line and the footer")
    else:
        body = lines[:len(rows)]
        check.eq(lines[len(rows):], [""], f"{what}: no header, no footer")
        starts = [0]
        for k in range(1, len(header)):
            starts.append(starts[-1] + max(width(r[k - 1]) for r in rows) + 2)
    ok = len(body) == len(rows)
    for line, cells in zip(body, rows):
        for k, cell in enumerate(cells):
            rest = at_column(line, starts[k])
            ok = ok and rest is not None and rest.startswith(cell)
            ok = ok and (k == 0 or (at_column(line, starts[k] - 1) or "").startswith(" "))
        ok = ok and line.endswith(cells[-1]) and not line.endswith(" ")
    check(ok, f"{what}: the columns line up", "\n" + out)


def rooms_push(ws, pred, what):
    return ws.expect(lambda o: "rooms" in o and pred(o["rooms"]), 5 * SLOW, what=what)


def expect(check, ws, pred, what):
    try:
        obj, raw = ws.expect(pred, 5 * SLOW, what=what)
        check(True, what, raw)
        return obj
    except TimeoutError as e:
        check(False, what, str(e))
        return None


def check_fails(check, p, status, message, what):
    check(p.returncode == status and message in p.stderr and p.stdout == "",
          f"{what}: exit status {status}, says {message!r}",
          f"status {p.returncode}, stdout {p.stdout!r}, stderr {p.stderr!r}")


def test_status(check, ctl, bus):
    p = ctl()
    check.eq(p.returncode, 0, "no verb: status, exit 0")
    lines = p.stdout.rstrip("\n").split("\n")
    colons = {line.index(":") for line in lines if ":" in line}
    check(len(lines) == 5 and len(colons) == 1, "status: five 'Key: value' lines, the colons aligned", p.stdout)
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    check.eq(fields.get("Version"), bus.get_property("Version"), "status: Version is the daemon's")
    check.eq(fields.get("Connections"), "0", "status: Connections")
    check.eq(fields.get("Redis"), "connected", "status: Redis connected")
    check.eq(fields.get("Messages relayed"), str(bus.get_property("MessagesRelayed")), "status: Messages relayed")
    check.eq(fields.get("Rooms"), "0", "status: Rooms")
    check.eq(ctl("status").stdout, p.stdout, "status is the default verb")
    j = ctl.json("status")
    check.eq(j, {"version": fields.get("Version"), "connections": 0, "redis_connected": True,
                 "messages_relayed": bus.get_property("MessagesRelayed"), "rooms": 0}, "status --json")


def test_create_and_list(check, ctl, bus, alice):
    p = ctl("create-room", "Lobby")
    lobby = p.stdout.strip()
    check(p.returncode == 0 and lobby.isdigit() and p.stdout == lobby + "\n",
          "create-room prints the new id and nothing else", p)
    check.eq({r[0]: r[1] for r in bus.call("ListRooms")[0]}.get(lobby), "Lobby", "the room exists on the bus")
    expect(check, alice, lambda o: "rooms" in o and any(r.get("id") == lobby for r in o["rooms"]),
           "create-room: a WebSocket client is pushed the new room")
    staff = ctl("create-room", "Ünïcode hall", "--staff-only").stdout.strip()
    check.eq(bus.get_property("StaffOnly", path=room_path(staff), iface=ROOM_IFACE), True,
             "create-room --staff-only makes a staff-only room")
    wide = ctl.json("create-room", "日本語 room")
    check(wide.get("path") == room_path(wide.get("id")), "create-room --json gives id and path", wide)
    wide = wide.get("id")

    rooms = ctl.json("list-rooms")
    want = [{"id": r[0], "title": r[1], "staff_only": r[2], "members": r[3]} for r in bus.call("ListRooms")[0]]
    check.eq(rooms, want, "list-rooms --json is ListRooms as objects")
    check.eq([r["title"] for r in rooms], sorted(r["title"] for r in rooms), "list-rooms is sorted by title")
    check.eq(json.loads(ctl("--json=pretty", "list-rooms").stdout), want, "--json=pretty parses the same")

    rows = [[r["id"], r["title"], "yes" if r["staff_only"] else "no", str(r["members"])] for r in rooms]
    p = ctl("list-rooms")
    check.eq(p.returncode, 0, "list-rooms: exit 0")
    check_table(check, p.stdout, ["ID", "TITLE", "STAFF", "MEMBERS"], rows, "list-rooms")
    p = ctl("list-rooms", "--no-legend")
    check_table(check, p.stdout, ["ID", "TITLE", "STAFF", "MEMBERS"], rows, "list-rooms --no-legend", legend=False)
    check.eq(ctl("--no-pager", "list-rooms").stdout, ctl("list-rooms").stdout, "--no-pager is accepted")
    check.eq(ctl.json("status")["rooms"], 3, "status counts the rooms")
    return lobby, staff, wide


def test_members_and_connections(check, ctl, lobby, alice):
    join(alice, lobby)
    try:
        harness.wait_until(lambda: ctl("members", lobby).stdout == "alice\n", 3 * SLOW, what="members")
        check(True, "members lists alice, one name a line")
    except TimeoutError as e:
        check(False, "members lists alice, one name a line", str(e))
    check.eq(ctl.json("members", lobby), ["alice"], "members --json")
    check.eq([r["members"] for r in ctl.json("list-rooms") if r["id"] == lobby], [1], "list-rooms counts alice")

    conns = ctl.json("connections")
    c = conns[0] if len(conns) == 1 else {}
    check(c.get("username") == "alice" and "127.0.0.1" in c.get("peer", "") and c.get("rooms") == [lobby]
          and abs(c.get("since_usec", 0) / 1e6 - time.time()) < 120,
          "connections --json: username, peer, since_usec, rooms", conns)
    since = datetime.datetime.fromtimestamp(c.get("since_usec", 0) // 1000000, TZ_OFFSET)
    since = since.strftime("%a %Y-%m-%d %H:%M:%S ") + "MCT"
    p = ctl("connections")
    check.eq(p.returncode, 0, "connections: exit 0")
    check_table(check, p.stdout, ["USER", "PEER", "SINCE", "ROOMS"], [["alice", c.get("peer", "?"), since, lobby]],
                "connections (SINCE in local time)")


def test_changes_reach_clients(check, ctl, bus, lobby, staff, alice):
    check.eq(ctl("rename-room", lobby, "Main hall").returncode, 0, "rename-room: exit 0")
    check.eq(bus.get_property("Title", path=room_path(lobby), iface=ROOM_IFACE), "Main hall", "rename-room sets Title")
    expect(check, alice, lambda o: "rooms" in o and any(r.get("id") == lobby and r.get("title") == "Main hall"
                                                        for r in o["rooms"]),
           "rename-room: the client is pushed a rooms list with the new title")

    for value, want in (("no", False), ("on", True), ("0", False), ("TRUE", True), ("off", False)):
        p = ctl("set-staff-only", staff, value)
        check(p.returncode == 0 and bus.get_property("StaffOnly", path=room_path(staff), iface=ROOM_IFACE) is want,
              f"set-staff-only {value} sets StaffOnly {want}", p.stderr)

    for args, level in ((["--room=" + lobby], 1), (["--room", lobby, "--level=alert"], 2),
                        (["--level=muted", "--room=" + lobby], 3)):
        text = f"notice {level}"
        p = ctl("announce", *args, text)
        check.eq(p.returncode, 0, f"announce {args}: exit 0")
        expect(check, alice, harness.is_msg(lobby, text, msg_type=level),
               f"announce {args}: the client gets msg_type {level}")
    ctl("announce", "to every room")
    expect(check, alice, harness.is_msg(lobby, "to every room", msg_type=1),
           "announce without --room reaches every room, level warning")

    p = ctl("kick", "alice", "--room=" + lobby)
    check.eq(p.returncode, 0, "kick --room: exit 0")
    obj = expect(check, alice, lambda o: o.get("leave") == lobby, "kick --room: the client leaves the room")
    check(obj is not None and obj.get("reason") == "kicked", "kick --room: reason kicked", obj)
    check(alice.is_open(), "kick --room leaves the connection open")


def test_kick_and_delete(check, ctl, d, lobby, wide):
    bob = d.ws("bob")
    bob.expect(lambda o: "rooms" in o, what="initial rooms list")
    join(bob, wide)
    p = ctl("delete-room", wide)
    check.eq(p.returncode, 0, "delete-room: exit 0")
    obj = expect(check, bob, lambda o: o.get("leave") == wide, "delete-room: its member leaves it")
    check(obj is not None and obj.get("reason") == "deleted", "delete-room: reason deleted", obj)
    check(wide not in [r["id"] for r in ctl.json("list-rooms")], "delete-room: list-rooms no longer has it")

    check.eq(ctl("kick", "bob").returncode, 0, "kick without --room: exit 0")
    try:
        code = bob.wait_close(5 * SLOW)
        check(True, f"kick without --room closes the user's connection (code {code})")
    except Exception as e:  # noqa: BLE001
        check(False, "kick without --room closes the user's connection", repr(e))


def test_errors(check, ctl, stack, lobby):
    before = ctl("list-rooms").stdout
    for args in (["delete-room", "999999"], ["rename-room", "999999", "X"], ["set-staff-only", "999999", "yes"],
                 ["members", "999999"], ["announce", "--room=999999", "x"], ["kick", "alice", "--room=999999"]):
        check_fails(check, ctl(*args), 1, "No such room: 999999", " ".join(args))

    for args in (["create-room", "Nope"], ["delete-room", lobby], ["rename-room", lobby, "Hacked"],
                 ["set-staff-only", lobby, "yes"], ["announce", "nope"], ["kick", "alice"], ["connections"]):
        check_fails(check, ctl(*args, uid=NOBODY), 1, NOT_AUTHORIZED, f"as uid {NOBODY}: {' '.join(args)}")
    check.eq(ctl("list-rooms", uid=NOBODY).stdout, before, f"as uid {NOBODY}: list-rooms works")
    check.eq(ctl("status", uid=NOBODY).returncode, 0, f"as uid {NOBODY}: status works")
    check.eq(ctl("list-rooms").stdout, before, "nothing changed")

    nowhere = str(stack.dir / "nowhere.sock")
    for args in (["frobnicate"], ["delete-room"], ["delete-room", "1", "2"], ["status", "extra"],
                 ["delete-room", "07"], ["delete-room", "x"], ["members", "-1"], ["create-room", ""],
                 ["create-room", "x" * 101], ["create-room", "bad\x01title"], ["rename-room", lobby, ""],
                 ["set-staff-only", lobby, "maybe"], ["announce", ""], ["announce", "x" * 4097],
                 ["announce", "--level=loud", "x"], ["announce", "--room=07", "x"], ["kick", ""],
                 ["--json=yaml", "list-rooms"], ["--frobnicate", "status"], ["--address=", "status"],
                 ["--bus=", "status"], ["--bus=systemd", "status"], ["--bus=/run/bus", "status"]):
        p = ctl(*args, address=f"unix:path={nowhere}")
        check(p.returncode == 2 and p.stderr.strip() and p.stdout == "",
              f"usage error {args!r}: exit 2 with a message, before connecting", p)
    check.eq(ctl("list-rooms").stdout, before, "nothing changed by the usage errors")

    empty = stack.new_bus("empty")
    for args in (["status"], ["list-rooms"], ["create-room", "X"], ["members", "1"]):
        check_fails(check, ctl(*args, address=empty.address), 1, NOT_RUNNING, f"no daemon on the bus: {args[0]}")
    check_fails(check, ctl("status", address=f"unix:path={nowhere}"), 1, "Failed to connect to",
                "a bus that is not there")


def test_transports(check, ctl, bus):
    env = {"DBUS_SYSTEM_BUS_ADDRESS": bus.address, "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent"}
    check.eq(ctl("list-rooms", address=False, env=env).returncode, 0, "the system bus is the default")
    check.eq(ctl("--system", "list-rooms", address=False, env=env).returncode, 0, "--system")
    p = ctl("--user", "list-rooms", address=False, env=env)
    check(p.returncode == 1 and "session bus" in p.stderr, "--user talks to the session bus", p.stderr)
    env = {"DBUS_SESSION_BUS_ADDRESS": bus.address, "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent"}
    check.eq(ctl("--user", "list-rooms", address=False, env=env).returncode, 0, "--user on a session bus")
    # --bus= takes multichatd's bus= values as they are.
    check.eq(ctl("--bus=session", "list-rooms", address=False, env=env).returncode, 0, "--bus=session")
    p = ctl("--bus=system", "list-rooms", address=False, env=env)
    check(p.returncode == 1 and "system bus" in p.stderr, "--bus=system talks to the system bus", p.stderr)
    p = ctl(f"--bus={bus.address}", "list-rooms", address=False, env=env)
    check(p.returncode == 0 and p.stdout, "--bus=ADDRESS", p.stderr)


def complete(line):
    """What the bash completion offers for line (the cursor at its end)."""
    script = f"""
source {shlex.quote(BASH_COMPLETION)}
source {shlex.quote(str(COMPLETION))}
COMP_LINE={shlex.quote(line)}
COMP_POINT=${{#COMP_LINE}}
read -ra COMP_WORDS <<< "$COMP_LINE"
[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
_multichatctl multichatctl "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = dict(os.environ, PATH=f"{CTL.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    p = subprocess.run(["bash", "--norc", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    return sorted(w for w in p.stdout.split("\n") if w)


def test_completion(check, ctl, bus):
    if not os.path.exists(BASH_COMPLETION):
        check(True, f"bash completion not checked: {BASH_COMPLETION} missing (apt-get install bash-completion)")
        return
    ids = sorted(r["id"] for r in ctl.json("list-rooms"))
    a = f"--address={bus.address}"
    check.eq(complete("multichatctl de"), ["delete-room"], "completion: a verb")
    check.eq(complete("multichatctl --no-le"), ["--no-legend"], "completion: an option")
    check.eq(complete(f"multichatctl {a} delete-room "), ids, "completion: room ids from the daemon")
    check.eq(complete(f"multichatctl {a} set-staff-only {ids[0]} "), ["no", "yes"],
             "completion: set-staff-only's second argument")
    check.eq(complete(f"multichatctl {a} announce --room="), ids, "completion: --room= ids")
    check.eq(complete("multichatctl announce --level="), ["alert", "muted", "warning"],
             "completion: --level= values")
    check.eq(complete("multichatctl --bus="), ["session", "system"], "completion: --bus= values")
    check.eq(complete(f"multichatctl --bus={bus.address} members "), ids,
             "completion: room ids from the bus --bus= names")


def test_redis_gone(check, ctl, stack):
    stack.redis.kill()
    try:
        harness.wait_until(lambda: ctl.json("status")["redis_connected"] is False, 10 * SLOW,
                           what="RedisConnected false")
        check(True, "status --json shows Redis lost")
    except TimeoutError as e:
        check(False, "status --json shows Redis lost", str(e))
    check_fails(check, ctl("create-room", "During the outage"), 1, "Redis is unreachable",
                "create-room while Redis is down")


def test(stack, check):
    if not CTL.exists():
        raise harness.Skip(f"{CTL} is not built")
    d = stack.start_daemon()
    ctl = Ctl(d.bus)

    p = ctl("--version", address=False)
    check(p.returncode == 0 and p.stdout.startswith("multichatctl "), "--version", p)
    p = ctl("--help", address=False)
    check(p.returncode == 0 and all(v in p.stdout for v in (
        "status", "list-rooms", "create-room", "delete-room", "rename-room", "set-staff-only", "members",
        "connections", "announce", "kick")), "--help names every verb", p.stdout)

    test_status(check, ctl, d.bus)
    alice = d.ws("alice")
    alice.expect(lambda o: "rooms" in o, what="initial rooms list")
    lobby, staff, wide = test_create_and_list(check, ctl, d.bus, alice)
    test_members_and_connections(check, ctl, lobby, alice)
    test_changes_reach_clients(check, ctl, d.bus, lobby, staff, alice)
    test_kick_and_delete(check, ctl, d, lobby, wide)
    test_errors(check, ctl, stack, lobby)
    test_transports(check, ctl, d.bus)
    test_completion(check, ctl, d.bus)
    test_redis_gone(check, ctl, stack)
    check(not ctl.reports, "no sanitizer reports from multichatctl", "\n".join(ctl.reports))


harness.main(test)
