# SPDX-License-Identifier: LGPL-2.1-or-later
"""Starts the real pieces (Redis, a private D-Bus, multichatd) in a temporary
directory for one integration test, and tears them down again.

Typical use (each tests/integration/test_*.py is a standalone script):

    import harness
    def test(stack, check):
        d = stack.start_daemon()              # Redis + bus started on demand
        room = stack.create_room("Lobby")     # over D-Bus, returns the id
        alice = d.ws("alice")                 # logged-in WebSocket
        ...
        check(cond, "what was checked")
    harness.main(test)

main() exits 0 (pass), 1 (fail) or 77 (skip: daemon not built, not root),
bounds the whole file with an alarm, and fails the test when a daemon's
output shows AddressSanitizer, UBSan or LeakSanitizer reports.

Environment: MULTICHAT_BUILD_DIR (default SRC/build), MULTICHAT_ASAN=1
(the build is sanitized: PamEnv preloads libasan, leak checks on),
MULTICHAT_KEEP_TMP=1 (keep the temporary directory), MULTICHAT_TEST_TIMEOUT
(seconds for the whole file).
"""

import atexit
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

LIB = Path(__file__).resolve().parent
SRC = LIB.parent.parent
BUILD = Path(os.environ.get("MULTICHAT_BUILD_DIR") or (SRC / "build")).resolve()
DAEMON = BUILD / "daemon" / "multichatd"
AUTH_HELPER = BUILD / "daemon" / "multichat-auth"
POLICY = SRC / "dbus" / "org.multichat.Chat1.conf"
WEB_ROOT = SRC / "web"
ASAN = os.environ.get("MULTICHAT_ASAN") == "1"
KEEP_TMP = os.environ.get("MULTICHAT_KEEP_TMP") == "1"

sys.path.insert(0, str(LIB))
import wsclient  # noqa: E402,F401 (re-exported for tests)
from wsclient import WS, WSClosed, WSRefused, http, login  # noqa: E402,F401

BUS_NAME = "org.multichat.Chat1"
MANAGER_PATH = "/org/multichat/Chat1"
MANAGER_IFACE = "org.multichat.Chat1.Manager"
ROOM_IFACE = "org.multichat.Chat1.Room"
ERROR_NO_SUCH_ROOM = "org.multichat.Chat1.Error.NoSuchRoom"
ERROR_INVALID_ARGUMENT = "org.multichat.Chat1.Error.InvalidArgument"
ERROR_UNAVAILABLE = "org.multichat.Chat1.Error.Unavailable"
ERROR_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"

# The accounts PamEnv (tests/lib/pamenv.py) creates.
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "root": "root-pw"}
NOBODY = 65534

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                     "LeakSanitizer:", "AddressSanitizer:DEADLYSIGNAL")

SLOW = 3.0 if ASAN else 1.0     # scale for waits that depend on the daemon's speed


class Skip(Exception):
    """Raise to end the test with exit status 77."""


class DaemonDied(Exception):
    pass


class BusError(Exception):
    def __init__(self, name, message, argv=None):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message
        self.argv = argv


def log(msg):
    print(msg, flush=True)


def _kill_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def socket_activation_exec(lfd, argv, env):
    """A preexec_fn that starts argv as systemd starts a socket-activated
    service: the listening socket lfd becomes fd 3, and LISTEN_PID is the
    pid of the process that execs, known only in the child."""
    def preexec():
        if lfd != 3:
            os.dup2(lfd, 3)
        os.set_inheritable(3, True)
        env["LISTEN_PID"] = str(os.getpid())
        os.execve(argv[0], argv, env)
    return preexec


