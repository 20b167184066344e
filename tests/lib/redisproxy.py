# SPDX-License-Identifier: LGPL-2.1-or-later
"""A Unix-socket proxy between one daemon and Redis, for cutting that
daemon's connections (and only its) the way a network fault would: every
connection through it dropped at once, new ones refused while cut, and on
healing the subscriber connection let through before the command
connection, the order in which a silent loss was once seen."""

import os
import socket
import threading
import time


class RedisProxy:
    def __init__(self, path, upstream):
        self.path = str(path)
        self.upstream = str(upstream)
        self.lock = threading.Lock()
        self.pairs = []
        self.cut_until = 0.0
        self.command_delay = 0.0     # extra wait for non-subscriber connections after a cut
        self.healed_at = 0.0
        self.stopped = False
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(64)
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"unix:{self.path}"

    def cut(self, seconds, command_delay=0.0):
        """Drops every connection now; refuses new ones for `seconds`; then
        holds connections that are not a subscriber's `command_delay`
        seconds longer."""
        with self.lock:
            self.cut_until = time.monotonic() + seconds
            self.command_delay = command_delay
            pairs, self.pairs = self.pairs, []
        for a, b in pairs:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def stop(self):
        self.stopped = True
        self.cut(0)
        self.sock.close()

    def _accept_loop(self):
        while not self.stopped:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        if time.monotonic() < self.cut_until:
            client.close()
            return
        # The first command tells a subscriber from the command connection.
        client.settimeout(5)
        try:
            first = client.recv(65536)
        except OSError:
            client.close()
            return
        if not first:
            client.close()
            return
        if b"SUBSCRIBE" not in first.upper():
            wait = self.cut_until + self.command_delay - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        if time.monotonic() < self.cut_until:
            client.close()
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.upstream)
            upstream.sendall(first)
        except OSError:
            client.close()
            upstream.close()
            return
        client.settimeout(None)
        with self.lock:
            self.pairs.append((client, upstream))
        threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
        self._pump(upstream, client)

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
