#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The browser side of the system test, run by tests/system/run.py on the
host inside the container's network namespace (`nsenter -t PID -n`), so the
container needs no Python: the container has a private network and only
its loopback reaches the daemon.

One subcommand per call; each prints JSON lines on stdout (the last one is
the result) and exits 0 unless its arguments were wrong:

  get PATH                       one GET, {"status": N} or {"error": ...}
  login USER PASSWORD            the browser's login: GET /login, POST /login
  join USER PASSWORD ROOM        login, WebSocket, join ROOM: the first reply
  say USER PASSWORD ROOM TEXT    login, join ROOM, send TEXT: the message as
                                 it came back to its author
  write USER PASSWORD ROOM N REF
                                 login, join ROOM, send N messages one after
                                 the other ("USER 0", ...), with the refs
                                 REF0, REF1, ... (a ref sent again is
                                 answered, not stored again): the session's
                                 cookies and the ids acknowledged, in order
  read COOKIES ROOM              with those cookies (JSON) and no login:
                                 GET /api/session, then the WebSocket's
                                 join reply for ROOM (with its history)
  burst N                        N simultaneous connections, one GET each
  load USER PASSWORD ROOM        a logged-in WebSocket client in ROOM, then
                                 many short HTTP connections until a line
                                 "stop" arrives on stdin (run.py restarts the
                                 service meanwhile); see load()