def wait_until(pred, timeout, interval=0.05, what="condition"):
    """Polls pred() until it returns something truthy; returns that value.
    Raises TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --- Redis ------------------------------------------------------------------

class Redis:
    """A redis-server on a Unix socket (TCP off unless port is given), no
    persistence unless asked. args: more redis-server arguments (an ACL
    user, --replicaof); auth: (user, password) for command()."""

    def __init__(self, dir, name="redis", port=None, args=(), auth=None):
        self.dir = Path(dir)
        self.name = name
        self.path = self.dir / f"{name}.sock"
        self.port = port
        self.args = list(args)
        self.auth = auth
        self.proc = None
        self.logfile = self.dir / f"{name}.log"

    @property
    def url(self):
        return f"unix:{self.path}"

    def start(self, timeout=10):
        if self.proc and self.proc.poll() is None:
            return
        # MULTICHAT_REDIS_SERVER=valkey-server runs the suite against Valkey,
        # which takes the same options and speaks the same protocol.
        name = os.environ.get("MULTICHAT_REDIS_SERVER") or "redis-server"
        exe = shutil.which(name)
        if not exe:
            if name != "redis-server":
                raise RuntimeError(f"MULTICHAT_REDIS_SERVER={name} is not installed")
            raise Skip("redis-server not installed")
        out = open(self.logfile, "ab")
        # --dir/--dbfilename only matter for kill(save=True): an explicit SAVE
        # before the kill lets the restarted server come back with its data,
        # like a production Redis with persistence would.
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port or 0)] + (["--bind", "127.0.0.1"] if self.port else []) +
            ["--unixsocket", str(self.path), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir),
             "--dbfilename", f"{self.name}.rdb", "--daemonize", "no", "--loglevel", "warning"] + self.args,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
        out.close()
        wait_until(lambda: self._ping_ok() or self._check_alive(), timeout, what="redis-server")

    def _check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited ({self.proc.returncode}): "
                               f"{self.logfile.read_text(errors='replace')[-2000:]}")
        return False

    def _ping_ok(self):
        try:
            return self.command("PING") == "PONG"
        except OSError:
            return False

    def _connect(self, timeout):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(str(self.path))
        return s

    def command(self, *args, timeout=2.0):
        """One command over a fresh connection; returns the decoded reply
        (str, int, list, None) or raises RuntimeError for an error reply."""
        with self._connect(timeout) as s:
            f = s.makefile("rb")
            if self.auth:
                s.sendall(_resp_command(("AUTH",) + tuple(self.auth)))
                _resp_read(f)
            s.sendall(_resp_command(args))
            return _resp_read(f)

    def kill(self, save=False):
        """SIGKILL (after an explicit SAVE when save=True)."""
        if not self.proc:
            return
        if save:
            try:
                self.command("SAVE", timeout=5)
            except (OSError, RuntimeError) as e:
                log(f"# redis SAVE failed: {e}")
        _kill_group(self.proc, signal.SIGKILL)
        self.proc.wait(5)
        self.proc = None

    def restart(self, timeout=10):
        self.kill()
        self.start(timeout)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            _kill_group(self.proc, signal.SIGKILL)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None


class Sentinel(Redis):
    """A redis-server --sentinel on 127.0.0.1:port watching master `name`."""

    def __init__(self, dir, name, port, master, master_name="mc", down_after_ms=1000, failover_timeout_ms=3000):
        super().__init__(dir, name=name, port=port)
        self.master = master
        self.master_name = master_name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=10):
        if self.proc and self.proc.poll() is None:
            return
        exe = shutil.which("redis-server")
        if not exe:
            raise Skip("redis-server not installed")
        conf = self.dir / f"{self.name}.conf"
        if not conf.exists():   # a sentinel rewrites its file: keep what it learnt across restarts
            conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
                            f"sentinel monitor {self.master_name} 127.0.0.1 {self.master.port} 2\n"
                            f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
                            f"sentinel failover-timeout {self.master_name} {self.failover_timeout_ms}\n")
        out = open(self.logfile, "ab")
        self.proc = subprocess.Popen([exe, str(conf), "--sentinel", "--loglevel", "warning"],
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        out.close()
        wait_until(lambda: self._ping_ok() or self._check_alive(), timeout, what="redis sentinel")

    def _connect(self, timeout):
        return socket.create_connection(("127.0.0.1", self.port), timeout)

    def master_address(self):
        a = self.command("SENTINEL", "get-master-addr-by-name", self.master_name)
        return f"{a[0]}:{a[1]}" if a else None


def _resp_command(args):
    req = f"*{len(args)}\r\n".encode()
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        req += b"$%d\r\n%s\r\n" % (len(a), a)
    return req


def _resp_read(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest.decode()
    if t == b"-":
        raise RuntimeError(rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode(errors="replace")
    if t == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [_resp_read(f) for _ in range(n)]
    raise ConnectionError(f"bad RESP line {line!r}")


# --- D-Bus ------------------------------------------------------------------

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<!-- A private bus with the semantics of /usr/share/dbus-1/system.conf:
     socket credentials only, method calls denied unless a policy file
     punches a hole, and the project's own policy file from the source tree. -->
<busconfig>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>

  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>

  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>

  <!-- The policy file says user "multichat" owns the name; the tests run
       the daemon as {user}. -->
  <policy user="{user}">
    <allow own="{name}"/>
  </policy>
{extra}
  <include>{policy}</include>
</busconfig>
"""


