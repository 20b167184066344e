#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""multichat-auth end to end: the real helper with pam_matrix/nss_wrapper,
spoken to in its wire format, over --fd and by socket activation.

Usage: test_auth_helper.py [BUILD_DIR]   (or MULTICHAT_BUILD_DIR; default build)
Exit: 0 pass, 1 fail, 77 skip (pam_wrapper/nss_wrapper missing: apt-get
install libpam-wrapper libnss-wrapper).
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import pamenv  # noqa: E402

EACCES, EPERM, ENOENT, EBUSY, EINVAL = 13, 1, 2, 16, 22
AUTHENTICATE, LOOKUP, LOOKUP_UID, REPLY = 1, 2, 3, 128
UID_INVALID = 0xFFFFFFFF
NOMINAL_DELAY = 2_000_000

USERS = pamenv.DEFAULT_USERS + (
    pamenv.User("sysacct", 999, "sys-pw"),          # below --min-uid
)


# ---- wire format (daemon/wire/auth-wire.h) ----

def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<H", len(b)) + b


def _header(type_, id_):
    return b"MCAU" + struct.pack("<BBHI", 1, type_, 0, id_)


def authenticate(id_, user, password, remote="127.0.0.1"):
    return _header(AUTHENTICATE, id_) + _str(user) + _str(password) + _str(remote)


def lookup(id_, user, group=""):
    return _header(LOOKUP, id_) + _str(user) + _str(group)


def lookup_uid(id_, uid, group=""):
    return _header(LOOKUP_UID, id_) + struct.pack("<I", uid) + _str(group)


def decode_reply(b):
    check(len(b) >= 34, f"reply too short: {b!r}")
    magic, version, type_, reserved, id_, result, uid, flags, pad, delay, n = \
        struct.unpack("<4sBBHIiIB3sQH", b[:34])
    check(magic == b"MCAU" and version == 1 and type_ == REPLY and reserved == 0 and pad == b"\0\0\0",
          f"bad reply header: {b!r}")
    check(len(b) == 34 + n, f"bad reply length: {b!r}")
    return dict(id=id_, result=result, uid=uid, staff=bool(flags & 1), in_group=bool(flags & 2),
                delay=delay, username=b[34:].decode())


# ---- harness ----

class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


