#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The D-Bus interface as root: rooms, announcements, kicks, connections,
properties, writable room properties, named errors, introspection."""

import json
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import (ERROR_INVALID_ARGUMENT, ERROR_NO_SUCH_ROOM, ROOM_IFACE, SLOW, BusError,  # noqa: E402
                     expect_message, is_msg, join, room_path, send)


def rooms_push_has(ws, pred, what, timeout=5.0):
    return ws.expect(lambda o: "rooms" in o and pred(o["rooms"]), timeout * SLOW, what=what)


def test(stack, check):
    d = stack.start_daemon()
    bus = d.bus

    # --- introspection ---------------------------------------------------
    p = d.busctl("introspect", harness.BUS_NAME, harness.MANAGER_PATH)
    check(p.returncode == 0 and "org.multichat.Chat1.Manager" in p.stdout and ".CreateRoom" in p.stdout,
          "busctl introspect shows the Manager interface", p.stderr or p.stdout[:500])
    for member in (".DeleteRoom", ".ListRooms", ".GetRoom", ".Announce", ".KickUser", ".ListConnections",
                   ".Version", ".Connections", ".RedisConnected", ".MessagesRelayed"):
        check(member in p.stdout, f"introspection lists {member[1:]}")
    check("org.freedesktop.DBus.ObjectManager" in p.stdout, "the manager object has ObjectManager")

    # --- properties ------------------------------------------------------
    v = bus.get_property("Version")
    check(isinstance(v, str) and v, "Version is a non-empty string", v)
    check.eq(bus.get_property("Connections"), 0, "Connections is 0 before anyone connects")
    check.eq(bus.get_property("RedisConnected"), True, "RedisConnected is true")
    relayed0 = bus.get_property("MessagesRelayed")
    check(isinstance(relayed0, int), "MessagesRelayed is a number", relayed0)

    # --- CreateRoom / GetRoom / ListRooms --------------------------------
    a = d.ws("alice")
    a.expect(lambda o: "rooms" in o, what="initial rooms list")
    data = bus.call("CreateRoom", "sb", "Lobby", False)
    lobby, path = data[0], data[1]
    check(lobby.isdigit() and path == room_path(lobby), "CreateRoom returns (id, path)", data)
    try:
        rooms_push_has(a, lambda rs: any(r.get("id") == lobby and r.get("title") == "Lobby" for r in rs),
                       "rooms push with Lobby")
        check(True, "a connected client is pushed the new room at once")
    except TimeoutError as e:
        check(False, "a connected client is pushed the new room at once", str(e))
    check.eq(bus.call("GetRoom", "s", lobby), [path], "GetRoom returns the room's path")
    other = bus.call("CreateRoom", "sb", "Other", False)[0]
    staff = bus.call("CreateRoom", "sb", "Staff", True)[0]
    rooms = bus.call("ListRooms")[0]
    byid = {r[0]: r for r in rooms}
    check(byid.get(lobby) == [lobby, "Lobby", False, 0], "ListRooms has (id, title, staff_only, members)",
          rooms)
    check(byid.get(staff, [None, None, None])[2] is True, "ListRooms shows staff_only", rooms)

    out = d.busctl("--json=short", "call", harness.BUS_NAME, harness.MANAGER_PATH,
                   "org.freedesktop.DBus.ObjectManager", "GetManagedObjects")
    check(out.returncode == 0 and path in out.stdout and ROOM_IFACE in out.stdout,
          "GetManagedObjects lists the room objects", out.stderr or out.stdout[:300])
    check.eq(bus.get_property("Id", path=path, iface=ROOM_IFACE), lobby, "Room.Id")
    check.eq(bus.get_property("Title", path=path, iface=ROOM_IFACE), "Lobby", "Room.Title")
    check.eq(bus.get_property("StaffOnly", path=path, iface=ROOM_IFACE), False, "Room.StaffOnly")
    p = d.busctl("introspect", harness.BUS_NAME, path)
    check(p.returncode == 0 and ROOM_IFACE in p.stdout, "busctl introspect of a room object works")

    # --- named errors ----------------------------------------------------
    check.eq(bus.call_error("GetRoom", "999999"), ERROR_NO_SUCH_ROOM, "GetRoom of no such room: NoSuchRoom")
    check.eq(bus.call_error("DeleteRoom", "999999"), ERROR_NO_SUCH_ROOM, "DeleteRoom of no such room: NoSuchRoom")
    check(bus.call_error("GetRoom", "abc") in (ERROR_NO_SUCH_ROOM, ERROR_INVALID_ARGUMENT),
          "GetRoom of a malformed id: NoSuchRoom or InvalidArgument")
    check.eq(bus.call_error("CreateRoom", "", False), ERROR_INVALID_ARGUMENT, "CreateRoom with an empty title")
    check.eq(bus.call_error("CreateRoom", "x" * 1000, False), ERROR_INVALID_ARGUMENT,
             "CreateRoom with a 1000-byte title")
    check.eq(bus.call_error("CreateRoom", "bad\x01title", False), ERROR_INVALID_ARGUMENT,
             "CreateRoom with a control character")
    check.eq(bus.call_error("Announce", lobby, 0, "x"), ERROR_INVALID_ARGUMENT, "Announce level 0")
    check.eq(bus.call_error("Announce", lobby, 4, "x"), ERROR_INVALID_ARGUMENT, "Announce level 4")
    check.eq(bus.call_error("Announce", "999999", 1, "x"), ERROR_NO_SUCH_ROOM, "Announce to no such room")
    check.eq(bus.call_error("Announce", lobby, 1, "x" * 5000), ERROR_INVALID_ARGUMENT,
             "Announce of a 5000-byte text")
    check.eq(bus.set_property_error(path, "Title", "string:"), ERROR_INVALID_ARGUMENT, "setting an empty Title")
    check(bus.set_property_error(path, "Id", "string:5") is not None, "Id is read-only")

    # --- members and clients ---------------------------------------------
    b = d.ws("bob")
    b.expect(lambda o: "rooms" in o, what="initial rooms list")
    join(a, lobby)
    join(a, other)
    join(b, lobby)
    join(b, other)
    check.eq(bus.get_property("Connections"), 2, "Connections counts the 2 WebSockets")
    try:
        harness.wait_until(
            lambda: sorted(bus.get_property("Members", path=path, iface=ROOM_IFACE)) == ["alice", "bob"],
            3 * SLOW, what="Members")
        check(True, "Room.Members has alice and bob")
    except TimeoutError as e:
        check(False, "Room.Members has alice and bob", str(e))
    rooms = {r[0]: r for r in bus.call("ListRooms")[0]}
    check.eq(rooms[lobby][3], 2, "ListRooms counts 2 members in Lobby")

    conns = bus.call("ListConnections")[0]
    users = sorted(c[0] for c in conns)
    check.eq(users, ["alice", "bob"], "ListConnections lists alice and bob")
    for c in conns:
        check("127.0.0.1" in c[1], f"ListConnections peer address of {c[0]}", c[1])
        check(abs(c[2] / 1e6 - time.time()) < 120, f"ListConnections since (µs, realtime) of {c[0]}", c[2])
        check(sorted(c[3]) == sorted([lobby, other]), f"ListConnections rooms of {c[0]}", c[3])

    send(a, lobby, "count me")
    expect_message(b, lobby, "count me", "alice")
    try:
        harness.wait_until(lambda: bus.get_property("MessagesRelayed") > relayed0, 3 * SLOW,
                           what="MessagesRelayed to grow")
        check(True, "MessagesRelayed grows with a message")
    except TimeoutError as e:
        check(False, "MessagesRelayed grows with a message", str(e))

    # --- Announce --------------------------------------------------------
    for level in (1, 2, 3):
        bus.call("Announce", "sus", lobby, level, f"notice level {level}")
        obj, raw = a.expect(is_msg(lobby, f"notice level {level}", msg_type=level), 5 * SLOW,
                            what=f"announcement level {level}")
        check.eq(raw, json.dumps({"msg_type": level, "room": lobby, "message": f"notice level {level}"}),
                 f"Announce level {level} → the exact v1 notice")
    bus.call("Announce", "sus", "", 2, "to everyone")
    for ws, who in ((a, "alice"), (b, "bob")):
        for room in (lobby, other):
            try:
                ws.expect(is_msg(room, "to everyone", msg_type=2), 5 * SLOW, what="global announcement")
                check(True, f"Announce to \"\" reaches {who} in room {room}")
            except TimeoutError as e:
                check(False, f"Announce to \"\" reaches {who} in room {room}", str(e))

    # --- writable room properties ----------------------------------------
    bus.set_property("Title", "s", "Main hall", path)
    check.eq(bus.get_property("Title", path=path, iface=ROOM_IFACE), "Main hall", "Title can be set")
    for ws, who in ((a, "alice"), (b, "bob")):
        try:
            rooms_push_has(ws, lambda rs: any(r.get("id") == lobby and r.get("title") == "Main hall" for r in rs),
                           "rooms push with the new title")
            check(True, f"{who} is pushed the new title")
        except TimeoutError as e:
            check(False, f"{who} is pushed the new title", str(e))
    check.eq({r[0]: r[1] for r in bus.call("ListRooms")[0]}.get(lobby), "Main hall",
             "ListRooms shows the new title")

    bus.set_property("StaffOnly", "b", True, room_path(other))
    check.eq(bus.get_property("StaffOnly", path=room_path(other), iface=ROOM_IFACE), True, "StaffOnly can be set")
    try:
        obj, raw = b.expect(lambda o: o.get("leave") == other, 5 * SLOW, what="bob removed from the room")
        check(True, "turning StaffOnly on removes bob (not staff) from the room", raw)
    except TimeoutError as e:
        check(False, "turning StaffOnly on removes bob (not staff) from the room", str(e))
    check(not a.expect_none(lambda o: o.get("leave") == other, 0.5), "alice (staff) stays in it")
    try:
        rooms_push_has(b, lambda rs: any(r.get("id") == other and r.get("staff_only") is True for r in rs)
                       or all(r.get("id") != other for r in rs), "rooms push after StaffOnly")
        check(True, "clients are pushed the changed room list")
    except TimeoutError as e:
        check(False, "clients are pushed the changed room list", str(e))
    obj, _ = join(b, other)
    check.eq(obj.get("error"), "ROOM_ACCESS_DENIED", "bob can no longer join it")

    # --- KickUser --------------------------------------------------------
    bus.call("KickUser", "ss", "bob", lobby)
    try:
        obj, raw = b.expect(lambda o: o.get("leave") == lobby, 5 * SLOW, what="kick")
        check.eq(raw, json.dumps({"leave": lobby, "reason": "kicked"}), "KickUser(bob, room): bob gets the kick")
    except TimeoutError as e:
        check(False, "KickUser(bob, room): bob gets the kick", str(e))
    check(b.is_open(), "a kick from one room leaves the connection open")
    b2 = d.ws("bob")
    bus.call("KickUser", "ss", "bob", "")
    for ws, what in ((b, "first"), (b2, "second")):
        try:
            code = ws.wait_close(5 * SLOW)
            check(True, f"KickUser(bob, \"\") closes bob's {what} connection (code {code})")
        except Exception as e:  # noqa: BLE001
            check(False, f"KickUser(bob, \"\") closes bob's {what} connection", repr(e))
    check(a.is_open(), "alice's connection is untouched by kicking bob")
    try:
        harness.wait_until(lambda: bus.get_property("Connections") == 1, 3 * SLOW, what="Connections 1")
        check(True, "Connections drops to 1")
    except TimeoutError as e:
        check(False, "Connections drops to 1", str(e))

    # --- DeleteRoom and Room.Delete --------------------------------------
    bus.call("DeleteRoom", "s", lobby)
    try:
        obj, raw = a.expect(lambda o: o.get("leave") == lobby, 5 * SLOW, what="leave after delete")
        check.eq(raw, json.dumps({"leave": lobby, "reason": "deleted"}),
                 "DeleteRoom: members get {\"leave\": id, \"reason\": \"deleted\"}")
    except TimeoutError as e:
        check(False, "DeleteRoom: members get leave with reason deleted", str(e))
    try:
        rooms_push_has(a, lambda rs: all(r.get("id") != lobby for r in rs), "rooms push without the room")
        check(True, "clients are pushed a room list without it")
    except TimeoutError as e:
        check(False, "clients are pushed a room list without it", str(e))
    check.eq(bus.call_error("GetRoom", lobby), ERROR_NO_SUCH_ROOM, "GetRoom of the deleted room: NoSuchRoom")
    check(lobby not in [r[0] for r in bus.call("ListRooms")[0]], "ListRooms no longer has it")
    obj, _ = join(a, lobby)
    check.eq(obj.get("error"), "ROOM_INVALID", "joining the deleted room: ROOM_INVALID")

    bus.call("Delete", "", path=room_path(other), iface=ROOM_IFACE)
    try:
        obj, raw = a.expect(lambda o: o.get("leave") == other, 5 * SLOW, what="leave after Room.Delete")
        check.eq(obj.get("reason"), "deleted", "Room.Delete(): members get leave, reason deleted")
    except TimeoutError as e:
        check(False, "Room.Delete(): members get leave, reason deleted", str(e))
    check.eq(bus.call_error("GetRoom", other), ERROR_NO_SUCH_ROOM, "the room object is gone")
    try:
        bus.get_property("Title", path=room_path(other), iface=ROOM_IFACE)
        check(False, "reading a deleted room's property fails")
    except BusError:
        check(True, "reading a deleted room's property fails")

    check(a.is_open(), "alice's connection survived all of it")
    check(d.alive, "the daemon is still running")


harness.main(test)
