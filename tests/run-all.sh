#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs what the tests need (tools/install-deps.sh; root or sudo), then
# builds and runs every test: the plain build (build/: unit, integration,
# browser and system suites), an AddressSanitizer + UBSan build
# (build-asan/: unit and integration suites), a clang libFuzzer build (build-fuzz/:
# fuzz suite, each target 30 s), and the other supported
# Debian release (Debian 13 on a Debian 12 machine, and the other way
# round) in systemd-nspawn: build, unit and integration suites against its
# Redis and its Valkey, its .deb, and the system test booting that release
# with that .deb (tests/system/release.py, build-<release>/). The last line
# of output is the total over all of it, alone: "N passed, N failed"
# (", N skipped" when any). Exits non-zero when anything failed.
#
# Environment:
#   MULTICHAT_NO_APT=1          install nothing (say what is missing)
#   MULTICHAT_NO_ASAN=1         skip the sanitizer pass
#   MULTICHAT_NO_FUZZ=1         skip the fuzz pass (clang, libFuzzer: ~30 s per target)
#   MULTICHAT_NO_SYSTEM=1       skip the system suite (the .deb under systemd
#                               in systemd-nspawn; needs root and network
#                               for its first, cached debootstrap) and the
#                               other release
#   MULTICHAT_NO_OTHER_RELEASE=1  skip the other release only
#   MULTICHAT_BUILD_DIR_PLAIN   plain build directory (default build)
#   MULTICHAT_BUILD_DIR_ASAN    sanitizer build directory (default build-asan)
#   MULTICHAT_BUILD_DIR_FUZZ    fuzz build directory (default build-fuzz)
#   MESON_TEST_ARGS             extra arguments for every meson test run
set -uo pipefail

cd "$(dirname "$0")/.."
PLAIN=${MULTICHAT_BUILD_DIR_PLAIN:-build}
ASAN=${MULTICHAT_BUILD_DIR_ASAN:-build-asan}
FUZZ=${MULTICHAT_BUILD_DIR_FUZZ:-build-fuzz}
# Word-split on purpose: a list of arguments.
read -r -a EXTRA <<< "${MESON_TEST_ARGS:-}"

passed=0 failed=0 skipped=0
started=$(date +%s)

note() { printf '=== %s (%s)\n' "$*" "$(date -u +%T)"; }

setup() {
        local dir=$1; shift
        if [ -f "$dir/build.ninja" ]; then
                # Again each time, so options and new files are picked up.
                meson setup --reconfigure "$dir" "$@"
        else
                meson setup "$dir" "$@"
        fi
}

# Adds a testlog.json's results to the totals.
count() {
        local log=$1/meson-logs/testlog.json
        if [ ! -s "$log" ]; then
                echo "no test log in $log" >&2
                failed=$((failed + 1))
                return
        fi
        local p f s
        read -r p f s < <(/usr/bin/python3 - "$log" <<'EOF'
import json, sys
p = f = s = 0
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line).get("result")
    if r in ("OK", "EXPECTEDFAIL"):
        p += 1
    elif r == "SKIP":
        s += 1
    else:                       # FAIL, TIMEOUT, ERROR, UNEXPECTEDPASS, ...
        f += 1
print(p, f, s)
EOF
)
        passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
}

# run DIR [meson test args...]
run() {
        local dir=$1; shift
        rm -f "$dir/meson-logs/testlog.json"
        meson test -C "$dir" --print-errorlogs "${EXTRA[@]}" "$@"
        count "$dir"
}

build() {
        local dir=$1; shift
        if setup "$dir" "$@" && meson compile -C "$dir"; then
                return 0
        fi
        echo "building $dir failed" >&2
        failed=$((failed + 1))
        return 1
}

codename() {
        local VERSION_CODENAME=
        # shellcheck disable=SC1091
        [ -r /etc/os-release ] && . /etc/os-release
        echo "${VERSION_CODENAME:-unknown}"
}

sets=(build run test browser package)
[ "${MULTICHAT_NO_SYSTEM:-0}" = 1 ] || sets+=(system)
[ "${MULTICHAT_NO_FUZZ:-0}" = 1 ] || sets+=(fuzz)
note "packages: tools/install-deps.sh ${sets[*]}"
if ! tools/install-deps.sh "${sets[@]}"; then
        echo "installing the packages failed" >&2
        failed=$((failed + 1))
fi

