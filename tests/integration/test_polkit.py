#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""D-Bus changes go through Debian's real polkitd: the shipped action and
rules files admit the admin group without a password; a rule that wants
authentication makes a non-interactive call fail with
InteractiveAuthorizationRequired (multichatctl --no-ask-password says so);
a rule that says no refuses an admin-group member the group check alone
would let in. Without polkit on the bus the group check decides again.

polkitd runs as a plain process on the test's private bus
(DBUS_SYSTEM_BUS_ADDRESS) in a mount namespace of its own where its
action and rules directories are the test's: nothing on the machine
changes."""

import fcntl
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import termios
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
from harness import ERROR_ACCESS_DENIED, wait_until  # noqa: E402
import pamenv  # noqa: E402

POLKITD = "/usr/lib/polkit-1/polkitd"
POLKIT_NAME = "org.freedesktop.PolicyKit1"
ERROR_INTERACTIVE = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
CTL = harness.BUILD / "daemon" / "multichatctl"
ADMIN_GID = pamenv.DEFAULT_GROUPS["multichat-admin"]
CAROL, DAVE, ERIN = 1003, 1004, 1005
BOB = 1002
DAEMON_USER = 1010      # "multichat", the user the packaged daemon runs as
USERS = list(pamenv.DEFAULT_USERS) + [
    pamenv.User(name, uid, f"{name}-pw", groups=("multichat-admin",))
    for name, uid in (("carol", CAROL), ("dave", DAVE), ("erin", ERIN))] + [
    pamenv.User("multichat", DAEMON_USER, os.urandom(16).hex(), home="/nonexistent")]
try:
    # polkitd drops to its own user, which it and the bus look up through
    # the test's accounts.
    _pk = pwd.getpwnam("polkitd")
    USERS.append(pamenv.User("polkitd", _pk.pw_uid, os.urandom(16).hex(), gid=_pk.pw_gid, home="/nonexistent"))
except KeyError:
    _pk = None

# Evaluated before the shipped rules (file names sort so): dave must
# authenticate, erin may not at all, though both are in the admin group.
TEST_RULES = """
polkit.addRule(function(action, subject) {
        if (action.id != "org.multichat.chat1.manage")
                return undefined;
        if (subject.user == "dave")
                return polkit.Result.AUTH_ADMIN;
        if (subject.user == "erin")
                return polkit.Result.NO;
        return undefined;
});
"""

# polkitd owns its name on the private bus as on the system bus; callers
# may talk to it, and it to their authentication agents.
POLKIT_BUS_POLICY = f"""
  <policy user="polkitd"><allow own="{POLKIT_NAME}"/>
    <allow send_interface="org.freedesktop.PolicyKit1.AuthenticationAgent"/></policy>
  <policy context="default"><allow send_destination="{POLKIT_NAME}"/></policy>
"""


def polkit_dirs(stack):
    root = stack.dir / "polkit"
    dirs = {"actions": root / "actions", "rules": root / "rules", "etc-rules": root / "etc-rules"}
    for p in dirs.values():
        p.mkdir(parents=True)
        os.chmod(p, 0o755)
    shutil.copy(harness.SRC / "dbus" / "org.multichat.chat1.policy", dirs["actions"])
    shutil.copy(harness.SRC / "dbus" / "org.multichat.chat1.rules", dirs["rules"])
    (dirs["etc-rules"] / "00-test.rules").write_text(TEST_RULES)
    return dirs


def start_polkitd(stack, bus):
    dirs = polkit_dirs(stack)
    script = ("set -e; "
              f"mount --bind '{dirs['actions']}' /usr/share/polkit-1/actions; "
              f"mount --bind '{dirs['rules']}' /usr/share/polkit-1/rules.d; "
              f"mount --bind '{dirs['etc-rules']}' /etc/polkit-1/rules.d; "
              f"exec {POLKITD}")
    env = harness._nss_only_env(stack.base_env)
    env["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
    log = open(stack.dir / "polkitd.log", "wb")
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    log.close()
    return proc


def stop_polkitd(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def has_owner(bus, name):
    p = bus.busctl("call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                   "NameHasOwner", "s", name)
    return p.returncode == 0 and p.stdout.strip() == "b true"


def ctl(bus, uid, *args):
    argv = bus._as([str(CTL), f"--address={bus.address}", *args], uid)
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


def check_authorization_as(bus, caller, pid):
    """CheckAuthorization for process pid, asked by uid caller, without
    interaction: busctl's output or its error."""
    p = bus.busctl("call", POLKIT_NAME, "/org/freedesktop/PolicyKit1/Authority",
                   "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization", "(sa{sv})sa{ss}us",
                   "unix-process", 2, "pid", "u", pid, "start-time", "t", 0,
                   "org.multichat.chat1.manage", 0, 0, "", uid=caller)
    return (p.stdout if p.returncode == 0 else p.stderr).strip()


