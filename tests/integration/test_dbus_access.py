#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Who may administer over D-Bus. On a bus with the project's policy, an
unprivileged caller (uid 65534) may read and list but is refused
(AccessDenied) everything that changes state. On a bus whose policy lets
anyone through, the daemon's own check refuses them too, and accepts a
member of the admin group."""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import ERROR_ACCESS_DENIED, NOBODY, ROOM_IFACE, room_path  # noqa: E402
import pamenv  # noqa: E402

CAROL = 1003    # in multichat-admin
ALICE = 1001    # staff, not admin
ADMIN_GID = pamenv.DEFAULT_GROUPS["multichat-admin"]

USERS = list(pamenv.DEFAULT_USERS) + [pamenv.User("carol", CAROL, "carol-pw", groups=("multichat-admin",))]


def refusals(check, bus, room, uid, who, how):
    path = room_path(room)
    for member, args, kw in [
            ("CreateRoom", ("Nope", False), {}),
            ("DeleteRoom", (room,), {}),
            ("Announce", (room, 1, "nope"), {}),
            ("KickUser", ("alice", ""), {}),
            ("ListConnections", (), {}),
            ("Delete", (), {"path": path, "iface": ROOM_IFACE})]:
        check.eq(bus.call_error(member, *args, uid=uid, **kw), ERROR_ACCESS_DENIED,
                 f"{who}: {member} is refused with AccessDenied ({how})")
    check.eq(bus.set_property_error(path, "Title", "string:Hacked", uid=uid), ERROR_ACCESS_DENIED,
             f"{who}: setting Room.Title is refused ({how})")
    check.eq(bus.set_property_error(path, "StaffOnly", "boolean:true", uid=uid), ERROR_ACCESS_DENIED,
             f"{who}: setting Room.StaffOnly is refused ({how})")


def allowed_reads(check, bus, room, uid, who):
    try:
        rooms = bus.call("ListRooms", uid=uid)[0]
        check(room in [r[0] for r in rooms], f"{who}: ListRooms is allowed")
    except harness.BusError as e:
        check(False, f"{who}: ListRooms is allowed", str(e))
    try:
        check.eq(bus.call("GetRoom", "s", room, uid=uid), [room_path(room)], f"{who}: GetRoom is allowed")
    except harness.BusError as e:
        check(False, f"{who}: GetRoom is allowed", str(e))
    for prop in ("Version", "Connections", "RedisConnected"):
        try:
            bus.get_property(prop, uid=uid)
            check(True, f"{who}: reading {prop} is allowed")
        except harness.BusError as e:
            check(False, f"{who}: reading {prop} is allowed", str(e))
    try:
        check.eq(bus.get_property("Title", path=room_path(room), iface=ROOM_IFACE, uid=uid), "Lobby",
                 f"{who}: reading Room.Title is allowed")
    except harness.BusError as e:
        check(False, f"{who}: reading Room.Title is allowed", str(e))
    p = bus.busctl("introspect", harness.BUS_NAME, harness.MANAGER_PATH, uid=uid)
    check(p.returncode == 0, f"{who}: introspection is allowed", p.stderr)


def test(stack, check):
    # 1. the project's bus policy is the first fence
    d = stack.start_daemon()
    room = stack.create_room("Lobby")
    refusals(check, d.bus, room, NOBODY, "nobody", "bus policy")
    allowed_reads(check, d.bus, room, NOBODY, "nobody")
    check.eq(d.bus.get_property("Title", path=room_path(room), iface=ROOM_IFACE), "Lobby",
             "the room is untouched")
    check(room in [r[0] for r in d.bus.call("ListRooms")[0]], "the room still exists")

    # an admin-group member (kernel groups as after a login) passes both
    try:
        data = d.bus.call("CreateRoom", "sb", "Carol's first", False, uid=(CAROL, [ADMIN_GID]))
        d.bus.call("DeleteRoom", "s", data[0], uid=(CAROL, [ADMIN_GID]))
        check(True, "carol (in multichat-admin) may create and delete rooms through the bus policy")
    except harness.BusError as e:
        check(False, "carol (in multichat-admin) may create and delete rooms through the bus policy", str(e))

    # 2. the daemon's own check, with the bus letting everything through
    d2 = stack.start_daemon(name="open", bus_args={"open_policy": True})
    bus = d2.bus
    refusals(check, bus, room, NOBODY, "nobody", "daemon check")
    refusals(check, bus, room, ALICE, "alice (uid 1001, not admin)", "daemon check")
    allowed_reads(check, bus, room, NOBODY, "nobody (open bus)")
    check.eq(bus.get_property("Title", path=room_path(room), iface=ROOM_IFACE), "Lobby", "the room is untouched")

    try:
        data = bus.call("CreateRoom", "sb", "Carol's", False, uid=CAROL)
        check(True, "carol (in multichat-admin by NSS, no kernel groups) may CreateRoom")
        bus.call("Announce", "sus", data[0], 1, "hello", uid=CAROL)
        check(True, "carol may Announce")
        bus.call("DeleteRoom", "s", data[0], uid=CAROL)
        check(True, "carol may DeleteRoom")
    except harness.BusError as e:
        check(False, "carol (in multichat-admin) may administer", str(e))
    check(d.alive and d2.alive, "the daemons are still running")


harness.main(test, stack_args={"pam_users": USERS})