class DBus:
    """A private dbus-daemon with a system-bus-like policy."""

    def __init__(self, dir, name="bus", root_may_send_all=False, open_policy=False, env=None):
        self.dir = Path(dir)
        self.name = name
        self.sock = self.dir / f"{name}.sock"
        self.conf = self.dir / f"{name}.conf"
        self.logfile = self.dir / f"{name}.log"
        self.address = f"unix:path={self.sock}"
        self.root_may_send_all = root_may_send_all
        # open_policy: anyone may call anything (a mandatory policy overrides
        # the project's file), so the daemon's own authorization is what is
        # tested.
        self.open_policy = open_policy
        # dbus-daemon drops connections from uids it cannot resolve, and
        # resolves group names in policies when loading them: it sees the
        # test accounts through nss_wrapper.
        self.env = env
        self.proc = None

    def start(self, timeout=10):
        exe = shutil.which("dbus-daemon")
        if not exe:
            raise Skip("dbus-daemon not installed")
        if not POLICY.exists():
            raise RuntimeError(f"the bus policy file {POLICY} does not exist")
        extra = ""
        if self.root_may_send_all:
            extra += f'  <policy user="root"><allow send_destination="{BUS_NAME}"/></policy>\n'
        if self.open_policy:
            extra += f'  <policy context="mandatory"><allow send_destination="{BUS_NAME}"/></policy>\n'
        import pwd
        user = pwd.getpwuid(os.geteuid()).pw_name
        self.conf.write_text(BUS_CONF.format(sock=self.sock, user=user, name=BUS_NAME,
                                             policy=POLICY, extra=extra))
        r, w = os.pipe()
        out = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            [exe, f"--config-file={self.conf}", "--nofork", "--nopidfile", f"--print-address={w}"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            pass_fds=(w,), start_new_session=True, env=self.env)
        out.close()
        os.close(w)
        try:
            deadline = time.monotonic() + timeout
            data = b""
            while b"\n" not in data:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("dbus-daemon did not print its address")
                rl, _, _ = select.select([r], [], [], left)
                if rl:
                    chunk = os.read(r, 4096)
                    if not chunk:
                        break
                    data += chunk
            if self.proc.poll() is not None or not data:
                raise RuntimeError(f"dbus-daemon failed: {self.logfile.read_text(errors='replace')[-2000:]}")
        finally:
            os.close(r)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            _kill_group(self.proc, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    # busctl and dbus-send as root (uid None) or as another uid (setpriv).

    def _as(self, argv, uid):
        """uid: None (as we are), a uid (gid = uid, no supplementary
        groups) or (uid, [supplementary gids])."""
        if uid is None:
            return argv
        if os.geteuid() != 0:
            raise Skip("running as another uid needs root")
        uid, groups = uid if isinstance(uid, tuple) else (uid, ())
        g = [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
        return ["setpriv", f"--reuid={uid}", f"--regid={uid}", *g] + argv

    def busctl(self, *args, uid=None, check=False, timeout=10):
        """Runs busctl --address=... ARGS; returns the CompletedProcess (text)."""
        argv = self._as(["busctl", f"--address={self.address}", "--timeout=8", *map(str, args)], uid)
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=check)

    def busctl_json(self, *args, uid=None):
        """busctl --json=short ARGS → the parsed JSON; BusError on failure
        (name unknown: busctl prints only the message)."""
        p = self.busctl("--json=short", *args, uid=uid)
        if p.returncode != 0:
            raise BusError(None, (p.stderr or p.stdout).strip(), args)
        out = p.stdout.strip()
        return json.loads(out) if out else None

    def call(self, member, signature="", *args, path=MANAGER_PATH, iface=MANAGER_IFACE, uid=None):
        """A method call through busctl; returns the reply's data list."""
        argv = ["call", BUS_NAME, path, iface, member]
        if signature:
            argv += [signature, *[_busctl_arg(a) for a in args]]
        j = self.busctl_json(*argv, uid=uid)
        return j["data"] if j else []

    def get_property(self, name, path=MANAGER_PATH, iface=MANAGER_IFACE, uid=None):
        j = self.busctl_json("get-property", BUS_NAME, path, iface, name, uid=uid)
        return j["data"]

    def set_property(self, name, signature, value, path, iface=ROOM_IFACE, uid=None):
        p = self.busctl("set-property", BUS_NAME, path, iface, name, signature, _busctl_arg(value), uid=uid)
        if p.returncode != 0:
            raise BusError(None, p.stderr.strip())

    def dbus_send(self, member, *args, path=MANAGER_PATH, iface=MANAGER_IFACE, uid=None, timeout=10):
        """A method call through dbus-send, which (unlike busctl) prints the
        D-Bus error name. Arguments: str → string, bool → boolean,
        int → uint32, or a pre-typed "type:value" via Typed(). Returns
        stdout; raises BusError(name, message) on an error reply."""
        argv = ["dbus-send", f"--bus={self.address}", "--print-reply", "--reply-timeout=8000",
                f"--dest={BUS_NAME}", path, f"{iface}.{member}"]
        for a in args:
            if isinstance(a, Typed):
                argv.append(a.s)
            elif isinstance(a, bool):
                argv.append(f"boolean:{'true' if a else 'false'}")
            elif isinstance(a, int):
                argv.append(f"uint32:{a}")
            else:
                argv.append(f"string:{a}")
        p = subprocess.run(self._as(argv, uid), stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=timeout)
        if p.returncode != 0:
            err = p.stderr.strip()
            # "Error org.foo.Bar: message"
            if err.startswith("Error "):
                name, _, msg = err[len("Error "):].partition(": ")
                raise BusError(name.strip(), msg, argv)
            raise BusError(None, err, argv)
        return p.stdout

    def call_error(self, member, *args, path=MANAGER_PATH, iface=MANAGER_IFACE, uid=None):
        """The D-Bus error name a call fails with, or None if it succeeds."""
        try:
            self.dbus_send(member, *args, path=path, iface=iface, uid=uid)
        except BusError as e:
            return e.name or f"(unnamed) {e.message}"
        return None

    def set_property_error(self, room_path, name, typed_value, uid=None):
        """Sets a Room property through dbus-send; returns the error name or None."""
        argv_args = [Typed(f"string:{ROOM_IFACE}"), Typed(f"string:{name}"), Typed(f"variant:{typed_value}")]
        return self.call_error("Set", *argv_args, path=room_path, iface="org.freedesktop.DBus.Properties", uid=uid)


class Typed:
    """A dbus-send argument given verbatim, e.g. Typed("variant:boolean:true")."""

    def __init__(self, s):
        self.s = s


def _busctl_arg(a):
    if isinstance(a, bool):
        return "true" if a else "false"
    return str(a)


def room_path(room_id):
    return f"{MANAGER_PATH}/room/{room_id}"


# --- the daemon -----------------------------------------------------------

def _pam_env(dir, base_env, users=None):
    """(PamEnv, env): base_env plus h2's pam_matrix/nss_wrapper setup."""
    try:
        import pamenv
    except ImportError as e:
        raise Skip(f"tests/lib/pamenv.py not available: {e}")
    if not pamenv.available():
        raise Skip("pam_wrapper/nss_wrapper not installed (libpam-wrapper, libnss-wrapper)")
    asan = ASAN or pamenv.uses_asan(str(DAEMON))
    users = list(users if users is not None else pamenv.DEFAULT_USERS)
    # dbus-daemon resolves callers through the same files: setpriv'ed
    # clients run as nobody.
    if not any(u.uid == NOBODY for u in users):
        users.append(pamenv.User("nobody", NOBODY, os.urandom(16).hex(), home="/nonexistent"))
    pe = pamenv.PamEnv(str(dir), users=users, asan=asan)
    return pe, pe.env(base_env), asan


def _nss_only_env(pam_env):
    """An environment with only nss_wrapper preloaded (no pam_wrapper, no
    libasan), for dbus-daemon."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LD_PRELOAD", "PAM_WRAPPER", "NSS_WRAPPER"))}
    nss = [p for p in pam_env.get("LD_PRELOAD", "").split() if "nss_wrapper" in p]
    if nss:
        env["LD_PRELOAD"] = nss[0]
        for k in ("NSS_WRAPPER_PASSWD", "NSS_WRAPPER_GROUP"):
            env[k] = pam_env[k]
    return env


class Daemon:
    """One multichatd. mode "listen" (--listen=127.0.0.1:PORT) or "socket"
    (socket activation: the harness listens and passes fd 3)."""

    def __init__(self, stack, name, bus, mode="listen", args=(), watchdog_usec=None,
                 env=None, with_web_root=True, config=None):
        self.stack = stack
        self.config = config        # a config file to read instead of --no-config
        self.name = name
        self.bus = bus
        self.mode = mode
        self.args = list(args)
        self.watchdog_usec = watchdog_usec
        self.extra_env = dict(env or {})
        self.with_web_root = with_web_root
        self.dir = stack.dir
        self.logfile = self.dir / f"{name}.log"
        self.notify_path = self.dir / f"notify-{name}.sock"
        self.notify_sock = None
        self.notifications = []     # every sd_notify datagram, parsed: [{"READY": "1", ...}, ...]
        self.proc = None
        self.listen_sock = None
        self.port = None
        self.exit_code = None

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def argv(self):
        # A daemon on a cluster has no redis= (the two exclude each other).
        on_cluster = any(str(x).startswith("--redis-cluster=") for x in self.args)
        a = [str(DAEMON), f"--config={self.config}" if self.config else "--no-config"]
        a += [] if on_cluster else [f"--redis=unix:{self.stack.redis.path}"]
        a += [f"--bus={self.bus.address}",
              "--pam-service=multichat",
              "--staff-group=multichat-staff",
              "--admin-group=multichat-admin",
              "--min-uid=1000"]
        if self.with_web_root:
            a.append(f"--web-root={WEB_ROOT}")
        if self.mode == "listen":
            a.append(f"--listen=127.0.0.1:{self.port}")
        return a + self.args

    def start(self, keep_port=False):
        """keep_port: listen where the previous start() did (a restart
        that clients find at the same address, after cleanup())."""
        self.notifications = []
        self.notify_path.unlink(missing_ok=True)
        self.notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify_sock.bind(str(self.notify_path))
        self.notify_sock.settimeout(0.2)
        # Drained all the time, like systemd does: sd_notify() blocks the
        # sender once the socket's queue is full.
        self._notify_stop = threading.Event()
        self._notify_lock = threading.Lock()
        self._notify_thread = threading.Thread(target=self._notify_reader, daemon=True)

        env = dict(self.stack.base_env)
        env.update(self.extra_env)
        env["NOTIFY_SOCKET"] = str(self.notify_path)
        if self.watchdog_usec:
            env["WATCHDOG_USEC"] = str(self.watchdog_usec)
        for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            env.pop(k, None)

        out = open(self.logfile, "ab")
        if self.mode == "listen":
            if not (keep_port and self.port):
                self.port = _free_port()
            argv = self.argv()
            log(f"# starting {self.name}: {' '.join(argv)}")
            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        elif self.mode == "socket":
            self.listen_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listen_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listen_sock.bind(("127.0.0.1", 0))
            self.listen_sock.listen(128)
            self.port = self.listen_sock.getsockname()[1]
            argv = self.argv()
            lfd = self.listen_sock.fileno()
            env["LISTEN_FDS"] = "1"
            env["LISTEN_FDNAMES"] = "http"
            log(f"# starting {self.name} (socket-activated on 127.0.0.1:{self.port}): {' '.join(argv)}")

            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         close_fds=False, preexec_fn=socket_activation_exec(lfd, argv, env))
        else:
            raise ValueError(self.mode)
        out.close()
        # Started only now, so fewer threads exist when preexec() runs in
        # the forked child (datagrams queue in the bound socket meanwhile).
        self._notify_thread.start()
        return self

    # sd_notify

    def _notify_reader(self):
        sock = self.notify_sock
        while not self._notify_stop.is_set():
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            msg = {}
            for line in data.decode(errors="replace").split("\n"):
                if "=" in line:
                    k, _, v = line.partition("=")
                    msg[k] = v
            with self._notify_lock:
                self.notifications.append(msg)

    def poll_notify(self):
        """A snapshot of the notifications received so far."""
        if self.notify_sock is None:
            return list(self.notifications)
        with self._notify_lock:
            return list(self.notifications)

    def notified(self, key, value=None):
        """The notification messages carrying key (=value if given)."""
        return [m for m in self.poll_notify() if key in m and (value is None or m[key] == value)]

    def status(self):
        """The last STATUS= sent, or None."""
        s = self.notified("STATUS")
        return s[-1]["STATUS"] if s else None

    def wait_notify(self, key, value=None, timeout=5.0, pred=None):
        def f():
            self._check_alive()
            for m in self.notified(key, value):
                if pred is None or pred(m[key]):
                    return m
            return None
        return wait_until(f, timeout * SLOW, what=f"sd_notify {key}={value or '*'} from {self.name}")

    def _check_alive(self):
        if self.proc is not None and self.proc.poll() is not None:
            self.exit_code = self.proc.returncode
            raise DaemonDied(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def wait_ready(self, timeout=10.0):
        self.wait_notify("READY", "1", timeout=timeout)
        return self

    # stopping

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Sends sig and waits; returns the exit code (negative: killed by a
        signal). Past timeout the process group is SIGKILLed and
        TimeoutError raised."""
        if self.proc is None:
            return self.exit_code
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout * SLOW)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc, signal.SIGKILL)
                self.proc.wait(5)
                self.exit_code = self.proc.returncode
                raise TimeoutError(f"{self.name} did not exit within {timeout * SLOW}s of signal {sig}")
        self.exit_code = self.proc.returncode
        # Leftovers of the process group (the auth helper) get a moment to
        # finish on their own (and print their sanitizer reports), then go.
        deadline = time.monotonic() + 2.0 * SLOW
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.05)
        _kill_group(self.proc, signal.SIGKILL)
        return self.exit_code

    def cleanup(self):
        """Stops the daemon if it still runs; returns a complaint (str)
        when that orderly stop did not end with exit status 0."""
        problem = None
        if self.proc is not None and self.proc.poll() is None:
            try:
                rc = self.stop(signal.SIGTERM, 5.0)
                if rc != 0:
                    problem = f"{self.name} exited with status {rc} on SIGTERM at the end of the test"
            except TimeoutError as e:
                problem = str(e)
        if self.proc is not None:
            _kill_group(self.proc, signal.SIGKILL)
        if self.notify_sock is not None:
            self._notify_stop.set()
            self._notify_thread.join(2)
            self.notify_sock.close()
            self.notify_sock = None
        if self.listen_sock is not None:
            self.listen_sock.close()
            self.listen_sock = None
        return problem

    # output

    def log_text(self):
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(f"  | {l}" for l in self.log_text().splitlines()[-lines:])

    def sanitizer_reports(self):
        text = self.log_text()
        return [m for m in SANITIZER_MARKERS if m in text]

    # clients

    def login(self, user, password=None):
        return login(self.base, user, PASSWORDS[user] if password is None else password)

    def ws(self, user=None, jar=None, **kw):
        """A WebSocket logged in as user (or with jar)."""
        if jar is None and user is not None:
            jar = self.login(user)
        return WS.connect(self.base, cookies=jar, **kw)

    def http(self, method, path, **kw):
        return http(self.base, method, path, **kw)

    # D-Bus (through this daemon's bus)

    def busctl(self, *args, uid=None, check=False):
        return self.bus.busctl(*args, uid=uid, check=check)

    def create_room(self, title, staff_only=False):
        return self.bus.call("CreateRoom", "sb", title, staff_only)[0]


