#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The one list of the Debian packages multichat's build, quick start and
# tests need, installed with apt-get when missing (Debian 12 and 13).
#
#   tools/install-deps.sh [--print] SET...
#
# Sets (name every one you need; "all" is all of them):
#   build    compiler, meson, the libraries' -dev packages, scdoc
#   run      what tools/run-local.sh starts: redis-tools (its redis-check-rdb
#            is the server binary, without the system service that the
#            redis-server package installs and enables), dbus-daemon,
#            busctl (systemd), pam_unix
#   test     the unit and integration suites: redis-server, pam_wrapper,
#            nss_wrapper, dbus-daemon, systemd-socket-activate, python3, node,
#            nginx, openssl, prometheus, polkitd, git (and on Debian 13
#            valkey-server)
#   browser  the browser suite: Chromium and npm, then `npm ci` for
#            tests/browser
#   package  the Debian package: debhelper, dpkg-dev, lintian, bash-completion
#   system   the system suite: debootstrap, systemd-nspawn, git
#   fuzz     the fuzz suite's clang build: clang, libFuzzer (libclang-rt-dev)
#
# --print lists the packages of the sets and exits. Needs root or sudo when
# something is missing; MULTICHAT_NO_APT=1 only says what is missing.
# Package installs start no service (a policy-rc.d for the duration).
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'install-deps: %s\n' "$*" >&2; exit 1; }

# MULTICHAT_CODENAME: the release to list the packages for, when --print
# is asked on another one.
codename() {
        local VERSION_CODENAME=${MULTICHAT_CODENAME:-}
        [[ -n $VERSION_CODENAME ]] && { echo "$VERSION_CODENAME"; return; }
        # shellcheck disable=SC1091
        [[ -r /etc/os-release ]] && . /etc/os-release
        echo "${VERSION_CODENAME:-unknown}"
}

SETS=(build run test browser package system fuzz)

# A command this machine has; for another release, as on a fresh one, none.
have() {
        [[ -z ${MULTICHAT_CODENAME:-} ]] && command -v "$1" >/dev/null
}

packages_of() {
        case $1 in
        build)
                echo build-essential meson ninja-build pkg-config scdoc \
                     libsystemd-dev libwebsockets-dev libwebsockets-evlib-uv libuv1-dev \
                     libhiredis-dev libjansson-dev libpam0g-dev libinih-dev libssl-dev \
                     unicode-data ;;
        run)
                echo redis-tools dbus-daemon systemd libpam-modules ;;
        test)
                echo redis-server dbus-daemon systemd libpam-wrapper libnss-wrapper python3
                # Real peers of the tests: a proxy in front, TLS probes, a
                # scraper, polkit deciding D-Bus calls.
                echo nginx openssl prometheus polkitd
                # test_upgrade builds the previous release from the history.
                echo git
                # Debian 13's Valkey: the integration suite runs against it too.
                [[ $(codename) == bookworm ]] || echo valkey-server
                # The page's unit test runs under node. One from elsewhere
                # (NodeSource, which bundles npm) conflicts with Debian's
                # nodejs and npm: only when there is none.
                have node || echo nodejs ;;
        browser)
                echo chromium
                have npm || echo npm ;;
        package)
                echo debhelper dpkg-dev lintian bash-completion ;;
        system)
                echo debootstrap systemd-container util-linux git ;;
        fuzz)
                echo clang libclang-rt-dev ;;
        *)
                die "unknown set '$1' (${SETS[*]} or all)" ;;
        esac
}

as_root() {
        if [[ $EUID -eq 0 ]]; then
                "$@"
        elif command -v sudo >/dev/null; then
                sudo "$@"
        else
                die "need root for: $*  (run as root or install sudo)"
        fi
}

# Removes the policy-rc.d we put there, and only that one.
POLICY=/usr/sbin/policy-rc.d
OUR_POLICY=0
# shellcheck disable=SC2317  # invoked from the EXIT trap
remove_policy() {
        [[ $OUR_POLICY == 1 ]] && as_root rm -f "$POLICY"
        return 0
}

main() {
        local print=0 sets=() s
        while [[ $# -gt 0 ]]; do
                case $1 in
                --print) print=1 ;;
                -h|--help) sed -n '3,25s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
                -*) die "unknown option $1" ;;
                *) sets+=("$1") ;;
                esac
                shift
        done
        [[ ${#sets[@]} -gt 0 ]] || die "which sets? (${SETS[*]} or all)"
        [[ " ${sets[*]} " == *" all "* ]] && sets=("${SETS[@]}")

        local want=() missing=() p
        for s in "${sets[@]}"; do
                read -r -a p <<< "$(packages_of "$s" | tr '\n' ' ')"
                want+=("${p[@]}")
        done
        read -r -a want <<< "$(printf '%s\n' "${want[@]}" | sort -u | tr '\n' ' ')"
        if [[ $print == 1 ]]; then
                printf '%s\n' "${want[@]}"
                exit 0
        fi

        for p in "${want[@]}"; do
                dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
                        missing+=("$p")
        done
        if [[ ${#missing[@]} -gt 0 ]]; then
                if [[ ${MULTICHAT_NO_APT:-0} == 1 ]]; then
                        say "MULTICHAT_NO_APT=1: not installing ${missing[*]}"
                else
                        say "Installing ${missing[*]}"
                        trap remove_policy EXIT
                        if [[ ! -e $POLICY ]]; then
                                printf '#!/bin/sh\nexit 101\n' | as_root tee "$POLICY" >/dev/null
                                as_root chmod 755 "$POLICY"
                                OUR_POLICY=1
                        fi
                        local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600)
                        as_root "${apt[@]}" update
                        # No recommends: chromium's pull avahi and udev and
                        # edit /etc/nsswitch.conf.
                        as_root "${apt[@]}" install -y --no-install-recommends "${missing[@]}"
                        remove_policy
                        OUR_POLICY=0
                fi
        fi

        for s in "${sets[@]}"; do
                if [[ $s == browser ]] && [[ -f $REPO/tests/browser/package-lock.json ]] &&
                   [[ ! -d $REPO/tests/browser/node_modules/playwright-core ]] &&
                   command -v npm >/dev/null && [[ ${MULTICHAT_NO_APT:-0} != 1 ]]; then
                        say "npm ci --prefix tests/browser"
                        npm ci --prefix "$REPO/tests/browser" --no-audit --no-fund ||
                                say "npm ci failed: the browser suite will report itself skipped"
                fi
        done
}

main "$@"
