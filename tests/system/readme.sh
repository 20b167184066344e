#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The README's two commands on a fresh Debian root, as a new user runs them:
#
#   tests/system/readme.sh RELEASE quickstart|tests
#
# RELEASE is bookworm or trixie. The root is the system test's cached
# debootstrap of that release (tests/system/run.py makes it) without its
# redis-server, in a private overlay, with a copy of the sources at
# /root/multichat; it shares this machine's network (apt needs the mirror).
#
#   quickstart  `tools/run-local.sh --port=PORT` in it, then: a useradd
#               account logs in over HTTP through pam_unix and posts a
#               message over WebSocket; every multichatctl and busctl line
#               of the README runs after `. build/run/env`; no system Redis
#               was installed or enabled.
#   tests       `tests/run-all.sh` in it (MULTICHAT_NO_SYSTEM=1: the system
#               suites need systemd-nspawn, which a chroot cannot run);
#               its last line is printed.
#
# Needs root. Prints "ok"/"FAIL" lines and the time each step took; exits 1
# when one failed.
set -uo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
RELEASE=${1:?release: bookworm or trixie}
WHAT=${2:?quickstart or tests}
CACHE=${MULTICHAT_SYSTEM_CACHE:-/var/cache/multichat-test}
failures=0

ok() { printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }
elapsed() { echo $(( $(date +%s) - $1 )); }

[[ $EUID -eq 0 ]] || { echo "readme.sh: needs root" >&2; exit 77; }
base=$(cd "$REPO/tests/system" && MULTICHAT_SYSTEM_CACHE=$CACHE MULTICHAT_SYSTEM_RELEASE=$RELEASE \
       python3 -B -c 'import run; print(run.base_dir())')
[[ -d $base ]] || { echo "readme.sh: no cached $RELEASE root: run MULTICHAT_SYSTEM_RELEASE=$RELEASE tests/system/run.py first" >&2; exit 1; }

# A private mount namespace: the overlay and its mounts vanish with us.
if [[ -z ${MULTICHAT_README_NS:-} ]]; then
        exec env MULTICHAT_README_NS=1 unshare --mount --propagation private -- "$0" "$@"
fi

dir=$(mktemp -d /var/tmp/multichat-readme-XXXXXX)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir"/{upper,work,root}
root=$dir/root
mount -t overlay overlay -o "lowerdir=$base,upperdir=$dir/upper,workdir=$dir/work" "$root" || exit 1
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
mount -t tmpfs tmpfs "$root/run"
mount -t tmpfs tmpfs "$root/tmp"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# This machine's own trust settings (a local CA, npm's cafile), as every
# machine of its kind has them before anything is installed: without them
# HTTPS downloads (npm) fail in the root. ca-certificates adds the CA to
# the bundle when tools/install-deps.sh installs it.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        mkdir -p "$root/usr/local/share/ca-certificates"
        cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
        [[ -x $root/usr/sbin/update-ca-certificates ]] && chroot "$root" update-ca-certificates >/dev/null 2>&1
fi
[[ -f /etc/npmrc ]] && cp /etc/npmrc "$root/etc/npmrc"

# PIDs of the processes running in the root (ours: nothing else uses it).
procs_in_root() {
        local p
        for p in /proc/[0-9]*; do
                [[ $(readlink "$p/root" 2>/dev/null) == "$root" ]] && echo "${p#/proc/}"
        done
}

in_root() {
        chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
                HOME=/root LANG=C.UTF-8 TERM=dumb "$@"
}

# A fresh machine: no Redis of any kind, the sources as a clone would have them.
in_root dpkg --purge redis-server >/dev/null
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard |
        tar --null --no-recursion -T - -cf - 2>/dev/null) | tar -xf - -C "$root/root" --one-top-level=multichat
# With the history, as a clone has it (test_upgrade builds the previous release from it).
[[ -d $REPO/.git ]] && cp -a "$REPO/.git" "$root/root/multichat/.git"
echo "# $RELEASE root at $root, sources in /root/multichat"

