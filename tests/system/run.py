#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""System test: the Debian package under a real systemd, checked the way an
administrator would check it.

It boots the host's release, Debian 12 or 13 (MULTICHAT_SYSTEM_RELEASE=
bookworm or trixie for the other one), with systemd as PID 1 in systemd-nspawn, installs the freshly built
build-deb/multichat_*.deb with `apt-get install ./…deb` on a root that has
no D-Bus yet (as on a minimal server), and drives the result
through its real interfaces only: systemctl, busctl/multichatctl,
journalctl, useradd/chpasswd, and HTTP + WebSocket from a client in the
container's network namespace (tests/system/client.py).

  - the rootfs (debootstrap --variant=minbase, plus the package's Depends
    downloaded, not installed, so that apt installs them offline together
    with the package) is cached in $MULTICHAT_SYSTEM_CACHE
    (/var/cache/multichat-test) and never changed by a run: each run boots
    a private overlayfs on top of it, in its own mount namespace;
  - the .deb is build-deb/multichat_*.deb ($MULTICHAT_DEB_DIR), rebuilt
    with packaging/build-deb.sh when missing or older than the sources;
    MULTICHAT_DEB=path tests that file as it is (a package built on the
    release under test: one built on Debian 13 cannot install on 12);
  - then the upgrade, in a second container from the same layers: the
    package of the previous release (OLD_COMMIT, 0.1.0: the first key
    layout in Redis; $MULTICHAT_OLD_DEB, else built here once from git and
    cached, see old_deb()) is installed and used (rooms, sessions,
    messages), the new one installed over it, and all of it found again;
  - every check prints "ok   what" or "FAIL what -- detail"; exit 0 when all
    passed, 1 when one failed, 77 (skip) when not root or when debootstrap,
    systemd-nspawn or the network they need cannot work here. With
    MULTICHAT_SYSTEM_REQUIRED=1 (CI) such a skip is a failure instead.

Installs debootstrap, systemd-container and dpkg-dev with apt-get when
missing (and the Build-Depends, through build-deb.sh --install-deps).
MULTICHAT_KEEP_TMP=1 keeps the run directory (overlay upper dir, logs).
Measured here: ~20 s with a warm cache, ~25 s more when the .deb is
rebuilt, ~55 s more for the first debootstrap (about 100 s cold in all).
Since the upgrade test: 81 s in all with a warm cache and the .deb built,
of which the upgrade 27 s (45-55 s on a loaded machine); building the
package of 0.1.0 takes ~60 s, once.
"""

import ctypes
import fcntl
import hashlib
import json
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import termios
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

sys.dont_write_bytecode = True

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent
CLIENT = HERE / "client.py"
BUILD_DEB = SRC / "packaging" / "build-deb.sh"
DEB_DIR = Path(os.environ.get("MULTICHAT_DEB_DIR") or (SRC / "build-deb")).resolve()

CACHE = Path(os.environ.get("MULTICHAT_SYSTEM_CACHE") or "/var/cache/multichat-test")
MIRROR = os.environ.get("MULTICHAT_DEBIAN_MIRROR") or "http://deb.debian.org/debian"
SECURITY_MIRROR = (os.environ.get("MULTICHAT_DEBIAN_SECURITY_MIRROR")
                   or "http://deb.debian.org/debian-security")
RELEASES = {"bookworm": "Debian 12", "trixie": "Debian 13"}


def host_release():
    """The host's codename when it is a supported release: the package
    built here installs only there."""
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "bookworm"
    m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.M)
    return m.group(1) if m and m.group(1) in RELEASES else "bookworm"


SUITE = os.environ.get("MULTICHAT_SYSTEM_RELEASE") or host_release()
# What the test itself needs inside; everything the package needs must come
# from its own Depends (so a missing one shows up here, not on a user's box).
# No dbus: the package must pull it in and get the system bus started.
BASE_PACKAGES = ["systemd", "systemd-sysv", "redis-server", "libpam-modules"]
# What the package suggests and the test installs after the checks without it.
SUGGESTED_PACKAGES = ["polkitd"]
HOST_TOOLS = {"debootstrap": "debootstrap", "systemd-nspawn": "systemd-container",
              "nsenter": "util-linux", "unshare": "util-linux", "dpkg-deb": "dpkg",
              # build-deb.sh's first step (dpkg-parsechangelog) and ours.
              "dpkg-checkbuilddeps": "dpkg-dev"}
KEEP = os.environ.get("MULTICHAT_KEEP_TMP") == "1"
REQUIRED = os.environ.get("MULTICHAT_SYSTEM_REQUIRED") == "1"
TIMEOUT = int(os.environ.get("MULTICHAT_TEST_TIMEOUT") or 840)

PYTHON = sys.executable or "/usr/bin/python3"
CONTAINER_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                 "LANG": "C.UTF-8", "HOME": "/root", "TERM": "dumb",
                 "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "DEBIAN_FRONTEND": "noninteractive"}

BUS_NAME = "org.multichat.Chat1"
MANAGER = [BUS_NAME, "/org/multichat/Chat1", "org.multichat.Chat1.Manager"]
LOGIN_FAILURE_ID = "5c1d2a7e0b8f4d3c9e6a1b2c3d4e5f60"
UNITS = ["multichat.service", "multichat.socket", "multichat-auth.service", "multichat-auth.socket"]
PASSWORDS = {"alice": "Alice-pw-7", "bob": "Bob-pw-8", "carol": "Carol-pw-9", "root": "Root-pw-6"}
WRONG_PASSWORD = "not-Alice-pw-3"
EXPOSURE_MAX = 1.5

CLONE_NEWNS = 0x00020000
PR_SET_PDEATHSIG = 1


def log(msg=""):
    print(msg, flush=True)


class Skip(Exception):
    """The test cannot run here (exit 77)."""


class Fatal(Exception):
    """A failure after which the remaining checks make no sense."""


class Timeout(BaseException):
    pass


class Check:
    """check(cond, "what", detail) prints ok/FAIL and remembers failures."""

    def __init__(self):
        self.failures = []
        self.count = 0

    def __call__(self, cond, what, detail=None):
        self.count += 1
        if cond:
            log(f"ok   {what}")
        else:
            self.failures.append(what)
            log(f"FAIL {what}" + (f" -- {detail}" if detail not in (None, "") else ""))
        return bool(cond)

    def eq(self, got, want, what):
        return self(got == want, what, f"got {got!r}, want {want!r}")

    def fatal(self, cond, what, detail=None):
        if not self(cond, what, detail):
            raise Fatal(what)


class Timer:
    def __init__(self):
        self.t0 = time.monotonic()
        self.marks = []

    def mark(self, what):
        now = time.monotonic()
        start = self.marks[-1][2] if self.marks else self.t0
        self.marks.append((what, now - start, now))
        log(f"# {what}: {now - start:.1f} s")

    def summary(self):
        total = time.monotonic() - self.t0
        return ", ".join(f"{w} {d:.1f}" for w, d, _ in self.marks) + f"; total {total:.1f} s"


def run(argv, timeout=600, check=False, **kw):
    """subprocess.run with text output (stdout and stderr together)."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       errors="replace", timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({r.returncode}):\n{tail(r.stdout)}")
    return r


def tail(text, lines=30):
    return "\n".join(text.rstrip().splitlines()[-lines:])


@contextmanager
def flocked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def sha(*parts):
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


# --- the host ---------------------------------------------------------------

def ensure_host_tools():
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if not shutil.which(tool)})
    if not missing:
        return
    if not shutil.which("apt-get"):
        raise Skip(f"missing {', '.join(missing)} and no apt-get to install them")
    log(f"# installing {' '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    argv = ["apt-get", "install", "-y", "--no-install-recommends",
            "-o", "DPkg::Lock::Timeout=300", *missing]
    r = run(argv, env=env)
    if r.returncode != 0:
        run(["apt-get", "update", "-o", "DPkg::Lock::Timeout=300"], env=env)
        r = run(argv, env=env)
    still = sorted({pkg for tool, pkg in HOST_TOOLS.items() if not shutil.which(tool)})
    if still:
        raise Skip(f"could not install {', '.join(still)}:\n{tail(r.stdout, 10)}")


