#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A Redis Cluster starts at key layout 2: on a cluster (one node owning
every slot) that holds keys of the first layout the daemon refuses, says
why in its journal and STATUS=, and never becomes ready; once they are
gone it marks the cluster as layout 2 and serves."""

import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import SLOW  # noqa: E402


def test(stack, check):
    stack.redis.args = ["--cluster-enabled", "yes", "--cluster-config-file", str(stack.dir / "nodes.conf")]
    stack.redis.start()
    stack.redis.command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
    harness.wait_until(lambda: "cluster_state:ok" in stack.redis.command("CLUSTER", "INFO"), 10 * SLOW,
                       what="the one-node cluster")
    stack.redis.command("SET", "mc:rooms:seq", "3")

    d = stack.start_daemon(wait=False)
    d.wait_notify("STATUS", timeout=10, pred=lambda s: "first layout" in s)
    check("a cluster starts at layout 2" in d.status(), "STATUS= says why it does not serve", d.status())
    harness.wait_until(lambda: "Not serving" in d.log_text(), 5 * SLOW, what="the refusal in the journal")
    check(True, "the journal says it does not serve")
    time.sleep(1)
    check(not d.notified("READY") and d.alive, "the daemon stays up, not ready", d.status())
    check.eq(stack.redis.command("EXISTS", "mc:schema"), 0, "nothing was written")

    # The old keys gone (moved elsewhere by the operator), a restart serves.
    stack.redis.command("DEL", "mc:rooms:seq")
    d.stop()
    d2 = stack.start_daemon()
    check.eq(stack.redis.command("GET", "mc:schema"), "2", "a cluster without old keys is marked layout 2")
    room = d2.create_room("Lobby")
    check.eq(stack.redis.command("EXISTS", "mc:{r%s}:room" % room), 1, "and works in layout 2")


if __name__ == "__main__":
    harness.main(test)