quickstart() {
        local port log t0 pid
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        log=$dir/run-local.log
        t0=$(date +%s)
        # exec all the way down: $pid is the script itself, as in a terminal.
        (exec chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
                HOME=/root LANG=C.UTF-8 TERM=dumb \
                bash -c "cd /root/multichat && exec tools/run-local.sh --port=$port") >"$log" 2>&1 &
        pid=$!
        local i
        for ((i = 0; i < 1200; i++)); do
                grep -q "multichat is running" "$log" && break
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.5
        done
        if ! grep -q "multichat is running" "$log"; then
                fail "tools/run-local.sh came up"
                tail -n 30 "$log"
                kill "$pid" 2>/dev/null
                return
        fi
        ok "tools/run-local.sh --port=$port: installed, built and running in $(elapsed "$t0") s"
        sed -n '/multichat is running/,/Ctrl-C/p' "$log"

        check "no redis-server package installed" \
                bash -c "! chroot '$root' dpkg-query -W -f='\${Status}' redis-server 2>/dev/null | grep -q 'ok installed'"
        check "no redis-server.service enabled" \
                bash -c "! ls '$root'/etc/systemd/system/*.wants/redis-server.service >/dev/null 2>&1"

        in_root useradd -m -s /bin/bash alice
        echo "alice:Alice-pw-7" | in_root chpasswd
        local r
        r=$(MULTICHAT_BASE=http://127.0.0.1:$port python3 "$REPO/tests/system/client.py" say alice Alice-pw-7 1 "hello from $RELEASE" | tail -n 1)
        echo "# $r"
        check "alice (useradd, pam_unix) logs in over HTTP and posts in Lobby over WebSocket" \
                grep -q "\"own\": true" <<< "$r"
        r=$(MULTICHAT_BASE=http://127.0.0.1:$port python3 "$REPO/tests/system/client.py" login alice wrong-pw | tail -n 1)
        check "a wrong password is refused (401)" grep -q '"status": 401' <<< "$r"

        # Every command line of the README's "Rooms and administration", as written.
        local cmds
        cmds=$(awk '/^## Rooms and administration/{on=1; next} /^## /{on=0} on' "$REPO/README.md" |
               awk '/^```sh/{c=1; next} /^```/{c=0} c')
        while IFS= read -r line; do
                [[ -z $line ]] && continue
                r=$(in_root bash -c "cd /root/multichat && . build/run/env && $line" 2>&1)
                check "README: $line" test $? -eq 0
                printf '%s\n' "$r" | sed 's/^/    /' | head -n 8
        done <<< "$cmds"

        # SIGTERM, the same path as Ctrl-C: a job started with & has SIGINT
        # ignored, and bash cannot trap a signal ignored at its start.
        kill -TERM "$pid" 2>/dev/null
        wait "$pid"
        # multichatd's PAM helper leaves when it reads the end of its socket.
        local left
        for ((i = 0; i < 50; i++)); do
                left=$(procs_in_root)
                [[ -z $left ]] && break
                sleep 0.1
        done
        check "SIGTERM (as Ctrl-C) stops it and everything it started" test -z "$left"
        for p in $left; do
                printf '    left: %s\n' "$(tr '\0' ' ' <"/proc/$p/cmdline")"
        done
}

tests() {
        local t0 log
        log=$dir/run-all.log
        t0=$(date +%s)
        in_root bash -c "cd /root/multichat && MULTICHAT_NO_SYSTEM=1 tests/run-all.sh" >"$log" 2>&1
        local rc=$?
        tail -n 1 "$log"
        grep -E '^(FAIL|Summary|Ok:|Fail:|Skipped:)' "$log" | head -n 20
        cp "$log" "/var/tmp/multichat-readme-$RELEASE-tests.log"
        check "tests/run-all.sh on a fresh $RELEASE: exit $rc in $(elapsed "$t0") s (log: /var/tmp/multichat-readme-$RELEASE-tests.log)" \
                test "$rc" -eq 0
}

case $WHAT in
quickstart) quickstart ;;
tests) tests ;;
*) echo "readme.sh: quickstart or tests" >&2; exit 2 ;;
esac
# Whatever was left running in the root (only what this script started).
for p in $(procs_in_root); do
        kill "$p" 2>/dev/null
done
umount -R -l "$root"
echo "# $RELEASE $WHAT: $failures failed"
[[ $failures -eq 0 ]]
