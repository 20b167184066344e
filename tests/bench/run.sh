#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The one benchmark command (tests/bench/README.md): builds a release build
# in build-bench/, then runs the standard scenario set against freshly
# started stacks and writes tests/bench/results/<date>.{json,md,png}.
# Arguments go to bench.py: --quick, --runs=N, --only=a,b, --out=DIR.
set -eu

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${MULTICHAT_BENCH_BUILD:-$SRC/build-bench}

if [ "$(id -u)" != 0 ]; then
        echo "run.sh: run as root (as the integration tests do)" >&2
        exit 1
fi

if [ -d "$BUILD/meson-private" ]; then
        meson configure "$BUILD" -Dbuildtype=release >/dev/null
else
        meson setup "$BUILD" "$SRC" -Dbuildtype=release >/dev/null
fi
ninja -C "$BUILD" daemon/multichatd daemon/multichat-auth >/dev/null

# mc-loadgen is a meson target once tests/meson.build has subdir('bench');
# until then it is compiled here, with the same flags that matter.
LOADGEN=$BUILD/tests/bench/mc-loadgen
if ! ninja -C "$BUILD" tests/bench/mc-loadgen >/dev/null 2>&1; then
        mkdir -p "$BUILD/tests/bench"
        B=$SRC/tests/bench
        ${CC:-cc} -std=gnu11 -O2 -g -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter \
                -o "$LOADGEN" "$B/loadgen.c" "$B/lg-stats.c" "$B/lg-worker.c" "$B/lg-ws.c" \
                $(pkg-config --cflags --libs libsystemd) -lm
fi

if ! command -v gnuplot >/dev/null; then
        echo "run.sh: installing gnuplot-nox for the plots" >&2
        apt-get install -y -q --no-install-recommends gnuplot-nox >/dev/null || \
                echo "run.sh: no gnuplot: results without plots" >&2
fi

# Every connection is a descriptor, on both ends: as many as we may.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

exec python3 "$SRC/tests/bench/bench.py" --build-dir="$BUILD" "$@"