def check_action_owner(stack, bus, check):
    """The packaged daemon runs as multichat, not root: polkit answers it
    about other users only because the action names it as its owner."""
    subject = subprocess.Popen(bus._as(["sleep", "60"], (CAROL, [ADMIN_GID])), stdin=subprocess.DEVNULL)
    try:
        out = check_authorization_as(bus, (DAEMON_USER, []), subject.pid)
        check(out.startswith("(bba{ss}) true"), "polkit answers user multichat about carol's process: yes", out)
        out = check_authorization_as(bus, (BOB, []), subject.pid)
        check("Only trusted callers" in out, "... but refuses to answer bob, who owns no such action", out)
    finally:
        subject.kill()
        subject.wait()


def read_until(fd, wants, timeout):
    """What the terminal showed until one of `wants` appeared (or the time
    ran out, or the other side closed)."""
    out = b""
    deadline = time.monotonic() + timeout
    while not any(w.encode() in out for w in wants) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0, deadline - time.monotonic()))
        if not ready:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:         # EIO: every writer is gone
            break
        if not chunk:
            break
        out += chunk
    return out.decode(errors="replace")


def type_password(master, text, timeout=10):
    """Types at a password prompt once the agent has turned echo off: it
    does so with TCSAFLUSH, which throws away what was typed before."""
    deadline = time.monotonic() + timeout
    while termios.tcgetattr(master)[3] & termios.ECHO and time.monotonic() < deadline:
        time.sleep(0.02)
    os.write(master, text)


def ctl_on_tty(bus, uid, *args):
    """multichatctl as someone at a terminal: (process, master fd)."""
    master, slave = os.openpty()

    def controlling_tty():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = dict(os.environ, TERM="dumb")
    proc = subprocess.Popen(bus._as([str(CTL), f"--address={bus.address}", *args], uid),
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            preexec_fn=controlling_tty, env=env)
    os.close(slave)
    return proc, master