# The other release (at the end): its cached root is made meanwhile, in
# the background, since debootstrap and apt mostly wait for the mirror.
case $(codename) in
bookworm) OTHER=trixie ;;
trixie) OTHER=bookworm ;;
*) OTHER= ;;
esac
prepare=
if [ "${MULTICHAT_NO_SYSTEM:-0}" != 1 ] && [ "${MULTICHAT_NO_OTHER_RELEASE:-0}" != 1 ] &&
   [ -n "$OTHER" ] && [ "$(id -u)" = 0 ]; then
        mkdir -p "build-$OTHER"
        note "preparing the $OTHER root in the background (build-$OTHER/prepare.log)"
        tests/system/release.py --prepare "$OTHER" >"build-$OTHER/prepare.log" 2>&1 &
        prepare=$!
fi

note "plain build: $PLAIN"
if build "$PLAIN"; then
        # The system suite runs here only: it tests the .deb, which
        # packaging/build-deb.sh builds from the sources, not this build.
        if [ "${MULTICHAT_NO_SYSTEM:-0}" = 1 ]; then
                note "tests: $PLAIN (all suites but system)"
                run "$PLAIN" --no-suite system
        else
                note "tests: $PLAIN (all suites)"
                run "$PLAIN"
        fi
fi

if [ "${MULTICHAT_NO_ASAN:-0}" != 1 ]; then
        note "sanitizer build: $ASAN (address,undefined)"
        if build "$ASAN" -Db_sanitize=address,undefined -Db_lundef=false; then
                note "tests: $ASAN (unit, integration)"
                # Slower under the sanitizers; leak checks at exit.
                MULTICHAT_ASAN=1 ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
                UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
                        run "$ASAN" --suite unit --suite integration --timeout-multiplier 2
        fi
fi

if [ "${MULTICHAT_NO_FUZZ:-0}" != 1 ]; then
        note "fuzz build: $FUZZ (clang, libFuzzer, address,undefined)"
        if CC=clang build "$FUZZ" -Dfuzzers=true -Db_sanitize=address,undefined -Db_lundef=false; then
                note "tests: $FUZZ (fuzz: each target for 30 s, see tests/fuzz/README.md)"
                run "$FUZZ" --suite fuzz
        fi
fi


# The other release: in CI and with root only (debootstrap, nspawn).
if [ -n "$prepare" ]; then
        wait "$prepare" || { echo "preparing the $OTHER root failed:" >&2; tail -n 20 "build-$OTHER/prepare.log" >&2; }
        grep '^# timing' "build-$OTHER/prepare.log"
fi
if [ "${MULTICHAT_NO_SYSTEM:-0}" != 1 ] && [ "${MULTICHAT_NO_OTHER_RELEASE:-0}" != 1 ] && [ -n "$OTHER" ]; then
        out=build-$OTHER
        note "$OTHER in systemd-nspawn: build, unit and integration suites, .deb ($out/)"
        tests/system/release.py "$OTHER" "$out"
        rc=$?
        if [ "$rc" = 77 ] && [ "${MULTICHAT_SYSTEM_REQUIRED:-0}" != 1 ]; then
                skipped=$((skipped + 1))
        elif [ "$rc" != 0 ]; then
                failed=$((failed + 1))
        fi
        for d in "$out/redis" "$out/valkey"; do
                [ -f "$d/meson-logs/testlog.json" ] && count "$d"
        done
        [ "$rc" = 0 ] && [ ! -f "$out/redis/meson-logs/testlog.json" ] && failed=$((failed + 1))
        deb=$(ls "$out"/deb/multichat_*.deb 2>/dev/null | head -n 1)
        old_deb=$(ls "$out"/old-deb/multichat_*.deb 2>/dev/null | head -n 1)
        if [ -n "$deb" ]; then
                note "system test: $OTHER booted with $deb, the upgrade from ${old_deb:-(no previous package)}"
                MULTICHAT_SYSTEM_RELEASE=$OTHER MULTICHAT_DEB=$deb MULTICHAT_OLD_DEB=$old_deb tests/system/run.py
                case $? in
                0) passed=$((passed + 1)) ;;
                77) skipped=$((skipped + 1)) ;;
                *) failed=$((failed + 1)) ;;
                esac
        elif [ "$rc" != 77 ]; then
                echo "no $OTHER package was built" >&2
                failed=$((failed + 1))
        fi
fi

note "all done in $(( $(date +%s) - started )) s"
line="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && line+=", $skipped skipped"
echo "$line"
[ "$failed" -eq 0 ]