# --- the stack ------------------------------------------------------------

class Stack:
    """Everything one test needs, in one temporary directory. Context
    manager; also closed at exit."""

    def __init__(self, name=None, pam_users=None):
        """pam_users: pamenv.User list replacing the default accounts."""
        self.name = name or Path(sys.argv[0]).stem
        self.pam_users = pam_users
        self.dir = Path(tempfile.mkdtemp(prefix=f"mc-{self.name[:20]}-"))
        # setpriv'ed clients (uid 65534) must reach the bus socket.
        os.chmod(self.dir, 0o755)
        self.redis = Redis(self.dir)
        self.more_redis = []        # replicas and sentinels, stopped with the stack
        self.buses = []
        self._bus = None
        self.daemons = []
        self.pam = None
        self._base_env = None
        self.closed = False
        self.sanitizer_failures = []
        self.teardown_failures = []
        atexit.register(self.close)

    @property
    def base_env(self):
        if self._base_env is None:
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("LD_PRELOAD", "PAM_WRAPPER", "NSS_WRAPPER", "NOTIFY_SOCKET",
                                        "WATCHDOG_", "LISTEN_"))}
            self.pam, env, asan = _pam_env(self.dir, env, self.pam_users)
            if asan:
                env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0")
                if "detect_leaks" not in env["ASAN_OPTIONS"]:
                    env["ASAN_OPTIONS"] += ":detect_leaks=1"
                env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=0")
                supp = LIB / "lsan.supp"
                if supp.exists():
                    env.setdefault("LSAN_OPTIONS", f"suppressions={supp}:print_suppressions=0")
            self._base_env = env
        return self._base_env

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def bus(self):
        """The default bus (started on first use)."""
        if self._bus is None:
            self._bus = self.new_bus("bus")
        return self._bus

    def new_bus(self, name=None, **kw):
        kw.setdefault("env", _nss_only_env(self.base_env))
        b = DBus(self.dir, name or f"bus{len(self.buses)}", **kw)
        b.start()
        self.buses.append(b)
        return b

    def start_daemon(self, mode="listen", args=(), bus=None, own_bus=False, bus_args=None, wait=True,
                     name=None, watchdog_usec=None, env=None, config=None):
        """Starts a multichatd (and Redis and the default bus if needed).
        own_bus=True (or bus_args, for DBus()) gives it a bus of its own
        (two daemons cannot own the same name on one bus)."""
        require_built()
        self.redis.start()
        if bus is None:
            bus = self.new_bus(**(bus_args or {})) if own_bus or bus_args else self.bus
        name = name or f"d{len(self.daemons) + 1}"
        for attempt in range(3):
            d = Daemon(self, name, bus, mode=mode, args=args, watchdog_usec=watchdog_usec, env=env,
                       config=config)
            self.daemons.append(d)
            d.start()
            if not wait:
                return d
            try:
                d.wait_ready(10.0)
                return d
            except DaemonDied:
                # --listen on a port picked free a moment ago: another test
                # running in parallel may have taken it meanwhile.
                if mode != "listen" or "in use" not in d.log_text() or attempt == 2:
                    raise
                log(f"# {name}: port {d.port} was taken, retrying")
                d.cleanup()
                self.daemons.remove(d)
                for f in (d.logfile, d.notify_path):
                    try:
                        f.unlink()
                    except FileNotFoundError:
                        pass
        raise AssertionError("unreachable")

    def start_replicated(self, n_sentinels=3, down_after_ms=1000):
        """Puts the stack's Redis on TCP, adds a replica of it and sentinels
        that know both and each other; returns (replica, sentinels)."""
        self.redis.port = self.redis.port or _free_port()
        self.redis.start()
        # Redis 7 waits 5 s before a first full sync by default; a test
        # that kills the master sooner would find an empty replica.
        self.redis.command("CONFIG", "SET", "repl-diskless-sync-delay", "0")
        replica = Redis(self.dir, name="replica", port=_free_port(),
                        args=["--replicaof", "127.0.0.1", str(self.redis.port)], auth=self.redis.auth)
        self.more_redis.append(replica)
        replica.start()
        wait_until(lambda: replica.command("ROLE")[3] == "connected", 30, interval=0.1,
                   what="the replica in sync with the master")
        sentinels = []
        for i in range(n_sentinels):
            s = Sentinel(self.dir, f"sentinel{i}", _free_port(), self.redis, down_after_ms=down_after_ms)
            self.more_redis.append(s)
            s.start()
            sentinels.append(s)

        def known():
            return all(len(s.command("SENTINEL", "replicas", "mc")) == 1 and
                       len(s.command("SENTINEL", "sentinels", "mc")) == n_sentinels - 1 for s in sentinels)
        wait_until(known, 30, interval=0.2, what="sentinels that know the replica and each other")
        return replica, sentinels

    # D-Bus shortcuts on the default bus

    def busctl(self, *args, uid=None, check=False):
        return self.bus.busctl(*args, uid=uid, check=check)

    def create_room(self, title, staff_only=False, bus=None):
        """CreateRoom over D-Bus; returns the new room's id."""
        return (bus or self.bus).call("CreateRoom", "sb", title, staff_only)[0]

    def close(self):
        if self.closed:
            return
        self.closed = True
        for d in self.daemons:
            try:
                problem = d.cleanup()
                if problem:
                    self.teardown_failures.append(f"{problem}:\n{d.log_tail(30)}")
            except Exception as e:  # keep tearing down
                log(f"# cleanup of {d.name}: {e}")
            reports = d.sanitizer_reports()
            if reports:
                text = d.log_text()
                i = min((text.find(m) for m in reports if text.find(m) >= 0), default=0)
                self.sanitizer_failures.append((d, reports, text[max(0, i - 300):i + 8000]))
        for b in self.buses:
            b.stop()
        for r in self.more_redis:
            r.stop()
        self.redis.stop()
        if self.pam is not None and hasattr(self.pam, "cleanup"):
            try:
                self.pam.cleanup()
            except Exception:
                pass
        if not KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            log(f"# kept {self.dir}")