def private_mount_namespace():
    """Everything mounted from here on (overlay, tmpfs, proc) is ours alone
    and goes away with the last process of this namespace, even on SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise Skip(f"unshare(CLONE_NEWNS): {os.strerror(ctypes.get_errno())}")
    run(["mount", "--make-rprivate", "/"], check=True)


def die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


# --- the package ------------------------------------------------------------

def newest_source_mtime():
    """The newest file that can end up in the package: everything git knows
    (tracked or new, not ignored) outside tests/ and .ci/."""
    r = run(["git", "-C", str(SRC), "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    if r.returncode != 0:
        return 0.0
    newest = 0.0
    for name in r.stdout.split("\0"):
        if not name or name.startswith(("tests/", ".ci/")):
            continue
        try:
            newest = max(newest, (SRC / name).stat().st_mtime)
        except OSError:
            pass        # deleted but still in the index
    return newest


def newest_deb():
    debs = sorted(DEB_DIR.glob("multichat_*.deb"), key=lambda p: p.stat().st_mtime)
    return debs[-1] if debs else None


def build_deb(why, timer):
    """packaging/build-deb.sh without its unit tests and lintian (other
    suites run those); with --install-deps when Build-Depends are missing."""
    script = BUILD_DEB.relative_to(SRC)
    if not BUILD_DEB.exists():
        raise Fatal(f"the package is {why} and there is no {script} to build it")
    argv = [str(BUILD_DEB), "--nocheck", "--no-lintian", "--out", str(DEB_DIR)]
    if run(["dpkg-checkbuilddeps", "-B", str(SRC / "packaging/debian/control")]).returncode != 0:
        argv.append("--install-deps")
    log(f"# the package is {why}: {' '.join([str(script)] + argv[1:])}")
    r = run(argv, cwd=SRC, timeout=900, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    timer.mark("building the package")
    if r.returncode != 0:
        log(tail(r.stdout, 40))
        raise Fatal(f"{script} failed with status {r.returncode}")


def locate_deb(timer, dest):
    """Copies the .deb to test to `dest`: $MULTICHAT_DEB, else the newest
    build-deb/multichat_*.deb, rebuilt first when missing or older than the
    sources. A copy, because build-deb.sh empties build-deb/ when it runs."""
    if os.environ.get("MULTICHAT_DEB"):
        deb = Path(os.environ["MULTICHAT_DEB"]).resolve()
        if not deb.is_file():
            raise Fatal(f"MULTICHAT_DEB={deb} does not exist")
    else:
        with flocked(CACHE / "build-deb.lock"):
            deb = newest_deb()
            newest = newest_source_mtime()
            if deb is None or deb.stat().st_mtime < newest:
                build_deb("missing" if deb is None else f"older than the sources ({deb.name})", timer)
                deb = newest_deb()
                if deb is None or deb.stat().st_mtime < newest:
                    raise Fatal(f"{BUILD_DEB.relative_to(SRC)} left no fresh build-deb/multichat_*.deb")
            shutil.copyfile(deb, dest)
            log(f"# package: {deb} ({deb_field(deb, 'Version')})")
            return dest
    shutil.copyfile(deb, dest)
    log(f"# package: {deb} ({deb_field(deb, 'Version')})")
    return dest


# The last release with the first key layout in Redis (0.1.0): the
# upgrade from it migrates the data.
OLD_COMMIT = "b303d1c"


def old_deb(timer, dest):
    """Copies the package of OLD_COMMIT for this release to `dest`:
    $MULTICHAT_OLD_DEB (release.py builds it in the other release's root),
    else built here from the tree of OLD_COMMIT (old_sources()) by its own
    packaging/build-deb.sh, once, and cached in
    CACHE/old-deb-OLD_COMMIT-SUITE/. A package built on one release does
    not install on the other (library sonames), so only the host's release
    is built here."""
    if os.environ.get("MULTICHAT_OLD_DEB"):
        deb = Path(os.environ["MULTICHAT_OLD_DEB"]).resolve()
        if not deb.is_file():
            raise Fatal(f"MULTICHAT_OLD_DEB={deb} does not exist")
        shutil.copyfile(deb, dest)
        return dest
    if SUITE != host_release():
        raise Fatal(f"no package of {OLD_COMMIT} for {SUITE}: set MULTICHAT_OLD_DEB "
                    f"(tests/system/release.py builds one in {SUITE})")
    root = CACHE / f"old-deb-{OLD_COMMIT}-{SUITE}"
    with flocked(CACHE / f"old-deb-{OLD_COMMIT}-{SUITE}.lock"):
        debs = sorted(root.glob("multichat_*.deb"))
        if not debs:
            build_old_deb(root, timer)
            debs = sorted(root.glob("multichat_*.deb"))
            if not debs:
                raise Fatal(f"building the package of {OLD_COMMIT} left no .deb in {root}")
        shutil.copyfile(debs[-1], dest)
    return dest


def old_sources():
    """The tree of OLD_COMMIT (`git archive`), extracted once into the cache."""
    src = CACHE / f"old-src-{OLD_COMMIT}"
    with flocked(CACHE / f"old-src-{OLD_COMMIT}.lock"):
        if (src / "meson.build").exists():
            return src
        if run(["git", "-C", str(SRC), "cat-file", "-e", OLD_COMMIT + "^{commit}"]).returncode != 0:
            raise Fatal(f"commit {OLD_COMMIT} is not in {SRC}: the upgrade test needs the git history")
        tmp = CACHE / f".tmp-old-src-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        archive = subprocess.Popen(["git", "-C", str(SRC), "archive", OLD_COMMIT], stdout=subprocess.PIPE)
        r = run(["tar", "-x", "-C", str(tmp)], stdin=archive.stdout)
        archive.stdout.close()
        if archive.wait() != 0 or r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise Fatal(f"git archive {OLD_COMMIT} | tar -x failed: {r.stdout}")
        shutil.rmtree(src, ignore_errors=True)
        tmp.rename(src)
        return src


def build_old_deb(root, timer):
    src = old_sources()
    out = root / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    argv = [str(src / "packaging/build-deb.sh"), "--nocheck", "--no-lintian", "--out", str(out)]
    if run(["dpkg-checkbuilddeps", "-B", str(src / "packaging/debian/control")]).returncode != 0:
        argv.append("--install-deps")
    log(f"# building the package of {OLD_COMMIT} in {root} (once; cached)")
    r = run(argv, cwd=src, timeout=1200, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if r.returncode != 0:
        log(tail(r.stdout, 40))
        raise Fatal(f"the package of {OLD_COMMIT} did not build ({r.returncode})")
    for deb in out.glob("multichat_*.deb"):
        shutil.copyfile(deb, root / f".{deb.name}")
        (root / f".{deb.name}").rename(root / deb.name)
    shutil.rmtree(out, ignore_errors=True)
    timer.mark(f"building the package of {OLD_COMMIT}")


def deb_field(deb, field):
    r = run(["dpkg-deb", "-f", str(deb), field])
    return r.stdout.strip() if r.returncode == 0 else ""


def deb_paths(deb):
    """(files, directories) the package ships, as absolute paths."""
    r = run(["dpkg-deb", "-c", str(deb)], check=True)
    files, dirs = [], []
    for line in r.stdout.splitlines():
        # drwxr-xr-x root/root 0 2024-01-01 00:00 ./usr/share/ [-> target]
        parts = line.split(None, 5)
        if len(parts) < 6:
            continue
        name = parts[5].split(" -> ")[0]
        path = "/" + name.lstrip("./").rstrip("/")
        if path == "/":
            continue
        (dirs if line.startswith("d") else files).append(path)
    return files, dirs


# --- the cached root file system ---------------------------------------------

def sources_list():
    return (f"deb {MIRROR} {SUITE} main\n"
            f"deb {MIRROR} {SUITE}-updates main\n"
            f"deb {SECURITY_MIRROR} {SUITE}-security main\n")


def rootfs_lock():
    """One lock per release: the two releases' roots are made side by side."""
    return flocked(CACHE / f"rootfs-{SUITE}.lock")


def clean_stale_tmp():
    """Half-made cache directories of this release's runs that died (we
    hold its lock)."""
    for p in CACHE.glob(f".tmp-{SUITE}-*"):
        run(["umount", "-R", "-l", str(p / "merged")])
        shutil.rmtree(p, ignore_errors=True)


def base_dir():
    """The cached debootstrap of SUITE, named after what went into it."""
    return CACHE / f"{SUITE}-base-{sha(SUITE, MIRROR, ','.join(BASE_PACKAGES), 'minbase-1')}"


def ensure_base(timer):
    base = base_dir()
    if base.is_dir():
        return base
    tmp = CACHE / f".tmp-{SUITE}-base-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"# debootstrap {SUITE} into {base} (once; cached)")
    r = run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             SUITE, str(tmp), MIRROR], timeout=900)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise Skip(f"debootstrap failed (no network to {MIRROR}?):\n{tail(r.stdout, 15)}")
    (tmp / "etc/apt/sources.list").write_text(sources_list())
    run(["chroot", str(tmp), "apt-get", "clean"], env=CONTAINER_ENV)
    tmp.rename(base)
    timer.mark("debootstrap (cold cache)")
    return base


