#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds the Debian package: copies the source tree with packaging/debian as
# debian/ into build-deb/multichat-VERSION/, runs dpkg-buildpackage -b there
# and lintian on the result. The .deb ends up in build-deb/.
#
#   packaging/build-deb.sh [--install-deps] [--nocheck] [--no-lintian] [--out DIR]
#
#   --install-deps  install the Build-Depends (apt-get build-dep on the
#                   copied tree) and lintian first; needs root or sudo
#   --nocheck       skip the unit tests (DEB_BUILD_OPTIONS=nocheck and the
#                   nocheck build profile)
#   --no-lintian    do not run lintian
#   --out DIR       output directory (default: build-deb in the source root)
#
# Exits non-zero if the build fails or lintian reports an error; lintian's
# warnings are shown but do not fail.
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
OUT=$REPO/build-deb
INSTALL_DEPS=0
NOCHECK=0
LINTIAN=1

usage() {
        sed -n '3,17s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

while [ $# -gt 0 ]; do
        case $1 in
        --install-deps) INSTALL_DEPS=1 ;;
        --nocheck) NOCHECK=1 ;;
        --no-lintian) LINTIAN=0 ;;
        --out) OUT=${2:?--out needs a directory}; shift ;;
        --out=*) OUT=${1#--out=} ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build-deb.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        esac
        shift
done
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac

SUDO=
if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
fi

# The first line, "multichat (VERSION) ...": dpkg-dev may not be installed yet.
version=$(sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' "$REPO/packaging/debian/changelog")

# Two builds into one directory would delete each other's trees: the
# second waits for the first (the lock is on the directory itself).
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)
# It is emptied below: never a directory that holds anything but earlier
# results (multichat[-_]* and the .build-deb mark), nor one above the sources.
case $REPO/ in "$OUT"/*)
        echo "build-deb.sh: --out $OUT contains the source tree" >&2; exit 2 ;;
esac
if [ -n "$(find "$OUT" -mindepth 1 -maxdepth 1 ! -name 'multichat[-_]*' ! -name .build-deb)" ]; then
        echo "build-deb.sh: $OUT holds other files: refusing to empty it" >&2
        exit 2
fi
src=$OUT/multichat-${version%%-*}
exec 9<"$OUT"
if ! flock -n 9; then
        echo "build-deb.sh: waiting for another build in $OUT" >&2
        flock 9
fi
# Old results would be picked up by lintian (and confuse CI): start clean.
find "$OUT" -mindepth 1 -delete
touch "$OUT/.build-deb"
mkdir -p "$src"

# The source: in a git checkout, the files git knows or would add (so work
# in progress is built, but not build directories or node_modules);
# otherwise the tree without build directories.
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$REPO" &&
         git ls-files -z --cached --others --exclude-standard |
         while IFS= read -r -d '' f; do
                 # Tracked but deleted in the work tree.
                 [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"
         done |
         tar --null --no-recursion -T - -cf -) | tar -xf - -C "$src"
else
        (cd "$REPO" &&
         tar --exclude='./build*' --exclude=node_modules --exclude=__pycache__ \
             --exclude=.git -cf - .) | tar -xf - -C "$src"
fi
rm -rf "$src/debian"
cp -a "$REPO/packaging/debian" "$src/debian"

profiles=()
if [ "$NOCHECK" = 1 ]; then
        export DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:+$DEB_BUILD_OPTIONS }nocheck"
        export DEB_BUILD_PROFILES="${DEB_BUILD_PROFILES:+$DEB_BUILD_PROFILES }nocheck"
        profiles=(-Pnocheck)
fi

if [ "$INSTALL_DEPS" = 1 ]; then
        export DEBIAN_FRONTEND=noninteractive
        $SUDO apt-get update
        # dpkg-dev and build-essential first: build-dep needs them to
        # evaluate the control file; lintian is not a Build-Depends.
        extra=(build-essential dpkg-dev)
        [ "$LINTIAN" = 1 ] && extra+=(lintian)
        $SUDO apt-get install -y --no-install-recommends "${extra[@]}"
        $SUDO apt-get build-dep -y --no-install-recommends "${profiles[@]}" "$src"
fi

(cd "$src" && dpkg-buildpackage -b -us -uc -Jauto "${profiles[@]}")

changes=$(ls "$OUT"/multichat_*.changes)
echo
echo "== Built in $OUT:"
ls -l "$OUT"/*.deb

if [ "$LINTIAN" = 1 ]; then
        echo
        echo "== lintian (errors fail the build; warnings are shown)"
        # --fail-on error: warnings and informational tags do not fail.
        lintian --fail-on error "$changes"
        echo "lintian: no errors"
fi