# --- running a test file --------------------------------------------------

class Check:
    """check(cond, "what") prints ok/FAIL and remembers failures; the test
    goes on. check.fatal(...) stops it."""

    def __init__(self):
        self.failures = []
        self.count = 0

    def __call__(self, cond, what, detail=None):
        self.count += 1
        if cond:
            log(f"ok   {what}")
        else:
            self.failures.append(what)
            log(f"FAIL {what}" + (f" -- {detail}" if detail is not None else ""))
        return bool(cond)

    def eq(self, got, want, what):
        return self(got == want, what, f"got {got!r}, want {want!r}")

    def within(self, got, allowed, what):
        return self(got in allowed, what, f"got {got!r}, want one of {allowed!r}")

    def fatal(self, cond, what, detail=None):
        if not self(cond, what, detail):
            raise AssertionError(what)

    def raises(self, exc_type, fn, what):
        try:
            fn()
        except exc_type as e:
            self(True, what)
            return e
        except Exception as e:
            self(False, what, f"raised {type(e).__name__}: {e}")
            return None
        self(False, what, "did not raise")
        return None


def require_built():
    if not DAEMON.exists():
        raise Skip(f"{DAEMON} is not built")
    if not AUTH_HELPER.exists():
        raise Skip(f"{AUTH_HELPER} is not built")


