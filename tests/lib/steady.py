# SPDX-License-Identifier: LGPL-2.1-or-later
"""A steady sender for fault tests: one WebSocket sends at a fixed rate,
each message with a ref, and records which were acknowledged (with their
ids) and which refused, so the test can count every message by id."""

import socket
import threading
import time

from harness import SLOW


def id_key(message_id):
    """A message id ("<ms>-<seq>") as a sortable pair."""
    ms, seq = message_id.split("-")
    return int(ms), int(seq)


class Sender(threading.Thread):
    def __init__(self, ws, room, rate):
        super().__init__(daemon=True)
        self.ws, self.room, self.rate = ws, room, rate
        self.stop = threading.Event()
        self.acked = {}         # ref -> id
        self.errors = []
        self.sent = 0

    def run(self):
        next_at = time.monotonic()
        while not self.stop.is_set():
            if time.monotonic() >= next_at:
                self.sent += 1
                ref = f"m{self.sent}"
                self.ws.send_json({"command": "send", "room": self.room, "message": ref, "ref": ref})
                next_at += 1.0 / self.rate
            self._read(max(0.0, min(next_at - time.monotonic(), 0.05)))
        end = time.monotonic() + 5 * SLOW
        while time.monotonic() < end and len(self.acked) + len(self.errors) < self.sent:
            self._read(0.2)

    def _read(self, timeout):
        try:
            obj, _ = self.ws.recv_json(timeout)
        except (socket.timeout, TimeoutError):
            return
        if obj.get("ok") and obj.get("ref"):
            self.acked[obj["ref"]] = obj.get("id")
        elif obj.get("error"):
            self.errors.append(obj)
