#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Builds and tests multichat on another Debian release than the host's, in
systemd-nspawn: Debian 13 "trixie" on a Debian 12 machine.

  tests/system/release.py RELEASE OUTDIR
  tests/system/release.py --prepare RELEASE

--prepare only makes the cached root (debootstrap and the package layer),
which run-all.sh starts in the background while this release's suites run.

In a debootstrapped root of RELEASE (the system test's cached base, plus a
cached layer with what tools/install-deps.sh installs for the sets build,
run, test and package), with the sources bound read-only at /src and OUTDIR
at /out, it runs:

  - meson setup and compile (warnings are printed; the log is kept);
  - the unit and integration suites against that release's redis-server
    (OUTDIR/redis/meson-logs/testlog.json);
  - the integration suite again against valkey-server, where the release
    has it (MULTICHAT_REDIS_SERVER=valkey-server; OUTDIR/valkey/...);
  - packaging/build-deb.sh (with lintian) into OUTDIR/deb;
  - the package of the previous release (run.OLD_COMMIT, the sources from
    `git archive`, built by that tree's own build-deb.sh) into
    OUTDIR/old-deb, built once and cached in
    $MULTICHAT_SYSTEM_CACHE/old-deb-COMMIT-RELEASE/ (about a minute).

Each run starts from the cached layers in a private overlay; nothing of it
stays but OUTDIR. The system test then boots the same release with the
package built here: MULTICHAT_SYSTEM_RELEASE=RELEASE
MULTICHAT_DEB=OUTDIR/deb/multichat_*.deb
MULTICHAT_OLD_DEB=OUTDIR/old-deb/multichat_*.deb tests/system/run.py
(run-all.sh does both). Exit status: 0 when it ran (the test logs say what passed),
1 when something could not run, 77 when not root.
"""

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.dont_write_bytecode = True

PREPARE = sys.argv[1:2] == ["--prepare"]
if len(sys.argv) != 3:
    sys.exit(__doc__)
os.environ["MULTICHAT_SYSTEM_RELEASE"] = sys.argv[2] if PREPARE else sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as system  # noqa: E402  (reads the release from the environment)

OUT = None if PREPARE else Path(sys.argv[2]).resolve()
SETS = ["build", "run", "test", "package"]
INSTALL_DEPS = system.SRC / "tools" / "install-deps.sh"

INNER = r"""
set -u
status=0
step() { printf '=== %s (%s)\n' "$1" "$(date -u +%T)"; }
cd /src
step "meson setup and compile"
if ! { meson setup /build /src >/out/setup.log 2>&1 && meson compile -C /build 2>&1 | tee /out/compile.log; }; then
        cat /out/setup.log
        echo "the build failed" >&2
        exit 1
fi
grep -i 'warning:' /out/compile.log && echo "(compiler warnings above)"
step "unit and integration suites, $(redis-server --version | cut -d' ' -f1-3)"
meson test -C /build --suite unit --suite integration --print-errorlogs
mkdir -p /out/redis/meson-logs
cp /build/meson-logs/testlog.json /out/redis/meson-logs/
if command -v valkey-server >/dev/null; then
        step "integration suite, $(valkey-server --version | cut -d' ' -f1-3)"
        rm -f /build/meson-logs/testlog.json
        MULTICHAT_REDIS_SERVER=valkey-server meson test -C /build --suite integration --print-errorlogs
        mkdir -p /out/valkey/meson-logs
        cp /build/meson-logs/testlog.json /out/valkey/meson-logs/
fi
step "the Debian package"
mkdir -p /out/deb
packaging/build-deb.sh --nocheck --out /out/deb || status=1
step "the package of the previous release, for the upgrade test (once; cached)"
if ! ls /old-deb/multichat_*.deb >/dev/null 2>&1; then
        mkdir -p /tmp/old-out
        if /old-src/packaging/build-deb.sh --nocheck --no-lintian --out /tmp/old-out >/out/old-deb.log 2>&1; then
                for f in /tmp/old-out/multichat_*.deb; do
                        name=$(basename "$f")
                        cp "$f" "/old-deb/.$name" && mv "/old-deb/.$name" "/old-deb/$name" || status=1
                done
        else
                tail -n 40 /out/old-deb.log
                echo "the package of the previous release did not build" >&2
                status=1
        fi
fi
mkdir -p /out/old-deb
cp /old-deb/multichat_*.deb /out/old-deb/ 2>/dev/null || status=1
step "done"
exit $status
"""


def ensure_build_layer(base, timer):
    """The base plus the build and test packages, cached, keyed by the list."""
    packages = system.run([str(INSTALL_DEPS), "--print", *SETS],
                          env=dict(os.environ, MULTICHAT_CODENAME=system.SUITE)).stdout
    layer = system.CACHE / f"{system.SUITE}-build-{system.sha(base.name, packages)}"
    if layer.is_dir():
        return layer
    system.log(f"# installing the build and test packages into {layer} (once; cached)")
    tmp = system.CACHE / f".tmp-{system.SUITE}-build-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for d in ("upper", "work", "merged"):
        (tmp / d).mkdir(parents=True)
    m = tmp / "merged"
    try:
        system.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={base},upperdir={tmp / 'upper'},workdir={tmp / 'work'}", str(m)],
                   check=True)
        system.run(["mount", "-t", "proc", "proc", str(m / "proc")], check=True)
        system.run(["mount", "--bind", "/dev", str(m / "dev")], check=True)
        shutil.copy(INSTALL_DEPS, m / "tmp/install-deps.sh")
        r = system.run(["chroot", str(m), "/tmp/install-deps.sh", *SETS],
                       env=system.CONTAINER_ENV, timeout=1500)
        if r.returncode != 0:
            raise system.Fatal(f"installing the packages in {system.SUITE} failed:\n"
                               f"{system.tail(r.stdout, 20)}")
        (m / "tmp/install-deps.sh").unlink()
        system.run(["chroot", str(m), "apt-get", "clean"], env=system.CONTAINER_ENV)
    finally:
        for sub in ("dev", "proc", ""):
            system.run(["umount", str(m / sub) if sub else str(m)])
    (tmp / "upper").rename(layer)
    shutil.rmtree(tmp, ignore_errors=True)
    timer.mark("build layer (new package list)")
    return layer


def old_package_dirs():
    """(the sources of run.OLD_COMMIT; the directory that caches its
    package for this release)."""
    deb = system.CACHE / f"old-deb-{system.OLD_COMMIT}-{system.SUITE}"
    deb.mkdir(parents=True, exist_ok=True)
    return system.old_sources(), deb


def main():
    timer = system.Timer()
    if os.geteuid() != 0:
        print(f"SKIP: {system.RELEASES.get(system.SUITE, system.SUITE)} in systemd-nspawn needs root")
        return 77
    system.ensure_host_tools()
    if OUT is not None:
        if OUT.exists():
            shutil.rmtree(OUT)
        OUT.mkdir(parents=True)
    rundir = Path(tempfile.mkdtemp(prefix="multichat-release-", dir="/var/tmp"))
    try:
        system.private_mount_namespace()
        with system.rootfs_lock():
            system.clean_stale_tmp()
            base = system.ensure_base(timer)
            layer = ensure_build_layer(base, timer)
        if PREPARE:
            system.log(f"# timing: {timer.summary()}")
            return 0
        for d in ("upper", "work", "merged"):
            (rundir / d).mkdir()
        root = rundir / "merged"
        system.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={layer}:{base},upperdir={rundir / 'upper'},workdir={rundir / 'work'}",
                    str(root)], check=True)
        Path("/run/systemd").mkdir(exist_ok=True)
        system.run(["mount", "-t", "tmpfs", "tmpfs", "/run/systemd"], check=True)
        old_src, old_deb = old_package_dirs()
        timer.mark(f"{system.SUITE} root ready")
        # Not booted: the command runs under nspawn's stub init, with only a
        # loopback network of its own (the tests use ephemeral ports).
        argv = ["systemd-nspawn", "-q", "-D", str(root), f"--machine=mc-build-{os.getpid()}",
                "--register=no", "--keep-unit", "--private-network", "--as-pid2",
                "--console=pipe", f"--bind-ro={system.SRC}:/src", f"--bind={OUT}:/out",
                f"--bind-ro={old_src}:/old-src", f"--bind={old_deb}:/old-deb",
                *[f"--setenv={k}={v}" for k, v in system.CONTAINER_ENV.items()],
                "/bin/bash", "-c", INNER]
        system.log("# " + " ".join(shlex.quote(a) for a in argv[:-1]) + " INNER")
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, timeout=2400,
                           preexec_fn=system.die_with_parent)
        timer.mark(f"build and tests in {system.SUITE}")
        system.log(f"# timing: {timer.summary()}")
        return 0 if r.returncode == 0 else 1
    except (system.Skip, system.Fatal, subprocess.SubprocessError, OSError) as e:
        print(f"FAIL: {system.SUITE}: {e}")
        return 1
    finally:
        system.run(["umount", "-l", str(rundir / "merged")])
        shutil.rmtree(rundir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