class _Timeout(BaseException):
    pass


class _Interrupted(BaseException):
    pass


def main(test, timeout=None, needs_root=True, stack_args=None):
    """Runs test(stack, check) and exits 0/1/77. stack_args: keyword
    arguments for Stack()."""
    name = Path(sys.argv[0]).stem
    if timeout is None:
        timeout = float(os.environ.get("MULTICHAT_TEST_TIMEOUT") or (110 if ASAN else 55))
    check = Check()

    def on_alarm(signum, frame):
        raise _Timeout()

    def on_term(signum, frame):
        # meson's own timeout, Ctrl-C: still tear everything down.
        raise _Interrupted(signum)

    signal.signal(signal.SIGALRM, on_alarm)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_term)
    signal.alarm(int(timeout))
    status = 0
    stack = None
    try:
        if needs_root and os.geteuid() != 0:
            raise Skip("needs root (the daemon owns its bus name as root; refusal checks use setpriv)")
        require_built()
        with Stack(name, **(stack_args or {})) as stack:
            try:
                test(stack, check)
            except BaseException:
                # Show what the daemons said before the directory goes.
                for d in stack.daemons:
                    log(f"# {d.name} log:\n{d.log_tail(60)}")
                raise
            if check.failures:
                for d in stack.daemons:
                    log(f"# {d.name} log:\n{d.log_tail(60)}")
    except Skip as e:
        signal.alarm(0)
        log(f"SKIP {name}: {e}")
        sys.stdout.flush()
        sys.exit(77)
    except _Timeout:
        log(f"FAIL {name}: the whole test took longer than {timeout}s")
        status = 1
    except _Interrupted as e:
        log(f"FAIL {name}: interrupted by signal {e.args[0]}")
        status = 1
    except Exception:
        traceback.print_exc(file=sys.stdout)
        log(f"FAIL {name}: unexpected exception")
        status = 1
    finally:
        signal.alarm(0)
    if stack is not None:
        for problem in stack.teardown_failures:
            log(f"FAIL {problem}")
            check.failures.append(problem)
            status = 1
        for d, reports, excerpt in stack.sanitizer_failures:
            log(f"FAIL {d.name}: sanitizer reports {reports}:")
            log(excerpt)
            check.failures.append(f"sanitizer reports from {d.name}")
            status = 1
    if check.failures:
        status = 1
    log(f"# {name}: {check.count} checks, {len(check.failures)} failed" +
        (f": {check.failures}" if check.failures else ""))
    sys.stdout.flush()
    sys.exit(status)