def ensure_deps_layer(base, deb, timer):
    """An overlay layer over the base with the package's (Pre-)Depends and
    the SUGGESTED_PACKAGES the test installs later
    downloaded from Debian into apt's cache, with the package lists, keyed
    by them: `apt-get install ./multichat.deb` in the container (which has
    no network) then installs them the way it would on a user's machine.
    Neither they nor the package itself are installed in it."""
    depends = ", ".join(d for d in (deb_field(deb, "Pre-Depends"), deb_field(deb, "Depends")) if d)
    layer = CACHE / f"{SUITE}-deps-{sha(base.name, depends, *SUGGESTED_PACKAGES)}"
    if layer.is_dir():
        return layer
    log(f"# installing the package's dependencies into {layer} (once; cached): {depends}")
    tmp = CACHE / f".tmp-{SUITE}-deps-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for d in ("upper", "work", "merged"):
        (tmp / d).mkdir(parents=True)
    m = tmp / "merged"
    try:
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={base},upperdir={tmp / 'upper'},workdir={tmp / 'work'}", str(m)], check=True)
        run(["mount", "-t", "proc", "proc", str(m / "proc")], check=True)
        run(["mount", "--bind", "/dev", str(m / "dev")], check=True)
        policy = m / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        r = run(["chroot", str(m), "apt-get", "update", "-q"], env=CONTAINER_ENV, timeout=600)
        if r.returncode != 0:
            raise Skip(f"apt-get update in the rootfs failed (no network?):\n{tail(r.stdout, 10)}")
        if depends:
            r = run(["chroot", str(m), "apt-get", "satisfy", "-y", "-q", "--no-install-recommends",
                     "--download-only", depends], env=CONTAINER_ENV, timeout=900)
            if r.returncode == 0:
                r = run(["chroot", str(m), "apt-get", "install", "-y", "-q", "--no-install-recommends",
                         "--download-only", *SUGGESTED_PACKAGES], env=CONTAINER_ENV, timeout=900)
            if r.returncode != 0:
                raise Fatal(f"the package's dependencies cannot be installed from Debian {SUITE}: "
                            f"{depends}\n{tail(r.stdout, 15)}")
        policy.unlink()
    finally:
        for sub in ("dev", "proc", ""):
            run(["umount", str(m / sub) if sub else str(m)])
    (tmp / "upper").rename(layer)
    shutil.rmtree(tmp, ignore_errors=True)
    timer.mark("dependency layer (new Depends)")
    return layer


def prepare_rootfs(deb, timer):
    """[upper layer, ..., base] for overlayfs lowerdir=."""
    with rootfs_lock():
        clean_stale_tmp()
        base = ensure_base(timer)
        deps = ensure_deps_layer(base, deb, timer)
    return [deps, base]


# --- the container ------------------------------------------------------------

