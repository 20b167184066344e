#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""GET /metrics: 404 unless metrics-allow names the client's address (IPv4
and IPv6); the Prometheus text moves with real traffic (logins accepted,
refused and throttled, a message relayed, RATE_LIMITED refusals, a Redis
restart, a slow reader cut); and Debian's own prometheus scrapes it and
answers queries on it."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW, expect_message, join, send, wait_until  # noqa: E402
from wsclient import http, login_form, post_login  # noqa: E402

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
CONTENT_TYPE = "text/plain; version=0.0.4"


def parse(text):
    """{'name{labels}': value} of every sample; HELP/TYPE lines skipped."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


def scrape(d, check=None):
    r = d.http("GET", "/metrics")
    if check is not None:
        check.eq(r.status, 200, "GET /metrics from an allowed address is 200")
        check((r.header("Content-Type") or "").startswith(CONTENT_TYPE),
              "... as the Prometheus text format 0.0.4", r.header("Content-Type"))
    return parse(r.text) if r.status == 200 else None


def attempt_login(d, user, password):
    jar, csrf, r = login_form(d.base)
    return post_login(d.base, jar, user, password, csrf).status


def check_off(stack, check):
    d = stack.start_daemon()
    r = d.http("GET", "/metrics")
    check.eq(r.status, 404, "without metrics-allow, /metrics is 404")
    check("multichat_" not in r.text, "... and tells nothing", r.text[:200])
    d.stop()

    d = stack.start_daemon(args=["--metrics-allow=192.0.2.1 2001:db8::/32"])
    r = d.http("GET", "/metrics")
    check.eq(r.status, 404, "from 127.0.0.1, with metrics-allow=192.0.2.1 2001:db8::/32, /metrics is 404")
    check.eq(d.http("GET", "/healthz").status, 200, "... while the rest is served")
    d.stop()

    # IPv6: the same daemon on 127.0.0.1 and [::1], only ::1 allowed.
    with socket.socket(socket.AF_INET6) as sk:
        sk.bind(("::1", 0))
        port6 = sk.getsockname()[1]
    d = stack.start_daemon(args=["--metrics-allow=::1", f"--listen=[::1]:{port6}"])
    check.eq(d.http("GET", "/metrics").status, 404, "metrics-allow=::1: from 127.0.0.1, 404")
    r = http(f"http://[::1]:{port6}", "GET", "/metrics")
    check.eq(r.status, 200, "metrics-allow=::1: from ::1, 200")
    d.stop()


def check_counters(stack, d, check):
    m0 = scrape(d, check)
    if m0 is None:
        raise AssertionError("no metrics")
    check.eq(m0.get("multichat_connections"), 0, "no connections at first")
    check.eq(m0.get("multichat_ready"), 1, "ready")
    check.eq(m0.get("multichat_redis_connected"), 1, "Redis connected")
    check.eq(m0.get("multichat_redis_reconnects_total"), 0, "no reconnects yet")
    check.eq(m0.get('multichat_logins_total{result="accepted"}'), 0, "no logins yet")

    lobby = stack.create_room("Lobby")
    a = d.ws("alice")
    b = d.ws("bob")
    check.eq(attempt_login(d, "alice", "wrong"), 401, "a wrong password is 401")
    check.eq(attempt_login(d, "alice", "wrong again"), 429, "the fourth attempt from this address is 429")
    join(a, lobby)
    join(b, lobby)

    m = scrape(d)
    check.eq(m.get("multichat_connections"), 2, "two WebSockets open")
    check.eq(m.get("multichat_connections_opened_total"), 2, "two WebSockets opened")
    check.eq(m.get("multichat_rooms"), 1, "one room")
    check.eq(m.get('multichat_logins_total{result="accepted"}'), 2, "two logins accepted")
    check.eq(m.get('multichat_logins_total{result="refused"}'), 1, "one login refused")
    check.eq(m.get('multichat_logins_total{result="throttled"}'), 1, "one login throttled")

    send(a, lobby, "hello metrics")
    expect_message(b, lobby, "hello metrics", "alice")
    expect_message(a, lobby, "hello metrics", "alice")
    m = scrape(d)
    check.eq(m.get("multichat_messages_received_total"), 1, "one message came from Redis")
    check.eq(m.get("multichat_deliveries_total"), 2, "... delivered twice (bob, and alice's own copy)")

    time.sleep(1.2)
    for i in range(12):
        send(a, lobby, f"flood {i}", ref=f"f{i}")
    limited = 0
    deadline = time.monotonic() + 3 * SLOW
    while time.monotonic() < deadline:
        try:
            obj, _ = a.recv_json(0.5)
        except Exception:  # noqa: BLE001 (quiet for 0.5 s: done)
            break
        limited += obj.get("error") == "RATE_LIMITED"
    check(limited > 0, f"a flood of 12 sends met RATE_LIMITED ({limited})", limited)
    m = scrape(d)
    check.eq(m.get('multichat_refusals_total{reason="RATE_LIMITED"}'), limited,
             "refusals by RATE_LIMITED count what the client was told")
    check.eq(m.get('multichat_refusals_total{reason="BAD_REQUEST"}'), 0, "no BAD_REQUEST yet")
    a.send_json({"command": "frobnicate"})
    a.expect(lambda o: o.get("error") == "BAD_REQUEST", 5 * SLOW, what="BAD_REQUEST")
    m = scrape(d)
    check.eq(m.get('multichat_refusals_total{reason="BAD_REQUEST"}'), 1, "an unknown command counts as BAD_REQUEST")
    return a, b


def check_redis_restart(stack, d, check):
    stack.redis.kill(save=True)
    try:
        wait_until(lambda: (scrape(d) or {}).get("multichat_redis_connected") == 0, 10 * SLOW,
                   what="redis_connected 0")
        check(True, "Redis killed: multichat_redis_connected is 0")
    except TimeoutError:
        check(False, "Redis killed: multichat_redis_connected is 0")
    stack.redis.restart()
    try:
        wait_until(lambda: (scrape(d) or {}).get("multichat_redis_reconnects_total") == 1, 15 * SLOW,
                   what="one reconnect")
        check(True, "Redis back: multichat_redis_reconnects_total is 1")
    except TimeoutError:
        check(False, "Redis back: multichat_redis_reconnects_total is 1", scrape(d))
    check.eq((scrape(d) or {}).get("multichat_redis_connected"), 1, "... and connected again")


def check_slow_reader(stack, check):
    """bob reads nothing while alice sends big messages: once his send
    queue is full he is cut with 1013, and counted."""
    d = stack.start_daemon(name="slow", args=[
        "--metrics-allow=127.0.0.1", "--rate-limit=10000", "--rate-burst=100000",
        "--max-message-bytes=100000", "--send-queue-frames=8", "--history-size=10", "--history-on-join=10"])
    room = stack.create_room("Firehose")
    a = d.ws("alice")
    b = d.ws("bob")
    join(a, room)
    join(b, room)
    big = "x" * 65000
    cut = 0
    # Two at a time, read by alice before the next two: her own queue never
    # holds more than two, however slowly the daemon runs (ASan), while
    # bob's fills once the loopback buffers (~10 MB) do.
    for _ in range(300):    # at most 39 MB
        for _ in range(2):
            send(a, room, big)
        a.drain(quiet=0.05, timeout=5 * SLOW)
        cut = (scrape(d) or {}).get("multichat_slow_readers_cut_total", 0)
        if cut:
            break
    check.eq(cut, 1, "bob, who reads nothing, is cut once: multichat_slow_readers_cut_total is 1")
    try:
        check.eq(b.wait_close(20 * SLOW), 1013, "... with close code 1013")
    except (TimeoutError, OSError) as e:
        check(False, "... with close code 1013", repr(e))
    check(a.is_open(), "alice, who reads, stays connected")
    m = scrape(d) or {}
    check.eq(m.get("multichat_connections"), 1, "one WebSocket left")
    d.stop()


def api_get(port, path, **params):
    url = f"http://127.0.0.1:{port}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def query_value(port, expr):
    try:
        res = api_get(port, "/api/v1/query", query=expr)["data"]["result"]
    except (OSError, ValueError, KeyError):
        return None
    return float(res[0]["value"][1]) if len(res) == 1 else None


def check_prometheus(stack, d, check):
    port = harness._free_port()
    conf = stack.dir / "prometheus.yml"
    conf.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: multichat\n"
        "    scrape_timeout: 1s\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{d.port}']\n")
    log = open(stack.dir / "prometheus.log", "wb")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={conf}", f"--web.listen-address=127.0.0.1:{port}",
                             f"--storage.tsdb.path={stack.dir / 'tsdb'}"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            wait_until(lambda: query_value(port, "multichat_connections") == 2, 40 * SLOW, interval=0.5,
                       what="prometheus sees 2 connections")
            check(True, "prometheus scraped multichat_connections = 2")
        except TimeoutError:
            targets = None
            try:
                targets = api_get(port, "/api/v1/targets")
            except (OSError, ValueError):
                pass
            check(False, "prometheus scraped multichat_connections = 2",
                  f"{targets}\n{(stack.dir / 'prometheus.log').read_text()[-2000:]}")
            return
        check.eq(query_value(port, 'up{job="multichat"}'), 1, "the target is up")
        check.eq(query_value(port, 'multichat_logins_total{result="accepted"}'), 2,
                 "prometheus reads the labelled login counter")
        want = scrape(d)["multichat_deliveries_total"]
        check(want >= 2, f"deliveries moved with the flood ({want})", want)
        check.eq(query_value(port, "multichat_deliveries_total"), want, "... and prometheus reads the same")
        targets = api_get(port, "/api/v1/targets")["data"]["activeTargets"]
        check(targets and targets[0].get("lastError") == "", "the last scrape had no error", targets)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test(stack, check):
    if not os.access(PROMETHEUS, os.X_OK):
        raise harness.Skip("prometheus is not installed (apt-get install prometheus)")
    check_off(stack, check)

    d = stack.start_daemon(args=["--metrics-allow=127.0.0.1 ::1", "--login-attempts=3",
                                 "--rate-limit=2", "--rate-burst=2"])
    a, b = check_counters(stack, d, check)
    check_prometheus(stack, d, check)
    check_redis_restart(stack, d, check)
    check(d.alive, "the daemon is still running")
    d.stop()
    check_slow_reader(stack, check)


harness.main(test, timeout=150 if harness.ASAN else 90)