# --- protocol helpers -----------------------------------------------------

def join(ws, room, timeout=5.0, **extra):
    """Sends join and returns the reply (obj, raw): the join event for that
    room or an error."""
    cmd = {"command": "join", "room": room}
    cmd.update(extra)
    ws.send_json(cmd)
    rid = str(room)
    return ws.expect(lambda o: o.get("join") == rid or "error" in o, timeout * SLOW,
                     what=f"join reply for room {rid}")


def leave(ws, room, timeout=5.0, **extra):
    cmd = {"command": "leave", "room": room}
    cmd.update(extra)
    ws.send_json(cmd)
    rid = str(room)
    return ws.expect(lambda o: ("leave" in o and o.get("leave") == rid) or "error" in o,
                     timeout * SLOW, what=f"leave reply for room {rid}")


def send(ws, room, message, **extra):
    cmd = {"command": "send", "room": room, "message": message}
    cmd.update(extra)
    ws.send_json(cmd)


def is_msg(room, message=None, username=None, msg_type=0):
    """A predicate for message-like events."""
    def p(o):
        return (o.get("msg_type") == msg_type and o.get("room") == str(room)
                and (message is None or o.get("message") == message)
                and (username is None or o.get("username") == username))
    return p


def is_error(code=None, ref=None):
    def p(o):
        return "error" in o and (code is None or o["error"] == code) and (ref is None or o.get("ref") == ref)
    return p


