#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The daemon on a Redis Cluster (three masters, three replicas), seeded
with every node: it becomes ready, a login stores the session on the
master of the session key's slot, and /api/session finds it. The master
that holds it is killed: /healthz answers 503 until its replica is
promoted and the daemon has connected to it, then 200, and the session is
still there."""

import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster  # noqa: E402
import harness  # noqa: E402
from harness import SLOW  # noqa: E402
from wsclient import cookie_header  # noqa: E402

SESSION_COOKIE = "multichat_session"


def session_user(d, jar):
    r = d.http("GET", "/api/session", headers={"Cookie": cookie_header(jar)})
    return r.status, (r.json().get("username") if r.status == 200 else None)


def test(stack, check):
    cl = cluster.Cluster(stack.dir)
    try:
        cl.start()
    finally:
        stack.more_redis.extend(cl.nodes)   # stopped with the stack
    d = stack.start_daemon(args=[f"--redis-cluster={a}" for a in cl.addresses])
    check.eq(d.http("GET", "/healthz").status, 200, "/healthz 200 on the cluster")

    jar = d.login("alice")
    check.eq(session_user(d, jar), (200, "alice"), "/api/session knows alice")
    key = f"mc:session:{jar[SESSION_COOKIE]}"
    m = cl.master_of(cluster.key_slot(key))
    check.eq(cl.nodes[m].command("EXISTS", key), 1, "the session is on the master of its slot")
    # Replication is asynchronous: the replica has it before the kill.
    check.eq(cl.nodes[m].command("WAIT", 1, 5000), 1, "the replica acknowledged it")

    t = time.monotonic()
    cl.kill(m)
    try:
        harness.wait_until(lambda: d.http("GET", "/healthz").status == 503, 10 * SLOW, what="/healthz 503")
        check(True, "/healthz 503 while a master is gone")
    except TimeoutError as e:
        check(False, "/healthz 503 while a master is gone", str(e))
    harness.wait_until(lambda: d.http("GET", "/healthz").status == 200, 30 * SLOW, what="/healthz 200")
    harness.log(f"# ready again {time.monotonic() - t:.1f} s after the master was killed")
    check(cl.master_of(cluster.key_slot(key)) != m, "a replica serves the session's slot now")
    check.eq(session_user(d, jar), (200, "alice"), "the session survived the failover")
    check(d.alive, "the daemon kept running")


if __name__ == "__main__":
    harness.main(test)