"""

import json
import os
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from wsclient import WS, WSClosed, WSRefused, http, login_form, post_login  # noqa: E402

BASE = os.environ.get("MULTICHAT_BASE", "http://127.0.0.1:8080")
SESSION_COOKIE = "multichat_session"
CSRF_COOKIE = "multichat_csrf"


def out(obj):
    print(json.dumps(obj), flush=True)


def describe(e):
    return f"{type(e).__name__}: {e}"


def do_login(user, password):
    """Returns (result dict, cookie jar)."""
    jar, csrf, r = login_form(BASE)
    res = {"form_status": r.status, "csrf_cookie": CSRF_COOKIE in jar,
           "csrf_input": csrf is not None}
    if r.status != 200 or csrf is None:
        return res, jar
    r = post_login(BASE, jar, user, password, csrf)
    res.update(status=r.status, location=r.header("Location"),
               session_cookie=SESSION_COOKIE in jar,
               retry_after=r.header("Retry-After"))
    if r.status != 303:
        res["body"] = r.text[:300]
    return res, jar


def join_room(ws, room, timeout=5.0):
    """Sends join and returns the first reply about that room (join or error)."""
    ws.send_json({"command": "join", "room": room})
    obj, _ = ws.expect(lambda o: isinstance(o, dict) and
                       (str(o.get("join")) == room or "error" in o),
                       timeout=timeout, what=f"reply to joining {room}")
    return obj


def cmd_get(path):
    try:
        r = http(BASE, "GET", path)
        out({"status": r.status, "location": r.header("Location")})
    except OSError as e:
        out({"error": describe(e)})


def cmd_login(user, password):
    try:
        res, _ = do_login(user, password)
        out(res)
    except OSError as e:
        out({"error": describe(e)})


def cmd_join(user, password, room):
    try:
        res, jar = do_login(user, password)
        if res.get("status") != 303:
            out({"login": res})
            return
        with WS.connect(BASE, cookies=jar) as ws:
            out({"login": res, "reply": join_room(ws, room)})
    except (OSError, WSClosed, WSRefused, TimeoutError, ValueError) as e:
        out({"error": describe(e)})


def cmd_say(user, password, room, text):
    try:
        res, jar = do_login(user, password)
        if res.get("status") != 303:
            out({"login": res})
            return
        with WS.connect(BASE, cookies=jar) as ws:
            joined = join_room(ws, room)
            if str(joined.get("join")) != room:
                out({"login": res, "join": joined})
                return
            ws.send_json({"command": "send", "room": room, "message": text})
            obj, _ = ws.expect(lambda o: isinstance(o, dict) and
                               (o.get("message") == text or "error" in o),
                               timeout=5.0, what="the message back")
            out({"login": res, "join": joined, "message": obj})
    except (OSError, WSClosed, WSRefused, TimeoutError, ValueError) as e:
        out({"error": describe(e)})


def cmd_write(user, password, room, n, ref_prefix):
    try:
        res, jar = do_login(user, password)
        if res.get("status") != 303:
            out({"login": res})
            return
        ids = []
        with WS.connect(BASE, cookies=jar) as ws:
            joined = join_room(ws, room)
            if str(joined.get("join")) != room:
                out({"login": res, "join": joined})
                return
            for i in range(n):
                ref = f"{ref_prefix}{i}"
                ws.send_json({"command": "send", "room": room, "message": f"{user} {i}", "ref": ref})
                obj, _ = ws.expect(lambda o: isinstance(o, dict) and o.get("ref") == ref,
                                   timeout=5.0, what=f"the answer to {ref}")
                if obj.get("ok") is not True or not obj.get("id"):
                    out({"cookies": jar, "ids": ids, "error": obj})
                    return
                ids.append(obj["id"])
        out({"cookies": jar, "ids": ids})
    except (OSError, WSClosed, WSRefused, TimeoutError, ValueError) as e:
        out({"error": describe(e)})


def cmd_read(cookies, room):
    try:
        jar = json.loads(cookies)
        r = http(BASE, "GET", "/api/session", cookies=jar)
        res = {"session_status": r.status,
               "session": r.json() if r.status == 200 else r.text[:200]}
        if r.status != 200:
            out(res)
            return
        with WS.connect(BASE, cookies=jar) as ws:
            res["join"] = join_room(ws, room)
        out(res)
    except (OSError, WSClosed, WSRefused, TimeoutError, ValueError) as e:
        out({"error": describe(e)})


def one_request():
    """One HTTP request on a new connection. None when answered with 200,
    else what went wrong."""
    try:
        r = http(BASE, "GET", "/login", timeout=15.0)
    except Exception as e:      # refused, reset, timeout, bad status line, short body
        return describe(e)
    if r.status != 200:
        return f"HTTP {r.status}"
    return None


def cmd_burst(n):
    """n connections at once, each one GET /login: how many got a 200."""
    results = ["no answer within 30 s"] * n
    start = threading.Event()

    def one(i):
        start.wait()
        results[i] = one_request()

    pool = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in pool:
        t.start()
    start.set()
    for t in pool:
        t.join(30)
    errors = [r for r in results if r is not None]
    out({"total": n, "ok": n - len(errors), "failures": errors[:10]})


def load(user, password, room, threads=16):
    """A logged-in WebSocket in ROOM prints {"ready": true}; then `threads`
    threads open new connections (GET /login) back to back until "stop" is
    read from stdin. Reports every connection that got no 200 answer, what
    happened to the open WebSocket, and whether it can reconnect with the
    same session cookie afterwards (sessions live in Redis)."""
    res, jar = do_login(user, password)
    if res.get("status") != 303:
        out({"error": f"login failed: {res}"})
        return
    ws = WS.connect(BASE, cookies=jar)
    first = join_room(ws, room)
    stop = threading.Event()
    lock = threading.Lock()
    stats = {"total": 0, "ok": 0, "failed": 0, "failures": [], "first_failure_at": None}
    t0 = time.monotonic()

    def worker():
        while not stop.is_set():
            err = one_request()
            with lock:
                stats["total"] += 1
                if err is None:
                    stats["ok"] += 1
                else:
                    if stats["first_failure_at"] is None:
                        stats["first_failure_at"] = round(time.monotonic() - t0, 3)
                    stats["failed"] += 1
                    if len(stats["failures"]) < 20:
                        stats["failures"].append(err)

    ws_result = {}

    def watch_ws():
        try:
            ws_result["close_code"] = ws.wait_close(timeout=60)
        except (OSError, WSClosed) as e:
            ws_result["error"] = describe(e)
        ws_result["closed_at"] = round(time.monotonic() - t0, 3)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    watcher = threading.Thread(target=watch_ws, daemon=True)
    watcher.start()
    for t in pool:
        t.start()
    out({"ready": True, "join": first})
    deadline = time.monotonic() + 60
    for line in sys.stdin:
        if line.strip() == "stop" or time.monotonic() > deadline:
            break
    stop.set()
    for t in pool:
        t.join(20)
    watcher.join(5)
    stats["seconds"] = round(time.monotonic() - t0, 3)
    stats["ws"] = ws_result
    # The same cookie again: a restart must not log anybody out.
    try:
        with WS.connect(BASE, cookies=jar) as ws2:
            stats["rejoin"] = join_room(ws2, room)
    except (OSError, WSClosed, WSRefused, TimeoutError, ValueError) as e:
        stats["rejoin"] = {"error": describe(e)}
    out(stats)


def main(argv):
    socket.setdefaulttimeout(15)
    if len(argv) == 2 and argv[0] == "get":
        cmd_get(argv[1])
    elif len(argv) == 3 and argv[0] == "login":
        cmd_login(argv[1], argv[2])
    elif len(argv) == 2 and argv[0] == "burst":
        cmd_burst(int(argv[1]))
    elif len(argv) == 4 and argv[0] == "join":
        cmd_join(argv[1], argv[2], argv[3])
    elif len(argv) == 5 and argv[0] == "say":
        cmd_say(*argv[1:])
    elif len(argv) == 6 and argv[0] == "write":
        cmd_write(argv[1], argv[2], argv[3], int(argv[4]), argv[5])
    elif len(argv) == 3 and argv[0] == "read":
        cmd_read(argv[1], argv[2])
    elif len(argv) == 4 and argv[0] == "load":
        try:
            load(argv[1], argv[2], argv[3])
        except (OSError, WSClosed, WSRefused, TimeoutError, ValueError) as e:
            out({"error": describe(e)})
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