def expect_message(ws, room, message, username=None, timeout=5.0):
    return ws.expect(is_msg(room, message, username), timeout * SLOW,
                     what=f"message {message!r} in room {room}")


# --- HTTP helpers ---------------------------------------------------------

def csp_directives(value):
    out = {}
    for part in (value or "").split(";"):
        words = part.split()
        if words:
            out[words[0].lower()] = words[1:]
    return out


def check_security_headers(check, r, what):
    """The headers every response carries (protocol.md, HTTP)."""
    h = r.headers
    csp = h.get("Content-Security-Policy")
    ok = False
    if csp:
        d = csp_directives(csp)
        script = d.get("script-src", d.get("default-src"))
        ok = script is not None and "'unsafe-inline'" not in script and "*" not in script
    check(ok, f"{what}: Content-Security-Policy without inline script", csp)
    check.eq((h.get("X-Content-Type-Options") or "").lower(), "nosniff", f"{what}: X-Content-Type-Options")
    check.eq((h.get("Referrer-Policy") or "").lower(), "same-origin", f"{what}: Referrer-Policy")
    check.eq((h.get("X-Frame-Options") or "").upper(), "DENY", f"{what}: X-Frame-Options")


INLINE_SCRIPT = __import__("re").compile(r"<script(?![^>]*\bsrc\s*=)[^>]*>", __import__("re").I)


def has_inline_script(html_text):
    return bool(INLINE_SCRIPT.search(html_text))


def location_path(r):
    """The Location header reduced to path?query (URL-decoded), and whether
    it stays on the same origin."""
    import urllib.parse
    loc = r.headers.get("Location") or ""
    u = urllib.parse.urlsplit(loc)
    same = (not u.scheme and not u.netloc and not loc.startswith("//")) or \
        (u.scheme == "http" and u.hostname == "127.0.0.1")
    path = urllib.parse.unquote(u.path) + ("?" + urllib.parse.unquote(u.query) if u.query else "")
    return path, same