class Helper:
    """multichat-auth on one end of a socketpair (--fd), or socket-activated."""

    def __init__(self, binary, pam, workdir, args=(), activated=False):
        self.log_path = os.path.join(workdir, f"helper-{time.monotonic_ns()}.log")
        self.log = open(self.log_path, "w")
        env = pam.env(os.environ)
        env["MULTICHAT_LOG_LEVEL"] = "debug"
        if activated:
            self.path = os.path.join(workdir, f"auth-{time.monotonic_ns()}.sock")
            lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            lsock.bind(self.path)
            lsock.listen(16)
            lfd = lsock.fileno()

            # Exactly what systemd does: the socket as fd 3, LISTEN_PID the
            # child's own pid, which only the child can know.
            def preexec():
                os.dup2(lfd, 3)
                os.set_inheritable(3, True)
                os.environ.clear()
                os.environ.update(env)
                os.environ["LISTEN_FDS"] = "1"
                os.environ["LISTEN_PID"] = str(os.getpid())

            self.proc = subprocess.Popen([binary, *args], preexec_fn=preexec, close_fds=False,
                                         stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
            lsock.close()
            self.sock = None
        else:
            self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self.proc = subprocess.Popen([binary, f"--fd={theirs.fileno()}", *args], env=env,
                                         pass_fds=[theirs.fileno()],
                                         stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
            theirs.close()
            self.sock.settimeout(10)

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.settimeout(10)
        deadline = time.monotonic() + 5
        while True:
            try:
                s.connect(self.path)
                return s
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def wait(self, timeout=10):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.sock:
            self.sock.close()
            self.sock = None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def output(self):
        with open(self.log_path) as f:
            return f.read()


def ask(sock, datagram):
    t = time.monotonic()
    sock.send(datagram)
    rep = decode_reply(sock.recv(4096))
    rep["elapsed"] = time.monotonic() - t
    return rep


def expect_ok(rep, uid, username, staff, in_group=False):
    check(rep["result"] == 0, f"expected success, got {rep}")
    check(rep["uid"] == uid and rep["username"] == username, f"wrong user: {rep}")
    check(rep["staff"] == staff, f"wrong staff flag: {rep}")
    check(rep["in_group"] == in_group, f"wrong in_group flag: {rep}")
    check(rep["delay"] == 0, f"success must not ask for a delay: {rep}")


def expect_refused(rep, error, delay=True):
    check(rep["result"] == -error, f"expected -{error}, got {rep}")
    check(rep["uid"] == UID_INVALID and rep["username"] == "" and not rep["staff"] and not rep["in_group"],
          f"a refusal must say nothing more: {rep}")
    if delay:
        # pam_matrix asks for no delay, so the helper pads to the nominal 2 s,
        # and answers at once instead of sleeping it.
        check(1_500_000 <= rep["delay"] <= 2_500_000, f"expected a ~2 s fail delay: {rep}")
        check(rep["elapsed"] < 1.0, f"the helper slept instead of reporting the delay: {rep}")
    else:
        check(rep["delay"] == 0, f"unexpected delay: {rep}")


# ---- tests ----

def test_logins(h):
    s = h.sock
    expect_ok(ask(s, authenticate(1, "alice", "alice-pw")), 1001, "alice", staff=True)
    expect_ok(ask(s, authenticate(2, "bob", "bob-pw", "[2001:db8::7]:4711")), 1002, "bob", staff=False)
    r = ask(s, authenticate(3, "alice", "bob-pw"))
    check(r["id"] == 3, f"wrong id: {r}")
    expect_refused(r, EACCES)
    expect_refused(ask(s, authenticate(4, "alice", "")), EACCES)
    expect_refused(ask(s, authenticate(5, "nosuchuser", "x")), EACCES)
    expect_refused(ask(s, authenticate(6, "root", "root-pw")), EPERM)
    expect_refused(ask(s, authenticate(7, "root", "wrong")), EPERM)
    expect_refused(ask(s, authenticate(8, "sysacct", "sys-pw")), EPERM)
    # The longest password the wire allows is a valid (wrong) password.
    expect_refused(ask(s, authenticate(9, "bob", "p" * 1024)), EACCES)


def test_lookups(h):
    s = h.sock
    expect_ok(ask(s, lookup(20, "alice")), 1001, "alice", staff=True)
    expect_ok(ask(s, lookup(21, "alice", "multichat-staff")), 1001, "alice", staff=True, in_group=True)
    expect_ok(ask(s, lookup(22, "alice", "multichat-admin")), 1001, "alice", staff=True, in_group=False)
    expect_ok(ask(s, lookup(23, "bob", "bob")), 1002, "bob", staff=False, in_group=True)   # primary group
    expect_ok(ask(s, lookup(24, "bob", "no-such-group")), 1002, "bob", staff=False)
    expect_refused(ask(s, lookup(25, "nosuchuser")), ENOENT, delay=False)
    expect_refused(ask(s, lookup(26, "root")), EPERM, delay=False)
    expect_refused(ask(s, lookup(27, "sysacct")), EPERM, delay=False)
    expect_ok(ask(s, lookup_uid(28, 1002)), 1002, "bob", staff=False)
    expect_ok(ask(s, lookup_uid(29, 1001, "multichat-staff")), 1001, "alice", staff=True, in_group=True)
    # By uid nobody is refused: the D-Bus side decides about root.
    expect_ok(ask(s, lookup_uid(30, 0)), 0, "root", staff=False)
    expect_refused(ask(s, lookup_uid(31, 4321)), ENOENT, delay=False)


def test_malformed(h):
    s = h.sock
    good = authenticate(40, "alice", "alice-pw")
    answered = {
        41: _header(99, 41) + b"junk",                                 # unknown type
        42: _header(AUTHENTICATE, 42) + _str("alice"),                 # truncated
        43: authenticate(43, "alice", "alice-pw") + b"x",              # trailing byte
        44: authenticate(44, "-alice", "x"),                           # option-like name
        45: authenticate(45, "al/ice", "x"),                           # bad character
        46: authenticate(46, "a" * 65, "x"),                           # name too long
        47: authenticate(47, "alice", "p" * 1025),                     # password too long
        48: authenticate(48, "alice", "alice\0pw"),                    # NUL in the password
        49: authenticate(49, "alice", "alice-pw", "1.2.3.4 evil"),     # bad remote
        50: _header(AUTHENTICATE, 50) + b"\0" * 3000,                  # oversized datagram
        51: _header(REPLY, 51) + b"\0" * 22,                           # a reply is not a request
        52: lookup_uid(52, UID_INVALID),
    }
    ignored = [
        b"",                                                           # empty datagram
        b"MCA",                                                        # no header
        b"XXXX" + good[4:],                                            # wrong magic
        good[:4] + b"\x02" + good[5:],                                 # wrong version
        good[:6] + b"\x01\x00" + good[8:],                             # reserved bits
    ]
    for d in ignored:
        s.send(d)
    for d in answered.values():
        s.send(d)
    seen = {}
    for _ in answered:
        r = decode_reply(s.recv(4096))
        seen[r["id"]] = r
    check(sorted(seen) == sorted(answered), f"expected -EINVAL for {sorted(answered)}, got {sorted(seen)}")
    for id_, r in seen.items():
        check(r["result"] == -EINVAL and r["delay"] == 0, f"id {id_}: expected -EINVAL: {r}")
    # Nothing else came back for the ignored ones, and it still serves.
    expect_ok(ask(s, good), 1001, "alice", staff=True)
    check(h.proc.poll() is None, "helper died on malformed input")


def test_concurrency(binary, pam, workdir):
    """40 requests at once with --max-concurrent=32: all answered, the excess
    with -EBUSY, nothing lost."""
    h = Helper(binary, pam, workdir, ["--max-concurrent=32"])
    try:
        expect_ok(ask(h.sock, lookup(1, "bob")), 1002, "bob", staff=False)   # up and serving
        # Stopped while we queue, so the helper finds all 40 waiting at once.
        os.kill(h.proc.pid, signal.SIGSTOP)
        for i in range(100, 140):
            user, pw = ("alice", "alice-pw") if i % 2 else ("bob", "wrong")
            h.sock.send(authenticate(i, user, pw))
        os.kill(h.proc.pid, signal.SIGCONT)
        replies = {}
        for _ in range(40):
            r = decode_reply(h.sock.recv(4096))
            check(r["id"] not in replies, f"duplicate reply {r}")
            replies[r["id"]] = r
        check(sorted(replies) == list(range(100, 140)), f"lost replies: {sorted(replies)}")
        busy = [r for r in replies.values() if r["result"] == -EBUSY]
        check(len(busy) == 8, f"expected 8 x -EBUSY, got {len(busy)}")
        for i, r in replies.items():
            if r["result"] == -EBUSY:
                continue
            if i % 2:
                expect_ok(r, 1001, "alice", staff=True)
            else:
                check(r["result"] == -EACCES, f"expected -EACCES: {r}")
        # The slots come back.
        expect_ok(ask(h.sock, authenticate(200, "alice", "alice-pw")), 1001, "alice", staff=True)
    finally:
        h.stop()


def test_exit_on_close(binary, pam, workdir):
    h = Helper(binary, pam, workdir)
    try:
        expect_ok(ask(h.sock, lookup(1, "bob")), 1002, "bob", staff=False)
        # A request still running when the peer goes: it finishes, then exit.
        h.sock.send(authenticate(2, "alice", "alice-pw"))
        h.sock.close()
        h.sock = None
        rc = h.wait(10)
        check(rc == 0, f"helper did not exit cleanly when the peer closed (rc {rc})\n{h.output()}")
    finally:
        h.stop()


def test_socket_activated(binary, pam, workdir):
    h = Helper(binary, pam, workdir, activated=True)
    try:
        a, b = h.connect(), h.connect()
        # Two connections, interleaved: each gets its own answers.
        a.send(authenticate(1, "alice", "alice-pw"))
        b.send(authenticate(1, "bob", "bob-pw"))
        expect_ok(decode_reply(a.recv(4096)), 1001, "alice", staff=True)
        expect_ok(decode_reply(b.recv(4096)), 1002, "bob", staff=False)
        r = ask(b, authenticate(2, "bob", "nope"))
        expect_refused(r, EACCES)
        a.close()
        expect_ok(ask(b, lookup(3, "alice")), 1001, "alice", staff=True)
        b.close()
        # A listener outlives its clients...
        c = h.connect()
        expect_ok(ask(c, lookup_uid(4, 1002)), 1002, "bob", staff=False)
        c.close()
        check(h.proc.poll() is None, "socket-activated helper exited when its clients left")
        # ...and stops on SIGTERM.
        h.proc.send_signal(signal.SIGTERM)
        rc = h.wait(10)
        check(rc == 0, f"helper did not exit on SIGTERM (rc {rc})\n{h.output()}")
    finally:
        h.stop()


def test_systemd_socket_activate(binary, pam, workdir):
    """The same through systemd-socket-activate, if installed."""
    tool = shutil.which("systemd-socket-activate")
    if not tool:
        print("  (systemd-socket-activate not installed, skipped that variant)")
        return
    path = os.path.join(workdir, "ssa.sock")
    env = pam.env(os.environ)
    # It passes no environment unless told (-E), and execs on the first connection.
    args = [tool, "--seqpacket", "-l", path]
    for k in ("LD_PRELOAD", "MULTICHAT_PAM_CONFDIR", "NSS_WRAPPER_PASSWD",
              "NSS_WRAPPER_GROUP", "ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if k in env:
            args += ["-E", f"{k}={env[k]}"]
    with open(os.path.join(workdir, "ssa.log"), "w") as log:
        proc = subprocess.Popen(args + [binary], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.settimeout(10)
        deadline = time.monotonic() + 5
        while True:
            try:
                s.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                check(time.monotonic() < deadline, "systemd-socket-activate did not listen")
                time.sleep(0.02)
        expect_ok(ask(s, authenticate(1, "alice", "alice-pw")), 1001, "alice", staff=True)
        expect_refused(ask(s, authenticate(2, "root", "root-pw")), EPERM)
        s.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- the lookup cache (each test on its own copy of the account files) ----

def rewrite(path, text):
    """Replaces an account file the helper reads. nss_wrapper notices a
    change by the file's mtime in whole seconds: an edit within the second
    it last read the file would go unseen, so the mtime moves on by 10 s."""
    old = os.stat(path).st_mtime_ns
    with open(path, "w") as f:
        f.write(text)
    new = old + 10 * 1_000_000_000
    os.utime(path, ns=(new, new))


def set_group_members(pam, group, members):
    with open(pam.group) as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        name, pw, gid, _ = line.split(":")
        out.append(f"{name}:{pw}:{gid}:{','.join(members)}" if name == group else line)
    check(out != lines, f"group {group} not in {pam.group} or unchanged")
    rewrite(pam.group, "\n".join(out) + "\n")


def add_account(pam, name, uid, groups=()):
    with open(pam.passwd) as f:
        rewrite(pam.passwd, f.read() + f"{name}:x:{uid}:{uid}:{name}:/home/{name}:/bin/false\n")
    with open(pam.group) as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        g, pw, gid, members = line.split(":")
        if g in groups:
            line = f"{g}:{pw}:{gid}:{','.join([m for m in members.split(',') if m] + [name])}"
        out.append(line)
    rewrite(pam.group, "\n".join(out + [f"{name}:x:{uid}:"]) + "\n")


def own_pam(pam, workdir, name):
    """A PamEnv of its own, so what a test edits no other test reads."""
    d = os.path.join(workdir, name)
    os.makedirs(d)
    return pamenv.PamEnv(d, users=USERS, asan=pam.asan)


def staff_answers(s, base_id):
    """Alice and bob by name and by uid (with an extra group too): the staff
    flags as the helper answers them now."""
    asks = [lookup(base_id, "alice"), lookup_uid(base_id + 1, 1001),
            lookup(base_id + 2, "bob"), lookup_uid(base_id + 3, 1002),
            lookup(base_id + 4, "bob", "multichat-staff"), lookup_uid(base_id + 5, 1001, "multichat-staff")]
    out = []
    for i, d in enumerate(asks):
        r = ask(s, d)
        check(r["result"] == 0 and r["id"] == base_id + i, f"lookup {i} failed: {r}")
        out.append((r["staff"], r["in_group"]) if i >= 4 else r["staff"])
    return out


BEFORE = [True, True, False, False, (False, False), (True, True)]     # alice is staff
AFTER = [False, False, True, True, (True, True), (False, False)]      # bob is, alice not


def test_cache_group_change(binary, pam, workdir):
    """A change of group shows in lookups after the cached answer expires:
    never within the default 60 s, after ~1 s with --lookup-cache=1, at
    once with --lookup-cache=0."""
    for n, (args, fresh_after) in enumerate((([], None), (["--lookup-cache=1"], 1.1), (["--lookup-cache=0"], 0))):
        env = own_pam(pam, workdir, f"group-change-{n}")
        h = Helper(binary, env, workdir, args)
        try:
            check(staff_answers(h.sock, 100) == BEFORE, f"{args}: wrong answers before the change")
            set_group_members(env, "multichat-staff", ["bob"])
            got = staff_answers(h.sock, 200)
            if fresh_after == 0:
                check(got == AFTER, f"{args}: the change did not show at once: {got}")
                continue
            check(got == BEFORE, f"{args}: a cached answer changed before it expired: {got}")
            if fresh_after is None:
                continue
            time.sleep(fresh_after)
            got = staff_answers(h.sock, 300)
            check(got == AFTER, f"{args}: the change did not show after {fresh_after} s: {got}")
        except Failure as e:
            raise Failure(f"{e}\n--- helper log ---\n{h.output()}") from None
        finally:
            h.stop()


def test_cache_negative(binary, pam, workdir):
    """Unknown accounts and refusals are not remembered: an account added
    (or a uid raised above --min-uid) is found at the next lookup."""
    env = own_pam(pam, workdir, "negative")
    h = Helper(binary, env, workdir)
    try:
        s = h.sock
        expect_refused(ask(s, lookup(1, "carol")), ENOENT, delay=False)
        expect_refused(ask(s, lookup_uid(2, 1003)), ENOENT, delay=False)
        expect_refused(ask(s, lookup(3, "sysacct")), EPERM, delay=False)
        add_account(env, "carol", 1003, groups=("multichat-staff",))
        expect_ok(ask(s, lookup(4, "carol")), 1003, "carol", staff=True)
        expect_ok(ask(s, lookup_uid(5, 1003)), 1003, "carol", staff=True)
        with open(env.passwd) as f:
            rewrite(env.passwd, f.read().replace("sysacct:x:999:999:", "sysacct:x:1999:999:"))
        expect_ok(ask(s, lookup(6, "sysacct")), 1999, "sysacct", staff=False)
    except Failure as e:
        raise Failure(f"{e}\n--- helper log ---\n{h.output()}") from None
    finally:
        h.stop()


def test_cache_login_refreshes(binary, pam, workdir):
    """A login sees the account as it is now, whatever the cache holds, and
    what it saw replaces the cached answer."""
    env = own_pam(pam, workdir, "login-refresh")
    h = Helper(binary, env, workdir)
    try:
        s = h.sock
        expect_ok(ask(s, lookup(1, "alice")), 1001, "alice", staff=True)
        set_group_members(env, "multichat-staff", [])
        expect_ok(ask(s, lookup(2, "alice")), 1001, "alice", staff=True)         # cached
        expect_ok(ask(s, authenticate(3, "alice", "alice-pw")), 1001, "alice", staff=False)
        expect_ok(ask(s, lookup(4, "alice")), 1001, "alice", staff=False)
    except Failure as e:
        raise Failure(f"{e}\n--- helper log ---\n{h.output()}") from None
    finally:
        h.stop()


def burst(h, datagrams):
    """Sends all datagrams while the helper is stopped, so it finds them
    waiting at once, and returns the replies in the order they came."""
    os.kill(h.proc.pid, signal.SIGSTOP)
    errors = []

    def send_all():
        try:
            for d in datagrams:
                h.sock.send(d)
        except OSError as e:
            errors.append(e)

    sender = threading.Thread(target=send_all)
    sender.start()
    time.sleep(0.2)
    os.kill(h.proc.pid, signal.SIGCONT)
    replies = [decode_reply(h.sock.recv(4096)) for _ in datagrams]
    sender.join()
    check(not errors, f"sending failed: {errors}")
    return replies


def test_cache_hits_without_workers(binary, pam, workdir):
    """2,000 cached lookups at once with --max-concurrent=1: a hit takes no
    worker, so every one is answered (no -EBUSY), right, in order. Without
    the cache the same burst runs into the limit, which shows the test
    would see a hit that needed a worker."""
    asks = [lookup(i, "alice") if i % 2 else lookup_uid(i, 1002, "bob") for i in range(1000, 3000)]
    for args in ([], ["--lookup-cache=0"]):
        h = Helper(binary, pam, workdir, ["--max-concurrent=1", *args])
        try:
            expect_ok(ask(h.sock, lookup(1, "alice")), 1001, "alice", staff=True)
            expect_ok(ask(h.sock, lookup_uid(2, 1002, "bob")), 1002, "bob", staff=False, in_group=True)
            replies = burst(h, asks)
            busy = sum(r["result"] == -EBUSY for r in replies)
            if args:
                check(busy > 0, "without the cache, a burst over --max-concurrent=1 got no -EBUSY")
                continue
            check(busy == 0, f"{busy} cached lookups got -EBUSY")
            check([r["id"] for r in replies] == list(range(1000, 3000)), "replies out of order")
            for r in replies:
                if r["id"] % 2:
                    expect_ok(r, 1001, "alice", staff=True)
                else:
                    expect_ok(r, 1002, "bob", staff=False, in_group=True)
            check(h.proc.poll() is None, "helper died")
        except Failure as e:
            raise Failure(f"{e}\n--- helper log ---\n{h.output()}") from None
        finally:
            h.stop()


def walks(h, who):
    """How often the helper has walked the user database for who (a name,
    or "uid N"), from its debug log."""
    return h.output().count(f"Looked up {who} in the user database:")


def test_cache_coalescing(binary, pam, workdir):
    """Twenty lookups of one account arriving at once walk the user
    database once: the workers that waited for the lock find the first
    one's answer. A later burst of hits walks it not at all."""
    h = Helper(binary, pam, workdir)
    try:
        expect_ok(ask(h.sock, lookup(1, "alice")), 1001, "alice", staff=True)       # up and serving
        check(walks(h, "alice") == 1, f"expected one walk for alice:\n{h.output()}")
        replies = burst(h, [lookup(i, "bob") for i in range(100, 120)] +
                        [lookup_uid(i, 1001, "multichat-admin") for i in range(120, 140)])
        check(sorted(r["id"] for r in replies) == list(range(100, 140)), "lost replies")
        for r in replies:
            if r["id"] < 120:
                expect_ok(r, 1002, "bob", staff=False)
            else:
                expect_ok(r, 1001, "alice", staff=True, in_group=False)
        check(walks(h, "bob") == 1 and walks(h, "uid 1001") == 1,
              f"expected one walk each for bob and uid 1001:\n{h.output()}")
        burst(h, [lookup(i, "bob") for i in range(200, 300)])
        check(walks(h, "bob") == 1, f"cached lookups walked the database:\n{h.output()}")
    except Failure as e:
        raise Failure(f"{e}\n--- helper log ---\n{h.output()}") from None
    finally:
        h.stop()


def test_bad_invocations(binary):
    for args in (["--fd=abc"], ["--fd=1"], ["--max-concurrent=0"], ["--max-concurrent=5000"],
                 ["--min-uid=-1"], ["--staff-group=-x"], ["--pam-service=../etc"], ["extra"],
                 ["--lookup-cache=-1"], ["--lookup-cache=3601"], ["--lookup-cache=x"], ["--lookup-cache="],
                 ["--lookup-cache=1.5"], ["--lookup-cache=99999999999999999999"],
                 []):                                   # neither --fd nor LISTEN_FDS
        env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
        r = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=10)
        check(r.returncode != 0 and r.stderr, f"{args}: expected an error, got rc {r.returncode}")
        if args and args[0].startswith("--lookup-cache"):
            check(f"Invalid {args[0]} (0…3600 seconds)" in r.stderr, f"{args}: unclear error: {r.stderr}")
    # An fd that is not a SOCK_SEQPACKET socket.
    rfd, wfd = os.pipe()
    r = subprocess.run([binary, f"--fd={rfd}"], pass_fds=[rfd], capture_output=True, text=True, timeout=10)
    os.close(rfd), os.close(wfd)
    check(r.returncode != 0, "a pipe passed as --fd was accepted")
    r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    check(r.returncode == 0 and "multichat-auth" in r.stdout, f"--version: {r}")
    r = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
    check(r.returncode == 0 and "--max-concurrent" in r.stdout and "--lookup-cache=SEC" in r.stdout, f"--help: {r}")


def test_auth_client(build, pam):
    """daemon/auth/auth-client.c against the real helper (test-auth-client --helper=)."""
    prog = os.path.join(build, "daemon", "test-auth-client")
    if not os.path.exists(prog):
        print("  (test-auth-client not built, skipped)")
        return
    helper = os.path.join(build, "daemon", "multichat-auth")
    r = subprocess.run([prog, f"--helper={helper}"], env=pam.env(os.environ),
                       capture_output=True, text=True, timeout=60)
    # The helpers it spawned write here too: a leak report at their exit counts.
    check(r.returncode == 0 and "runtime error:" not in r.stderr and "Sanitizer" not in r.stderr,
          f"test-auth-client failed (rc {r.returncode}):\n{r.stdout}{r.stderr}")


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MULTICHAT_BUILD_DIR", "build")
    binary = os.path.abspath(os.path.join(build, "daemon", "multichat-auth"))
    if not pamenv.available():
        print("SKIP: pam_wrapper/nss_wrapper not installed (apt-get install libpam-wrapper libnss-wrapper)")
        return 77
    if not os.access(binary, os.X_OK):
        print(f"FAIL: {binary} not built")
        return 1

    with tempfile.TemporaryDirectory(prefix="test-auth-helper.") as workdir:
        asan = os.environ.get("MULTICHAT_ASAN") == "1" or pamenv.uses_asan(binary)
        pam = pamenv.PamEnv(workdir, users=USERS, asan=asan)
        tests = [
            ("logins", lambda: with_fd_helper(binary, pam, workdir, test_logins)),
            ("lookups", lambda: with_fd_helper(binary, pam, workdir, test_lookups)),
            ("malformed", lambda: with_fd_helper(binary, pam, workdir, test_malformed)),
            ("concurrency", lambda: test_concurrency(binary, pam, workdir)),
            ("exit on close", lambda: test_exit_on_close(binary, pam, workdir)),
            ("socket activated", lambda: test_socket_activated(binary, pam, workdir)),
            ("systemd-socket-activate", lambda: test_systemd_socket_activate(binary, pam, workdir)),
            ("cache: group change", lambda: test_cache_group_change(binary, pam, workdir)),
            ("cache: no negative answers", lambda: test_cache_negative(binary, pam, workdir)),
            ("cache: logins refresh", lambda: test_cache_login_refreshes(binary, pam, workdir)),
            ("cache: hits without workers", lambda: test_cache_hits_without_workers(binary, pam, workdir)),
            ("cache: one walk for a burst", lambda: test_cache_coalescing(binary, pam, workdir)),
            ("bad invocations", lambda: test_bad_invocations(binary)),
            ("auth-client", lambda: test_auth_client(os.path.abspath(build), pam)),
        ]
        failed = 0
        for name, fn in tests:
            try:
                fn()
                print(f"ok: {name}")
            except Exception as e:      # noqa: BLE001 - report every test, then fail
                failed += 1
                print(f"FAIL: {name}: {e}")
                if not isinstance(e, Failure):
                    traceback.print_exc()
        # UBSan reports and carries on, and a killed helper never gets to
        # exit non-zero: read what the helpers said.
        for log in sorted(os.listdir(workdir)):
            if log.endswith(".log"):
                with open(os.path.join(workdir, log)) as f:
                    text = f.read()
                if "runtime error:" in text or "Sanitizer" in text:
                    failed += 1
                    print(f"FAIL: sanitizer report in {log}:\n{text}")
        return 1 if failed else 0


def with_fd_helper(binary, pam, workdir, fn):
    h = Helper(binary, pam, workdir)
    try:
        fn(h)
        check(h.proc.poll() is None, f"helper exited early\n{h.output()}")
        h.sock.close()
        h.sock = None
        rc = h.wait(10)
        check(rc == 0, f"helper exit status {rc}\n{h.output()}")
    except Failure as e:
        raise Failure(f"{e}\n--- helper log ---\n{h.output()}") from None
    finally:
        h.stop()


if __name__ == "__main__":
    sys.exit(main())
