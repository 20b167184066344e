#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A room larger than a page of members, over two daemons: a join shows the
first 100 names and the count, "members" pages on in name order, and once
more than 100 are present the members hear the count (coalesced) instead of
a notice per arrival. Rooms up to 100 keep the v1 entered/left notices."""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import pamenv  # noqa: E402
from harness import ROOM_IFACE, SLOW, is_error, join, room_path  # noqa: E402

PAGE = 100
CROWD = 110
USERS = [pamenv.User(f"m{i:03d}", 20000 + i, "pw") for i in range(CROWD)] + \
        [pamenv.User("watcher", 19998, "watcher-pw"), pamenv.User("zoe", 19999, "zoe-pw"),
         pamenv.User("root", 0, os.urandom(12).hex(), home="/root")]


def members_page(ws, room, after=None, ref="p"):
    cmd = {"command": "members", "room": room, "ref": ref}
    if after is not None:
        cmd["after"] = after
    ws.send_json(cmd)
    obj, _ = ws.expect(lambda o: o.get("ref") == ref, 5 * SLOW, what=f"members reply {ref}")
    return obj


def test(stack, check):
    args = ["--login-attempts=10000"]
    d1 = stack.start_daemon(name="d1", args=args)
    d2 = stack.start_daemon(name="d2", own_bus=True, args=args)
    room = d1.create_room("Crowd")

    w = d1.ws(jar=d1.login("watcher", "watcher-pw"))
    w.expect(lambda o: "rooms" in o and any(r.get("id") == room for r in o["rooms"]), 5 * SLOW, what="room list")
    obj, _ = join(w, room)
    check.eq(obj.get("member_count"), 1, "an empty room's join counts the joiner")

    crowd = []
    for i in range(CROWD):
        d = d1 if i % 2 == 0 else d2
        c = d.ws(jar=d.login(f"m{i:03d}", "pw"))
        c.expect(lambda o: "rooms" in o and any(r.get("id") == room for r in o["rooms"]), 5 * SLOW,
                 what="room list")
        obj, _ = join(c, room)
        if "error" in obj:
            check(False, f"m{i:03d} joins", obj)
            return
        crowd.append(c)

    # Up to a page present: a notice each (99 arrivals after the watcher);
    # beyond it, the count, once a second at most.
    try:
        obj, _ = w.expect(lambda o: o.get("member_count") == CROWD + 1 and "join" not in o, 5 * SLOW,
                          what="the count with everyone in")
        check.eq(obj, {"member_count": CROWD + 1, "room": room}, "the watcher hears the count")
    except TimeoutError as e:
        check(False, "the watcher hears the count", str(e))
    seen = w.drain(0.5)
    entered = [o for o, _ in seen if o.get("msg_type") == 4]
    counts = [o["member_count"] for o, _ in seen if "member_count" in o and "join" not in o]
    check.eq(len(entered), PAGE - 1, "entered notices only while the room fit on a page")
    check(len(counts) <= 3 * SLOW + 3, "counts are coalesced, not one per arrival", counts)

    # A late joiner on the other daemon: the first page and the count.
    z = d2.ws(jar=d2.login("zoe", "zoe-pw"))
    obj, _ = join(z, room)
    total = CROWD + 2
    check.eq(obj.get("member_count"), total, "the join counts everyone present over both daemons")
    first = obj.get("members") or []
    check.eq(len(first), PAGE, "the join shows one page of names")
    check.eq(first, sorted(first), "in name order")

    # Paging through: every name once, in order, over both daemons.
    names = list(first)
    more = True
    pages = 1
    while more and pages < 10:
        page = members_page(z, room, after=names[-1], ref=f"p{pages}")
        names += page["members"]
        more = page["more"]
        pages += 1
    everyone = sorted([f"m{i:03d}" for i in range(CROWD)] + ["watcher", "zoe"])
    check.eq(names, everyone, "the pages hold everyone present, once each, in order")
    check.eq(pages, 2, "two pages for 112")
    page = members_page(z, room, after="m049", ref="mid")
    check.eq(page["members"][:2], ["m050", "m051"], "a page starts after the cursor")
    page = members_page(z, room, after="zz", ref="end")
    check.eq((page["members"], page["more"]), ([], False), "nothing after the last name")

    # Someone leaves: a count, not a notice.
    crowd.pop().close()
    try:
        w.expect(lambda o: o.get("member_count") == total - 1, 5 * SLOW, what="the count after a leave")
        check(True, "a leave in a large room is counted")
    except TimeoutError as e:
        check(False, "a leave in a large room is counted", str(e))
    check(not w.expect_none(lambda o: o.get("msg_type") == 5, 0.5), "no left notice in a large room")

    # Bad requests: a clear error, the connection goes on.
    z.send_json({"command": "members", "room": room, "after": "x" * 65, "ref": "long"})
    z.expect(is_error("BAD_REQUEST", "long"), 5 * SLOW, what="a too long cursor refused")
    z.send_json({"command": "members", "room": room, "after": 7, "ref": "num"})
    z.expect(is_error("BAD_REQUEST", "num"), 5 * SLOW, what="a number as cursor refused")
    other = d1.create_room("Elsewhere")
    z.send_json({"command": "members", "room": other, "ref": "out"})
    z.expect(is_error("ROOM_ACCESS_DENIED", "out"), 5 * SLOW, what="paging a room not joined refused")
    check(True, "bad members requests get clear errors")
    page = members_page(z, room, ref="after-errors")
    check.eq(len(page["members"]), PAGE, "the connection still pages after them")

    # D-Bus still lists everyone.
    try:
        listed = harness.wait_until(
            lambda: (lambda m: m if len(m) == total - 1 else None)(
                d1.bus.get_property("Members", path=room_path(room), iface=ROOM_IFACE)),
            5 * SLOW, what="Members over D-Bus")
        check.eq(sorted(listed), sorted(set(everyone) - {f"m{CROWD - 1:03d}"}), "Room.Members lists everyone present")
    except TimeoutError as e:
        check(False, "Room.Members lists everyone present", str(e))

    for c in crowd:
        c.close()
    check(d1.alive and d2.alive, "both daemons still run")


harness.main(test, timeout=(240 if harness.ASAN else 120), stack_args={"pam_users": USERS})