class Container:
    def __init__(self, lowers, rundir, name="test"):
        self.lowers = lowers
        self.dir = rundir
        self.root = rundir / "merged"
        self.upper = rundir / "upper"
        self.name = f"mc-{name}-{os.getpid()}"
        self.proc = None
        self.pid1 = None
        self.console = rundir / "console.log"

    def boot(self):
        for d in ("upper", "work", "merged"):
            (self.dir / d).mkdir(parents=True)
        lower = ":".join(str(p) for p in self.lowers)
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={lower},upperdir={self.upper},workdir={self.dir / 'work'}",
             str(self.root)], check=True)
        # This host's /run is on disk: nspawn would refuse to clean up in
        # /run/systemd. A tmpfs there, in our namespace only.
        Path("/run/systemd").mkdir(exist_ok=True)
        run(["mount", "-t", "tmpfs", "tmpfs", "/run/systemd"], check=True)
        out = open(self.console, "wb")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "-D", str(self.root), f"--machine={self.name}", "--register=no",
             "--keep-unit", "--private-network", "--console=pipe", "-b"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent)
        out.close()
        self.pid1 = self._find_pid1()
        self._wait_running()

    def _find_pid1(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Skip(f"systemd-nspawn exited ({self.proc.returncode}):\n"
                           f"{tail(self.console.read_text(errors='replace'), 15)}")
            try:
                kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            except OSError:
                kids = []
            for k in kids:
                try:
                    status = Path(f"/proc/{k}/status").read_text()
                except OSError:
                    continue
                m = re.search(r"^NSpid:\s+(.*)$", status, re.M)
                if m and m.group(1).split()[-1] == "1":
                    return int(k)
            time.sleep(0.02)
        raise Skip("systemd-nspawn started no init process")

    def _wait_running(self, timeout=60):
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            # Fails for the first fraction of a second (no manager to talk to yet).
            state = self.out("systemctl", "is-system-running")
            if state in ("running", "degraded"):
                break
            time.sleep(0.05)
        else:
            raise Skip(f"the container did not finish booting (state {state!r})")
        if state == "degraded":
            log("# the container booted degraded: "
                + self.out("systemctl", "--failed", "--no-legend", "--plain").replace("\n", "; "))

    def sh(self, *argv, user=None, input=None, timeout=120):
        """Runs argv inside the container (as `user` with that user's groups)."""
        cmd = ["nsenter", "-t", str(self.pid1), "-a", "--"]
        if user:
            cmd += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
        cmd += [str(a) for a in argv]
        return subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=None if input is not None else subprocess.DEVNULL,
                              text=True, errors="replace", env=CONTAINER_ENV, timeout=timeout)

    def out(self, *argv, **kw):
        return self.sh(*argv, **kw).stdout.strip()

    def sh_tty(self, *argv, user=None, answer=None, prompt="Password:", timeout=60):
        """Runs argv inside the container as someone at a terminal (a
        pseudo-terminal that is its controlling one); types `answer` at
        the first `prompt`. (exit status, what the terminal showed)."""
        cmd = ["nsenter", "-t", str(self.pid1), "-a", "--"]
        if user:
            cmd += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
        master, slave = os.openpty()
        proc = subprocess.Popen(cmd + [str(a) for a in argv], stdin=slave, stdout=slave, stderr=slave,
                                env=CONTAINER_ENV, start_new_session=True,
                                preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        shown, answered = b"", answer is None
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.2)
                if ready:
                    try:
                        chunk = os.read(master, 4096)
                    except OSError:     # EIO: every writer is gone
                        break
                    if not chunk:
                        break
                    shown += chunk
                # Once echo is off: the agent turns it off with TCSAFLUSH,
                # which throws away what was typed before.
                if (not answered and prompt.encode() in shown
                        and not termios.tcgetattr(master)[3] & termios.ECHO):
                    os.write(master, answer.encode() + b"\n")
                    answered = True
            proc.wait(max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finally:
            os.close(master)
        return proc.returncode, shown.decode(errors="replace")

    def state(self, unit):
        return self.out("systemctl", "is-active", unit)

    def prop(self, unit, name):
        return self.out("systemctl", "show", "-P", name, unit)

    def wait_state(self, unit, want, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            s = self.state(unit)
            if s == want or time.monotonic() > deadline:
                return s
            time.sleep(0.05)

    def client_argv(self, *args):
        return ["nsenter", "-t", str(self.pid1), "-n", "--", PYTHON, str(CLIENT), *map(str, args)]

    def client(self, *args, timeout=60):
        """client.py in the container's network; its last JSON line."""
        r = subprocess.run(self.client_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, text=True, timeout=timeout)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            return {"error": f"client.py {args[0]} printed nothing (status {r.returncode}): "
                             f"{tail(r.stderr, 5)}"}
        return json.loads(lines[-1])

    def busctl(self, *args, user=None):
        return self.sh("busctl", "--no-pager", *args, user=user)

    def journal(self, *args):
        return self.out("journalctl", "--no-pager", *args)

    def upper_paths(self):
        out = set()
        for dirpath, dirnames, filenames in os.walk(self.upper):
            rel = "/" + os.path.relpath(dirpath, self.upper)
            rel = "" if rel == "/." else rel
            for n in dirnames + filenames:
                out.add(f"{rel}/{n}")
        return out

    def poweroff(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()       # nspawn: halt the container
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


# --- the checks -----------------------------------------------------------------

def create_room(c, title, staff_only=False, user=None):
    """CreateRoom over D-Bus with busctl: (id or None, output)."""
    r = c.busctl("call", *MANAGER, "CreateRoom", "sb", title, "true" if staff_only else "false", user=user)
    m = re.match(r'so "([^"]+)" "', r.stdout.strip())
    return (m.group(1) if m and r.returncode == 0 else None), r.stdout.strip()


def has_multichatctl(c):
    return c.sh("sh", "-c", "command -v multichatctl").returncode == 0


def ctl_create_room(c, title, user=None):
    """multichatctl create-room when the package ships it, else busctl:
    (success, what ran, output)."""
    if has_multichatctl(c):
        r = c.sh("multichatctl", "create-room", title, user=user)
        return r.returncode == 0, "multichatctl create-room", r.stdout.strip()
    room, out = create_room(c, title, user=user)
    return room is not None, "busctl call CreateRoom", out


def listening_on(c, port):
    """True when a TCP socket in LISTEN state is on `port` (the kernel's view)."""
    text = c.out("cat", "/proc/net/tcp", "/proc/net/tcp6")
    want = f":{port:04X} "
    return any(want in line and line.split()[3] == "0A" for line in text.splitlines()[1:]
               if len(line.split()) > 3)


def check_install(c, ck, deb_in):
    r = c.sh("dpkg-query", "-W", "-f", "${Status}", "dbus")
    ck("ok installed" not in r.stdout and c.sh("test", "-e", "/run/dbus/system_bus_socket").returncode != 0,
       "before: no dbus installed, no system bus", r.stdout)
    r = c.sh("apt-get", "install", "-y", "-q", "--no-install-recommends", deb_in)
    ck.fatal(r.returncode == 0, "apt-get install ./multichat.deb installs it and its dependencies (dbus too)",
             tail(r.stdout))
    for unit in ("multichat.socket", "multichat-auth.socket"):
        ck.eq(c.state(unit), "active", f"{unit} is active after installing")
        ck.eq(c.out("systemctl", "is-enabled", unit), "enabled",
              f"{unit} is enabled (listens after a reboot)")
    ck(listening_on(c, 8080), "port 8080 is listening (multichat.socket)",
       c.prop("multichat.socket", "Listen"))
    time.sleep(0.3)
    ck.eq(c.state("multichat.service"), "inactive",
          "multichat.service does not run before the first connection")
    ck.eq(c.state("multichat-auth.service"), "inactive",
          "multichat-auth.service does not run before the first login")
    for what, name in (("passwd", "multichat"), ("passwd", "multichat-auth"),
                       ("group", "multichat-staff"), ("group", "multichat-admin")):
        r = c.sh("getent", what, name)
        ck(r.returncode == 0, f"the package created the {'user' if what == 'passwd' else 'group'} {name}")


def check_units(c, ck, exposures):
    r = c.sh("systemd-analyze", "verify", *UNITS)
    ck(r.returncode == 0 and not r.stdout.strip(),
       "systemd-analyze verify of the installed units prints nothing", tail(r.stdout, 10))
    for unit in ("multichat.service", "multichat-auth.service"):
        r = c.sh("systemd-analyze", "security", "--no-pager", unit)
        m = re.search(rf"Overall exposure level for {re.escape(unit)}: ([0-9.]+)", r.stdout)
        score = float(m.group(1)) if m else None
        exposures[unit] = score
        ck(score is not None and score <= EXPOSURE_MAX,
           f"systemd-analyze security {unit}: {score} <= {EXPOSURE_MAX}", tail(r.stdout, 5))


def check_first_connection(c, ck):
    t = time.monotonic()
    r = c.client("get", "/login")
    ck.eq(r.get("status"), 200, "the first connection is answered (socket activation): GET /login is 200")
    state = c.wait_state("multichat.service", "active", timeout=10)
    ck.eq(state, "active", f"multichat.service is active after the first connection "
          f"({time.monotonic() - t:.2f} s)")
    ck.eq(c.prop("multichat.service", "Type"), "notify",
          "it is Type=notify, so active means it sent READY=1")
    ck.eq(c.prop("multichat.service", "NotifyAccess"), "main", "NotifyAccess=main")
    status = c.prop("multichat.service", "StatusText")
    ck(bool(status), f"it reports a STATUS= line ({status!r})")


def add_accounts(c, ck):
    ok = True
    for argv in (["useradd", "-m", "-s", "/bin/bash", "-G", "multichat-staff", "alice"],
                 ["useradd", "-m", "-s", "/bin/bash", "bob"],
                 ["useradd", "-m", "-s", "/bin/bash", "-G", "multichat-admin", "carol"]):
        r = c.sh(*argv)
        ok = ok and r.returncode == 0
    r = c.sh("chpasswd", input="".join(f"{u}:{p}\n" for u, p in PASSWORDS.items()))
    ck.fatal(ok and r.returncode == 0,
             "useradd alice (multichat-staff), bob, carol (multichat-admin); chpasswd", r.stdout)


def check_logins(c, ck):
    r = c.client("login", "alice", PASSWORDS["alice"])
    ck(r.get("form_status") == 200 and r.get("csrf_cookie") and r.get("csrf_input"),
       "GET /login gives the multichat_csrf cookie and the hidden csrf input", r)
    ck(r.get("status") == 303 and r.get("session_cookie"),
       "alice logs in through pam_unix: 303 and a multichat_session cookie", r)
    r = c.client("login", "bob", PASSWORDS["bob"])
    ck(r.get("status") == 303 and r.get("session_cookie"), "bob logs in: 303 and a session cookie", r)
    t = time.monotonic()
    r = c.client("login", "alice", WRONG_PASSWORD)
    ck(r.get("status") == 401 and not r.get("session_cookie"),
       f"a wrong password is refused with 401 ({time.monotonic() - t:.1f} s)", r)
    r = c.client("login", "root", PASSWORDS["root"])
    ck(r.get("status") not in (None, 303) and not r.get("session_cookie"),
       f"root is refused even with its right password (HTTP {r.get('status')})", r)
    r = c.client("login", "nosuchuser", "whatever")
    ck(r.get("status") == 401 and not r.get("session_cookie"), "an unknown user is refused with 401", r)


def check_journal(c, ck):
    deadline = time.monotonic() + 5
    entries = []
    while time.monotonic() < deadline:
        text = c.journal("-u", "multichat", "-o", "json", f"MESSAGE_ID={LOGIN_FAILURE_ID}")
        entries = [json.loads(ln) for ln in text.splitlines() if ln.startswith("{")]
        if any(e.get("USER") == "alice" for e in entries):
            break
        time.sleep(0.2)
    alice = [e for e in entries if e.get("USER") == "alice"]
    e = alice[-1] if alice else {}
    where = ""
    if not alice:
        any_unit = c.journal("-o", "json", f"MESSAGE_ID={LOGIN_FAILURE_ID}")
        units = {json.loads(ln).get("_SYSTEMD_UNIT") for ln in any_unit.splitlines() if ln.startswith("{")}
        where = f"entries with that MESSAGE_ID under -u multichat: {len(entries)}; in units {units or 'none'}"
    ck(bool(alice), f"journalctl -u multichat has the login failure "
       f"(MESSAGE_ID={LOGIN_FAILURE_ID}, USER=alice)", where)
    addr = e.get("REMOTE_ADDR", "")
    ck(addr in ("127.0.0.1", "::1", "::ffff:127.0.0.1"), f"... with REMOTE_ADDR= ({addr!r})",
       {k: v for k, v in e.items() if not k.startswith("__")} if e else None)
    ck(e.get("_SYSTEMD_UNIT") == "multichat.service", "... logged by multichat.service",
       e.get("_SYSTEMD_UNIT"))
    leaked = c.sh("sh", "-c", "journalctl --no-pager -o verbose | grep -c -e \"$1\" -e \"$2\"",
                  "-", WRONG_PASSWORD, PASSWORDS["root"])
    ck(leaked.stdout.strip() == "0", "no password appears in the journal", leaked.stdout.strip())


def check_staff_room(c, ck, rooms):
    staff, out = create_room(c, "Staff", staff_only=True)
    ck.fatal(staff is not None, "root creates a staff-only room with busctl", out)
    rooms["Staff"] = staff
    r = c.client("join", "bob", PASSWORDS["bob"], staff)
    ck.eq((r.get("reply") or {}).get("error"), "ROOM_ACCESS_DENIED",
          "bob is refused the staff-only room (WebSocket join)")
    r = c.client("join", "alice", PASSWORDS["alice"], staff)
    ck.eq(str((r.get("reply") or {}).get("join")), staff, "alice (multichat-staff) is admitted to it")


def check_dbus_policy(c, ck):
    ok, how, out = ctl_create_room(c, "Root room")
    ck(ok, f"{how} works as root", out)
    ok, how, out = ctl_create_room(c, "Carol room", user="carol")
    ck(ok, f"{how} works as carol (multichat-admin)", out)
    ok, how, out = ctl_create_room(c, "Bob room", user="bob")
    ck(not ok and re.search(r"(?i)access.?denied|not authori[sz]ed", out),
       f"{how} is refused for bob ({out.strip()[:60]})", out)
    # dbus-send prints the error's message, busctl only "Access denied":
    # dbus-daemon's own refusal names the policy ("Rejected send message"),
    # the daemon's second check answers AccessDenied by itself.
    r = c.sh("dbus-send", "--system", "--print-reply", f"--dest={BUS_NAME}", MANAGER[1],
             f"{MANAGER[2]}.CreateRoom", "string:Bob room", "boolean:false", user="bob")
    ck(r.returncode != 0 and "Rejected send message" in r.stdout,
       "the bus policy itself refuses bob's CreateRoom", r.stdout.strip())
    r = c.busctl("call", *MANAGER, "ListRooms", user="bob")
    ck(r.returncode == 0 and "Carol room" in r.stdout and "Bob room" not in r.stdout,
       "bob may still list the rooms (ListRooms), and his room was not made", tail(r.stdout, 3))
    if not has_multichatctl(c):
        log("# note: the package has no multichatctl; checked with busctl")


# An administrator's rule: dave, though in multichat-admin, must give an
# administrator's password (polkit asks for root's when no one is in sudo).
POLKIT_TEST_RULES = """polkit.addRule(function(action, subject) {
        if (action.id == "org.multichat.chat1.manage" && subject.user == "dave")
                return polkit.Result.AUTH_ADMIN;
});
"""


def check_polkit(c, ck):
    """With Debian's polkitd installed, D-Bus changes go through polkit:
    the shipped rules admit multichat-admin without asking; where a rule
    wants a password, multichatctl on a terminal asks for it through
    polkit's text agent, and refuses without a terminal or with a wrong
    password."""
    r = c.sh("apt-get", "install", "-y", "-q", "--no-install-recommends", *SUGGESTED_PACKAGES, timeout=300)
    ck.fatal(r.returncode == 0, "apt-get install polkitd (offline, from the cached download)", tail(r.stdout))
    r = c.sh("useradd", "-m", "-s", "/bin/bash", "-G", "multichat-admin", "dave")
    r2 = c.sh("chpasswd", input="dave:Dave-pw-4\n")
    (c.root / "etc/polkit-1/rules.d").mkdir(parents=True, exist_ok=True)
    (c.root / "etc/polkit-1/rules.d/10-admin-password.rules").write_text(POLKIT_TEST_RULES)
    ck.fatal(r.returncode == 0 and r2.returncode == 0,
             "useradd dave (multichat-admin); a rule in /etc/polkit-1/rules.d wants a password from him",
             r.stdout + r2.stdout)
    ok, how, out = ctl_create_room(c, "Carol polkit room", user="carol")
    ck(ok, f"{how} as carol (multichat-admin): the shipped polkit rules admit her without a password", out)
    ck.eq(c.state("polkit.service"), "active", "the daemon's CheckAuthorization started polkit (D-Bus activation)")
    r = c.sh("multichatctl", "create-room", "Dave room", user="dave")
    ck(r.returncode == 1 and "Authentication required" in r.stdout,
       "multichatctl as dave without a terminal: 'Authentication required', exit 1", r.stdout)
    rc, shown = c.sh_tty("multichatctl", "create-room", "Dave room", user="dave", answer="not-Root-pw")
    ck("AUTHENTICATING FOR org.multichat.chat1.manage" in shown and "Password:" in shown,
       "on a terminal, polkit's text agent asks dave for a password there", shown)
    ck(rc == 1 and "Not authorized" in shown, "a wrong password: 'Not authorized', exit 1", f"{rc}: {shown}")
    rc, shown = c.sh_tty("multichatctl", "create-room", "Dave room", user="dave", answer=PASSWORDS["root"])
    ck(rc == 0 and "AUTHENTICATION COMPLETE" in shown,
       "the administrator's (root's) password: the room is created, exit 0", f"{rc}: {shown}")
    r = c.sh("multichatctl", "--json", "list-rooms", user="carol")
    ck(r.returncode == 0 and r.stdout.count("Dave room") == 1, "dave's room exists, once", r.stdout)
    r = c.sh("sh", "-c", "cat /proc/[0-9]*/comm 2>/dev/null")
    ck(r.returncode == 0 and "pkttyagent" not in r.stdout.split(), "no text agent outlives multichatctl",
       r.stdout)


def proc_status(c, pid):
    text = c.out("cat", f"/proc/{pid}/status")
    fields = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        fields[k] = v.split()
    return fields


def check_shadow(c, ck):
    shadow_gid = c.out("getent", "group", "shadow").split(":")[2]
    pid = c.prop("multichat.service", "MainPID")
    st = proc_status(c, pid) if pid not in ("", "0") else {}
    uid = c.out("id", "-u", "multichat")
    ck(st.get("Uid", [None])[:1] == [uid], f"multichatd runs as user multichat (uid {uid})", st.get("Uid"))
    ck(st and shadow_gid not in st.get("Groups", []),
       f"multichatd's groups do not include shadow ({shadow_gid})", st.get("Groups"))
    r = c.sh("cat", "/etc/shadow", user="multichat")
    ck(r.returncode != 0, "user multichat cannot read /etc/shadow", r.stdout[:80])
    # The helper is socket-activated: a login makes sure it runs.
    c.client("login", "bob", PASSWORDS["bob"])
    pid = c.prop("multichat-auth.service", "MainPID")
    st = proc_status(c, pid) if pid not in ("", "0") else {}
    ck(shadow_gid in st.get("Groups", []), f"multichat-auth's groups include shadow ({shadow_gid})",
       st.get("Groups") if st else "multichat-auth is not running")
    ck(st.get("Uid", ["0"])[0] != "0", f"multichat-auth does not run as root (uid {st.get('Uid', ['?'])[0]})")


def check_reload(c, ck):
    pid = c.prop("multichat.service", "MainPID")
    r = c.sh("systemctl", "reload", "multichat.service")
    ck(r.returncode == 0, "systemctl reload multichat works", tail(r.stdout, 3) + " " +
       c.journal("-u", "multichat", "-n", "3", "-o", "cat").replace("\n", " | "))
    ck(c.wait_state("multichat.service", "active", 5) == "active" and
       c.prop("multichat.service", "MainPID") == pid,
       "... the daemon stays active with the same PID")


def check_stop(c, ck):
    t = time.monotonic()
    r = c.sh("systemctl", "stop", "multichat.service")
    took = time.monotonic() - t
    ck(r.returncode == 0 and took < 5, f"systemctl stop multichat succeeds ({took:.2f} s)", r.stdout)
    res = {p: c.prop("multichat.service", p) for p in ("Result", "ExecMainCode", "ExecMainStatus")}
    # ExecMainCode 1 is CLD_EXITED: it exited by itself on SIGTERM, status 0.
    ck(res == {"Result": "success", "ExecMainCode": "1", "ExecMainStatus": "0"},
       "it stopped cleanly: Result=success, exited with status 0", res)
    ck.eq(c.state("multichat.socket"), "active", "multichat.socket keeps listening")


def check_dbus_activation(c, ck, rooms):
    ck.eq(c.state("multichat.service"), "inactive", "multichat.service is stopped")
    t = time.monotonic()
    lobby, out = create_room(c, "Lobby")
    ck(lobby is not None, f"busctl call ... CreateRoom sb Lobby false answers while stopped "
       f"({time.monotonic() - t:.2f} s)", out)
    rooms["Lobby"] = lobby
    ck.eq(c.state("multichat.service"), "active", "D-Bus activation started multichat.service")


def check_burst_activation(c, ck):
    c.sh("systemctl", "stop", "multichat.service")
    r = c.client("burst", 64)
    ck(r.get("total") == 64 and r.get("ok") == 64,
       "64 simultaneous first connections to the stopped service are all answered", r)


def under_load(c, ck, rooms, what, action):
    """Runs action() (which returns its own check results) while a logged-in
    WebSocket client sits in Lobby and 16 threads open new connections back
    to back; then checks that every one of them got an HTTP answer and that
    the client gets back in with the same session cookie. Returns the load
    client's report."""
    p = subprocess.Popen(c.client_argv("load", "alice", PASSWORDS["alice"], rooms["Lobby"]),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(p.stdout.readline() or "{}")
        if not ck(first.get("ready") and str((first.get("join") or {}).get("join")) == rooms["Lobby"],
                  f"{what}: a logged-in client is in Lobby; new clients keep connecting", first):
            return {}
        time.sleep(0.3)
        action()
        time.sleep(0.5)
        p.stdin.write("stop\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    res = json.loads(lines[-1]) if lines else {"error": tail(err, 5)}
    ck(res.get("total", 0) > 0 and res.get("failed") == 0,
       f"{what}: every new connection got an HTTP answer "
       f"({res.get('ok')}/{res.get('total')} in {res.get('seconds')} s)",
       {k: res.get(k) for k in ("failed", "failures", "first_failure_at", "error")})
    rejoin = res.get("rejoin") or {}
    ck(str(rejoin.get("join")) == rooms["Lobby"],
       f"{what}: the client gets back in with the same session cookie", rejoin)
    return res


RESTARTS = 2


def check_restart_under_load(c, ck, rooms):
    # Within systemd's start rate limit (5 starts in 10 s) with what came before.
    c.sh("systemctl", "reset-failed", "multichat.service")
    for i in range(RESTARTS):
        pid_before = c.prop("multichat.service", "MainPID")

        def restart():
            t = time.monotonic()
            r = c.sh("systemctl", "restart", "multichat.service")
            took = time.monotonic() - t
            state = c.wait_state("multichat.service", "active", 10)
            pid_after = c.prop("multichat.service", "MainPID")
            ck(r.returncode == 0 and state == "active" and pid_after != pid_before,
               f"systemctl restart multichat under load ({took:.2f} s; PID {pid_before} -> {pid_after})",
               r.stdout)

        res = under_load(c, ck, rooms, f"restart {i + 1}/{RESTARTS}", restart)
        ws = res.get("ws") or {}
        ck(ws.get("close_code") in (1001, 1012),
           f"the connected WebSocket was closed with a close frame ({ws.get('close_code')})", ws)


def check_reinstall(c, ck, rooms, deb_in):
    # The test started the service five times within seconds; the upgrades
    # restart it twice more. systemd's start rate limit (5 in 10 s) would
    # then refuse, which is the test's speed, not the package's fault.
    c.sh("systemctl", "reset-failed", "multichat.service")
    c.sh("sh", "-c", "echo '# local edit' >> /etc/multichat/multichat.conf")
    pid = c.prop("multichat.service", "MainPID")

    def upgrade():
        r = c.sh("dpkg", "-i", deb_in)
        ck(r.returncode == 0, "dpkg -i of the same version again (the upgrade path) succeeds",
           tail(r.stdout))

    under_load(c, ck, rooms, "upgrade", upgrade)
    ck(c.sh("grep", "-q", "^# local edit", "/etc/multichat/multichat.conf").returncode == 0,
       "a local edit of /etc/multichat/multichat.conf is kept")
    after = c.prop("multichat.service", "MainPID")
    # debian/rules: --restart-after-upgrade, so the new binary runs.
    ck(c.state("multichat.service") == "active" and after not in (pid, "0"),
       f"the upgrade restarted the running daemon (PID {pid} -> {after})")
    c.sh("systemctl", "reset-failed", "multichat.service")
    r = c.sh("apt-get", "install", "-y", "-q", "--reinstall", deb_in)
    ck(r.returncode == 0, "apt-get install --reinstall of the .deb succeeds", tail(r.stdout))
    check_works(c, ck, "after reinstalling")


def check_works(c, ck, when):
    ck.eq(c.state("multichat.socket"), "active", f"multichat.socket is active {when}")
    ck.eq(c.out("systemctl", "is-enabled", "multichat.socket"), "enabled", f"... and enabled {when}")
    r = c.client("login", "alice", PASSWORDS["alice"])
    ck(r.get("status") == 303 and r.get("session_cookie"), f"alice logs in {when}", r)
    ck.eq(c.wait_state("multichat.service", "active", 10), "active", f"multichat.service is active {when}")
    r = c.busctl("call", *MANAGER, "ListRooms")
    ck(r.returncode == 0 and "Lobby" in r.stdout, f"busctl ListRooms works {when} (rooms kept in Redis)",
       tail(r.stdout, 3))


def processes_of(c, user):
    return c.out("find", "/proc", "-mindepth", "1", "-maxdepth", "1", "-regex", "/proc/[0-9]+",
                 "-user", user).split()


def check_remove(c, ck, files):
    r = c.sh("dpkg", "-r", "multichat")
    ck(r.returncode == 0, "dpkg -r multichat succeeds", tail(r.stdout))
    ck(all(c.state(u) != "active" for u in UNITS), "no multichat unit is active after removal",
       {u: c.state(u) for u in UNITS})
    ck(not listening_on(c, 8080), "port 8080 is closed after removal")
    ck.eq(processes_of(c, "multichat") + processes_of(c, "multichat-auth"), [],
          "no process of multichat or multichat-auth is left")
    ck(c.sh("test", "-e", "/etc/multichat/multichat.conf").returncode == 0,
       "the conffile /etc/multichat/multichat.conf stays until purge (Debian policy)")
    r = c.busctl("call", *MANAGER, "ListRooms")
    ck(r.returncode != 0, "the bus name is no longer activatable", r.stdout.strip())

    r = c.sh("dpkg", "-P", "multichat")
    ck(r.returncode == 0, "dpkg -P multichat (purge) succeeds", tail(r.stdout))
    r = c.sh("dpkg-query", "-W", "-f", "${Status}", "multichat")
    ck("installed" not in r.stdout.replace("not-installed", ""), "dpkg no longer knows the package",
       r.stdout)
    units = c.out("systemctl", "list-unit-files", "--no-legend", "--plain", "multichat*")
    ck(units == "", "systemctl list-unit-files 'multichat*' is empty after purge", units)
    # A unit something still refers to can stay in memory as "not-found"
    # until systemd collects it; harmless, and it cannot start.
    loaded = [ln for ln in c.out("systemctl", "list-units", "--all", "--no-legend", "--plain",
                                 "multichat*").splitlines()
              if ln.split()[1:3] != ["not-found", "inactive"]]
    ck(loaded == [], "systemd has no multichat unit loaded after purge", loaded)
    left = [f for f in files if c.sh("test", "-e", f).returncode == 0 or
            c.sh("test", "-L", f).returncode == 0]
    ck(left == [], "none of the package's files is left", left)


# Paths a purge may leave behind (relative to the state before the first
# install): dpkg's and systemd's own state, logs, caches, the users and
# groups (Debian policy keeps system users), the test's own accounts,
# Redis' data, and the .deb the test copied in.
ALLOWED_LEFTOVERS = re.compile(r"""^/(
    var/lib/dpkg/(?!info/multichat[._]).*
  | var/lib/apt/.* | var/cache/.* | var/log/.* | var/lib/systemd/(?!deb-systemd).*
  | var/lib/redis(/.*)? | var/lib/private(/.*)? | var/lib/dbus(/.*)?
  | etc/(passwd|group|shadow|gshadow|subuid|subgid)-? | etc/\.pwd\.lock | etc/ld\.so\.cache
  | home(/.*)? | var/mail(/.*)? | root(/.*)? | tmp(/.*)? | var/tmp(/.*)?
)$""", re.X)


def check_purged_clean(c, ck, before):
    bad = []
    for p in sorted(c.upper_paths() - before):
        up = c.upper / p.lstrip("/")
        st = up.lstat()
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            continue        # a whiteout: something of the lower layers deleted
        if stat.S_ISDIR(st.st_mode) and any((low / p.lstrip("/")).is_dir() for low in c.lowers):
            continue        # a directory of the base, copied up when its content changed
        if not ALLOWED_LEFTOVERS.match(p) or "multichat" in p.lower():
            bad.append(p)
    ck(bad == [], "after purge nothing else is left in the file system", bad[:40])
    kept = [u for u in ("multichat", "multichat-auth") if c.sh("getent", "passwd", u).returncode == 0]
    log(f"# system users kept after purge (Debian policy): {kept}")


def check_journal_health(c, ck):
    text = c.journal("-u", "multichat", "-u", "multichat-auth", "-o", "short-monotonic")
    bad = [ln for ln in text.splitlines()
           if re.search(r"Failed with result|code=dumped|core dump|Main process exited, code=(killed|dumped)"
                        r"|Watchdog timeout|start request repeated", ln)]
    ck(bad == [], "the journal shows no crash, watchdog or failed unit of multichat", bad[:10])


def scenario(c, ck, deb, timer):
    files, _ = deb_paths(deb)
    deb_in = "/root/multichat.deb"
    shutil.copy(deb, c.root / deb_in.lstrip("/"))
    rooms = {}
    exposures = {}

    check_install(c, ck, deb_in)
    # What a purge must take away is the package's: the dependencies it
    # brought along (dbus, the libraries) stay, as apt leaves them.
    before = {p for p in c.upper_paths() if "multichat" not in p.lower() or p == deb_in}
    timer.mark("install")
    check_units(c, ck, exposures)
    check_first_connection(c, ck)
    add_accounts(c, ck)
    check_logins(c, ck)
    check_journal(c, ck)
    check_staff_room(c, ck, rooms)
    check_dbus_policy(c, ck)
    check_polkit(c, ck)
    # polkitd and the administrator's rule stay after a purge, as apt leaves them.
    before |= {p for p in c.upper_paths() if "multichat" not in p.lower()}
    check_shadow(c, ck)
    timer.mark("logins, D-Bus, hardening")
    check_reload(c, ck)
    check_stop(c, ck)
    check_dbus_activation(c, ck, rooms)
    check_burst_activation(c, ck)
    check_restart_under_load(c, ck, rooms)
    timer.mark("stop, activation, restart")
    check_reinstall(c, ck, rooms, deb_in)
    check_journal_health(c, ck)
    check_remove(c, ck, files)
    check_purged_clean(c, ck, before)
    r = c.sh("dpkg", "-i", deb_in)
    ck(r.returncode == 0, "dpkg -i after purge installs the package again", tail(r.stdout))
    check_works(c, ck, "after purge and reinstall")
    timer.mark("reinstall, remove, purge")
    log("# exposure: " + ", ".join(f"{u} {s}" for u, s in exposures.items()))


MIGRATED = "Migrated Redis's data to key layout 2"


def redis_get(c, key):
    return c.out("redis-cli", "--raw", "GET", key)


def daemon_version(c):
    r = c.busctl("get-property", *MANAGER, "Version")
    m = re.match(r's "([^"]*)"', r.stdout.strip())
    return m.group(1) if m else r.stdout.strip()


def history_of(read):
    """[(id, text)] of a `read` result's join reply."""
    return [(h.get("id"), h.get("message")) for h in ((read.get("join") or {}).get("history") or [])]


def check_read(ck, read, user, room, want, when):
    """want: the [(id, text)] the room's history must be, in order."""
    ck(read.get("session_status") == 200 and (read.get("session") or {}).get("username") == user,
       f"{when}: {user}'s session cookie from before the upgrade is logged in (GET /api/session)",
       {k: read.get(k) for k in ("session_status", "session", "error")})
    got = history_of(read)
    ids = [i for i, _ in got]
    ck(got == want and len(set(ids)) == len(ids),
       f"{when}: room {room}'s history over that cookie's WebSocket has the {len(want)} messages "
       f"written before, in order, each once, with the same ids",
       {"missing": [m for m in want if m not in got], "extra": [m for m in got if m not in want],
        "reply": read.get("join") or read.get("error")})


def upgrade_scenario(c, ck, old_deb_path, deb, timer):
    """The previous release's package (the first key layout in Redis) is
    installed and used: rooms over D-Bus, sessions through pam_unix,
    messages over the WebSocket; then the current package is installed
    over it while the daemon runs. Everything must be found again through
    the same interfaces, the old session cookies included."""
    old_in, new_in = "/root/multichat-old.deb", "/root/multichat.deb"
    shutil.copy(old_deb_path, c.root / old_in.lstrip("/"))
    shutil.copy(deb, c.root / new_in.lstrip("/"))
    old_version, new_version = deb_field(old_deb_path, "Version"), deb_field(deb, "Version")
    r = c.sh("apt-get", "install", "-y", "-q", "--no-install-recommends", old_in)
    ck.fatal(r.returncode == 0, f"upgrade: apt-get install of the previous package ({old_version})",
             tail(r.stdout))
    log(f"# after installing {old_version}: dbus.socket {c.state('dbus.socket')}, "
        f"dbus.service {c.state('dbus.service')}")
    ck.eq(c.client("get", "/login").get("status"), 200,
          "upgrade: the previous release answers its first connection (socket activation)")
    add_accounts(c, ck)
    lobby, out = create_room(c, "Lobby")
    ck.fatal(lobby is not None, "upgrade: the previous release creates a room (busctl CreateRoom)", out)
    staff, out = create_room(c, "Staff", staff_only=True)
    ck.fatal(staff is not None, "upgrade: ... and a staff-only room", out)
    ck.eq(daemon_version(c), old_version, "upgrade: the running daemon is the previous release (Version)")
    written = {}
    for user, room, n in (("alice", lobby, 10), ("bob", lobby, 10), ("alice", staff, 5)):
        w = c.client("write", user, PASSWORDS[user], room, n, "old")
        ck.fatal(len(w.get("ids") or []) == n and w.get("cookies"),
                 f"upgrade: {user} logs in (pam_unix) and writes {n} messages to room {room}", w)
        written[(user, room)] = w
    lobby_want = ([(i, f"alice {n}") for n, i in enumerate(written[("alice", lobby)]["ids"])]
                  + [(i, f"bob {n}") for n, i in enumerate(written[("bob", lobby)]["ids"])])
    staff_want = [(i, f"alice {n}") for n, i in enumerate(written[("alice", staff)]["ids"])]
    alice = json.dumps(written[("alice", lobby)]["cookies"])
    bob = json.dumps(written[("bob", lobby)]["cookies"])
    check_read(ck, c.client("read", alice, lobby), "alice", lobby, lobby_want, "before the upgrade")
    keys = c.out("redis-cli", "--raw", "KEYS", "mc:*").split()
    ck("mc:rooms" in keys and redis_get(c, "mc:schema") == "",
       "upgrade: Redis holds the first key layout (mc:rooms, no mc:schema)", keys)
    rooms_before = c.busctl("call", *MANAGER, "ListRooms").stdout.strip()
    timer.mark(f"upgrade: {old_version} installed and used")

    c.sh("sh", "-c", "echo '# local edit' >> /etc/multichat/multichat.conf")
    pid = c.prop("multichat.service", "MainPID")
    installed = {}

    def upgrade():
        installed["r"] = c.sh("apt-get", "install", "-y", "-q", "--no-install-recommends", new_in)

    # While a client of the old daemon sits in Lobby and new connections
    # keep coming: the sockets stay open through the upgrade and the
    # migration, and that client's cookie gets it back in.
    under_load(c, ck, {"Lobby": lobby}, f"upgrade {old_version} -> {new_version}", upgrade)
    r = installed.get("r")
    ck.fatal(r is not None and r.returncode == 0,
             f"upgrade: apt-get install ./multichat.deb ({old_version} -> {new_version})",
             tail(r.stdout) if r is not None else "not run")
    ck.eq(c.out("dpkg-query", "-W", "-f", "${Version}", "multichat"), new_version,
          "upgrade: dpkg has the new version")
    state = c.wait_state("multichat.service", "active", 10)
    after = c.prop("multichat.service", "MainPID")
    ck(state == "active" and after not in (pid, "0", ""),
       f"upgrade: the running daemon was restarted (PID {pid} -> {after})", state)
    ck.eq(daemon_version(c), new_version, "upgrade: the running daemon is the new release (Version)")
    ck.eq(redis_get(c, "mc:schema"), "2", "upgrade: the packaged Redis is at key layout 2 (mc:schema)")
    left = [k for k in c.out("redis-cli", "--raw", "KEYS", "mc:*").split()
            if k.startswith(("mc:room:", "mc:user:")) or k in ("mc:rooms", "mc:rooms:seq", "mc:epoch")]
    ck.eq(left, [], "upgrade: no key of the first layout is left")
    ck(c.sh("grep", "-q", "^# local edit", "/etc/multichat/multichat.conf").returncode == 0,
       "upgrade: the local edit of the conffile /etc/multichat/multichat.conf is kept")
    rooms_after = c.busctl("call", *MANAGER, "ListRooms").stdout.strip()
    ck(rooms_after == rooms_before and lobby in rooms_after and staff in rooms_after,
       "upgrade: ListRooms answers the same rooms with the same ids", f"{rooms_before!r} -> {rooms_after!r}")
    check_read(ck, c.client("read", alice, lobby), "alice", lobby, lobby_want, "after the upgrade")
    check_read(ck, c.client("read", alice, staff), "alice", staff, staff_want, "after the upgrade")
    check_read(ck, c.client("read", bob, lobby), "bob", lobby, lobby_want, "after the upgrade")
    # The refs of sends came along: a client resending after the upgrade
    # what it sent before gets the first answer, and nothing is stored twice.
    w = c.client("write", "bob", PASSWORDS["bob"], lobby, 1, "old")
    ck.eq(w.get("ids"), written[("bob", lobby)]["ids"][:1],
          "upgrade: bob's first send again with its ref is answered with the id it got before")
    w = c.client("write", "bob", PASSWORDS["bob"], lobby, 1, "new")
    read = c.client("read", alice, lobby)
    got = history_of(read)
    ck(len(w.get("ids") or []) == 1 and got == lobby_want + [(w["ids"][0], "bob 0")],
       "upgrade: the resend is not in the history twice; a new message follows the old ones",
       {"written": w, "history_tail": got[-3:], "reply": read.get("join") if not got else None})
    timer.mark(f"upgrade: {new_version} installed over it")

    # Once: a restart and a socket activation find layout 2 and move nothing.
    c.sh("systemctl", "reset-failed", "multichat.service")
    r = c.sh("systemctl", "stop", "multichat.service")
    ck.eq(c.state("multichat.socket"), "active", "upgrade: multichat.socket is still active")
    ck.eq(c.out("systemctl", "is-enabled", "multichat.socket"), "enabled", "upgrade: ... and enabled")
    ck.eq(c.client("get", "/login").get("status"), 200,
          "upgrade: after systemctl stop, a connection starts the new daemon (socket activation)")
    ck.eq(c.wait_state("multichat.service", "active", 10), "active", "upgrade: ... and it is active")
    check_read(ck, c.client("read", alice, staff), "alice", staff, staff_want, "after a socket activation")
    migrated = [ln for ln in c.journal("-u", "multichat", "-o", "cat").splitlines() if MIGRATED in ln]
    ck(len(migrated) == 1, "upgrade: the journal says the data was migrated, once", migrated)
    check_journal_health(c, ck)


def dump_logs(c):
    if c.pid1 is None:
        return
    try:
        log("# journal of the multichat units (last 60 lines):")
        log(c.journal("-u", "multichat", "-u", "multichat-auth", "-u", "multichat.socket",
                      "-u", "multichat-auth.socket", "-n", "60", "-o", "short-monotonic"))
    except (OSError, subprocess.SubprocessError) as e:
        log(f"# (journal unavailable: {e})")


def clean_stale_runs(top):
    """Run directories of runs that died (SIGKILL): their lock is free."""
    for d in top.glob("multichat-system-*"):
        try:
            with open(d / "lock") as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except FileNotFoundError:
            # Died before taking its lock, or is just taking it.
            try:
                if time.time() - d.stat().st_mtime < 3600:
                    continue
            except OSError:
                continue
        except (BlockingIOError, NotADirectoryError):
            continue
        shutil.rmtree(d, ignore_errors=True)


def main():
    name = f"system ({SUITE})"
    ck = Check()
    timer = Timer()
    status = 0
    container = None
    rundir = None

    def on_alarm(signum, frame):
        raise Timeout()

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGALRM, on_alarm)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_term)
    signal.alarm(TIMEOUT)
    try:
        if os.geteuid() != 0:
            raise Skip("needs root (debootstrap, overlayfs, systemd-nspawn)")
        log(f"# {RELEASES.get(SUITE, SUITE)} ({SUITE})")
        ensure_host_tools()
        top = Path("/var/tmp")
        clean_stale_runs(top)
        rundir = Path(tempfile.mkdtemp(prefix="multichat-system-", dir=top))
        lock = open(rundir / "lock", "w")
        fcntl.flock(lock, fcntl.LOCK_EX)
        deb = locate_deb(timer, rundir / "multichat.deb")
        # Without it the rest still runs; the upgrade test counts as failed.
        try:
            previous = old_deb(timer, rundir / "multichat-old.deb")
        except Fatal as e:
            previous = None
            ck(False, f"the package of the previous release ({OLD_COMMIT}) for the upgrade test", str(e))
        private_mount_namespace()
        lowers = prepare_rootfs(deb, timer)
        timer.mark("package and rootfs ready")
        container = Container(lowers, rundir)
        container.boot()
        timer.mark(f"boot ({container.name}, PID 1 is {container.pid1} here)")
        try:
            scenario(container, ck, deb, timer)
        finally:
            if ck.failures:
                dump_logs(container)
        container.poweroff()
        if previous is not None:
            failed = len(ck.failures)
            container = Container(lowers, rundir / "upgrade", "upgrade")
            container.boot()
            timer.mark(f"boot for the upgrade ({container.name})")
            try:
                upgrade_scenario(container, ck, previous, deb, timer)
            finally:
                if len(ck.failures) > failed:
                    dump_logs(container)
    except Skip as e:
        signal.alarm(0)
        if REQUIRED:
            ck(False, f"{name}: cannot run here (MULTICHAT_SYSTEM_REQUIRED=1): {e}")
            status = 1
        else:
            log(f"SKIP {name}: {e}")
            status = 77
    except Fatal as e:
        log(f"# stopped after: {e}")
        if not ck.failures:
            ck(False, str(e))
        status = 1
    except Timeout:
        log(f"FAIL {name}: the whole test took longer than {TIMEOUT} s")
        status = 1
    except KeyboardInterrupt as e:
        log(f"FAIL {name}: interrupted ({e})")
        status = 1
    except Exception:
        traceback.print_exc(file=sys.stdout)
        log(f"FAIL {name}: unexpected exception")
        status = 1
    finally:
        signal.alarm(0)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if container is not None:
            container.poweroff()
        if rundir is not None:
            for sub in ("merged", "upgrade/merged"):
                run(["umount", "-l", str(rundir / sub)])
            if KEEP:
                log(f"# kept {rundir}")
            else:
                shutil.rmtree(rundir, ignore_errors=True)
    if ck.failures:
        status = 1
    if status != 77:
        log(f"# timing: {timer.summary()}")
        log(f"# {name}: {ck.count} checks, {len(ck.failures)} failed"
            + (f": {ck.failures}" if ck.failures else ""))
    sys.exit(status)


if __name__ == "__main__":
    main()