def check_tty_agent(stack, bus, dave, check):
    """On a terminal, multichatctl starts polkit's text agent for its own
    process, as systemctl does: polkit asks dave there. A wrong answer (or
    a helper that cannot check it) is refused; the agent ends with
    multichatctl. Without a terminal (ctl() above) no agent runs and the
    same call is refused at once. Whether the password is then checked
    depends on polkit-agent-helper-1 being setuid root, which the system
    test's real installation has."""
    if not os.access("/usr/bin/pkttyagent", os.X_OK):
        check(False, "pkttyagent is installed (Debian's polkitd ships it)")
        return
    polkit_log = stack.dir / "polkitd.log"
    proc, master = ctl_on_tty(bus, dave, "create-room", "Dave's tty")
    try:
        shown = read_until(master, ("Password:", "AUTHENTICATION FAILED"), 20)
        check("AUTHENTICATING FOR org.multichat.chat1.manage" in shown and "Authenticating as:" in shown,
              "multichatctl on a terminal as dave: polkit's text agent asks there", shown)
        check(f"Registered Authentication Agent for unix-process:{proc.pid}:" in polkit_log.read_text(),
              "the agent is registered for multichatctl's own process", polkit_log.read_text()[-1500:])
        if "Password:" in shown:
            type_password(master, b"not-the-password\n")
        shown += read_until(master, ("\x00",), 30)
        proc.wait(30)
        check(proc.returncode == 1 and "Not authorized" in shown,
              "refused without the right password: 'Not authorized', exit 1", f"{proc.returncode}: {shown}")
        try:
            wait_until(lambda: f"Unregistered Authentication Agent for unix-process:{proc.pid}:"
                       in polkit_log.read_text(), 10, interval=0.1, what="the agent gone")
        except TimeoutError:
            pass
        check(f"Unregistered Authentication Agent for unix-process:{proc.pid}:" in polkit_log.read_text(),
              "the agent ended with multichatctl", polkit_log.read_text()[-1500:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)

def test(stack, check):
    for tool in (POLKITD, shutil.which("unshare") or "/usr/bin/unshare"):
        if not os.access(tool, os.X_OK):
            raise harness.Skip(f"{tool} is not installed (apt-get install polkitd util-linux)")
    if _pk is None:
        raise harness.Skip("no user polkitd (apt-get install polkitd)")
    harness.BUS_CONF = harness.BUS_CONF.replace("{extra}", "{extra}" + POLKIT_BUS_POLICY)
    d = stack.start_daemon()
    bus = d.bus
    carol, dave, erin = (CAROL, [ADMIN_GID]), (DAVE, [ADMIN_GID]), (ERIN, [ADMIN_GID])

    proc = start_polkitd(stack, bus)
    try:
        try:
            wait_until(lambda: has_owner(bus, POLKIT_NAME) or proc.poll() is not None, 20, interval=0.1,
                       what="polkitd on the bus")
        except TimeoutError:
            pass
        check.fatal(has_owner(bus, POLKIT_NAME), "polkitd owns org.freedesktop.PolicyKit1 on the bus",
                    f"exit {proc.poll()}: " + (stack.dir / "polkitd.log").read_text(errors="replace")[-2000:] +
                    (stack.dir / "bus.log").read_text(errors="replace")[-1000:])

        # dbus-send: messages without the interactive-authorization flag.
        check.eq(bus.call_error("CreateRoom", "Carol's", False, uid=carol), None,
                 "carol (multichat-admin) creates a room: the shipped rules admit the group")
        check.eq(bus.call_error("CreateRoom", "Root's", False), None, "root creates a room")
        check.eq(bus.call_error("CreateRoom", "Erin's", False, uid=erin), ERROR_ACCESS_DENIED,
                 "erin (multichat-admin, but a rule says no) is refused: polkit decides, not the group")
        check.eq(bus.call_error("CreateRoom", "Dave's", False, uid=dave), ERROR_INTERACTIVE,
                 "dave (a rule wants a password), without interaction: InteractiveAuthorizationRequired")
        p = ctl(bus, dave, "--no-ask-password", "create-room", "Dave's")
        check(p.returncode == 1 and "Authentication required" in p.stderr,
              "multichatctl --no-ask-password as dave: 'Authentication required', exit 1",
              f"{p.returncode}: {p.stderr}")
        # Interaction allowed, but no agent runs for dave: polkit cannot ask.
        p = ctl(bus, dave, "create-room", "Dave's")
        check(p.returncode == 1, "multichatctl as dave, no polkit agent: refused, exit 1", f"{p.returncode}: {p.stderr}")
        harness.log(f"# (it said: {p.stderr.strip()})")
        check_tty_agent(stack, bus, dave, check)
        p = ctl(bus, erin, "announce", "hello")
        check(p.returncode == 1 and "Not authorized" in p.stderr,
              "multichatctl announce as erin: 'Not authorized', exit 1", f"{p.returncode}: {p.stderr}")
        p = ctl(bus, carol, "--json", "list-rooms")
        check(p.returncode == 0 and "Carol's" in p.stdout and "Erin's" not in p.stdout and "Dave's" not in p.stdout,
              "only carol's and root's rooms were created", p.stdout + p.stderr)
        p = ctl(bus, carol, "connections")
        check(p.returncode == 0, "carol may list connections", p.stderr)
        p = ctl(bus, erin, "connections")
        check(p.returncode == 1, "erin may not list connections", p.stderr)
        check_action_owner(stack, bus, check)
    finally:
        stop_polkitd(proc)

    wait_until(lambda: not has_owner(bus, POLKIT_NAME), 10, what="polkitd gone")
    check.eq(bus.call_error("CreateRoom", "Erin's", False, uid=erin), None,
             "polkit gone: erin (multichat-admin) is admitted by the group check")
    check.eq(bus.call_error("CreateRoom", "Alice's", False, uid=(1001, [])), ERROR_ACCESS_DENIED,
             "... and alice (not admin) is still refused")
    check(d.alive, "the daemon is still running")


harness.main(test, stack_args={"pam_users": USERS})
