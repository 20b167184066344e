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


class Member(threading.Thread):
    """One connection that is a room member as a real client is: it records
    every message it receives, by room, and the gap notices (a join event
    with "complete": false); and, given a room and a rate, it sends there
    steadily, retrying a send that failed with OUTCOME_UNKNOWN or
    UNAVAILABLE with the same ref (the ref makes the retry idempotent)
    until it is acknowledged."""

    RETRY = ("OUTCOME_UNKNOWN", "UNAVAILABLE")

    def __init__(self, ws, name, room=None, rate=0, retry_after=0.2):
        super().__init__(daemon=True)
        self.ws, self.name, self.room, self.rate = ws, name, room, rate
        self.retry_after = retry_after
        self.stop = threading.Event()       # stop sending; keep reading
        self.done = threading.Event()       # stop reading
        self.acked = {}                     # ref -> id
        self.failed = []                    # refusals that are not retried
        self.retries = 0
        self.sent = 0
        self.received = {}                  # room -> [(id, username, text)]
        self.notices = {}                   # room -> gap notices
        self._retry = {}                    # ref -> when to send it again

    def _send(self, ref):
        self.ws.send_json({"command": "send", "room": self.room, "message": f"{self.name} {ref}", "ref": ref})

    def outstanding(self):
        return self.sent - len(self.acked) - len(self.failed)

    def run(self):
        next_at = time.monotonic()
        while not self.done.is_set():
            now = time.monotonic()
            if self.room and self.rate and not self.stop.is_set() and now >= next_at:
                self.sent += 1
                self._send(f"m{self.sent}")
                next_at += 1.0 / self.rate
            for ref, at in list(self._retry.items()):
                if now >= at:
                    del self._retry[ref]
                    self.retries += 1
                    self._send(ref)
            wait = 0.05
            if self.room and self.rate and not self.stop.is_set():
                wait = min(wait, max(0.0, next_at - time.monotonic()))
            self._read(wait)

    def _read(self, timeout):
        try:
            obj, _ = self.ws.recv_json(timeout)
        except (socket.timeout, TimeoutError):
            return
        ref = obj.get("ref")
        if obj.get("ok") and ref:
            self.acked.setdefault(ref, obj.get("id"))
            self._retry.pop(ref, None)
        elif obj.get("error") and ref:
            if obj["error"] in self.RETRY:
                self._retry[ref] = time.monotonic() + self.retry_after
            else:
                self.failed.append(obj)
        elif obj.get("msg_type") == 0 and obj.get("room"):
            self.received.setdefault(obj["room"], []).append((obj["id"], obj.get("username"), obj.get("message")))
        elif obj.get("join") and obj.get("complete") is False:
            self.notices.setdefault(obj["join"], []).append(obj)
