#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs the build dependencies, builds, and runs multichatd locally with a
# private Redis and a private D-Bus, for trying it out and for development
# on Debian 12 or 13.
#
#   sudo tools/run-local.sh [--host=ADDRESS] [--port=PORT] [--] [MULTICHATD-OPTIONS...]
#
#   --host=ADDRESS  address to listen on (127.0.0.1; 0.0.0.0 or :: for
#                   every interface, ::1 ...)
#   --port=PORT     port to listen on (8080)
#
# Other options are passed on to multichatd, e.g. --log-level=debug.
# It prints the lines that reach its private bus with multichatctl and
# busctl, and writes them to RUNTIME_DIR/env for `. RUNTIME_DIR/env`.
#
# It installs no system Redis: redis-tools ships the server binary (as
# redis-check-rdb, which runs as a server when called redis-server), and
# the redis-server package would add a system service on port 6379.
#
# Environment:
#   MULTICHAT_HOST, MULTICHAT_PORT  defaults of --host and --port
#   MULTICHAT_LISTEN=ADDR:PORT  listen address instead (e.g. [::1]:8081)
#   MULTICHAT_REDIS=URL         use this Redis instead of starting one
#   MULTICHAT_BUS=ADDRESS       use this D-Bus instead of starting one
#   MULTICHAT_STAFF_GROUP=NAME  group of staff members (multichat-staff)
#   MULTICHAT_BUILD_DIR=DIR     build directory (build)
#   MULTICHAT_RUNTIME_DIR=DIR   sockets, logs and Redis data (BUILD_DIR/run)
#   MULTICHAT_NO_APT=1          do not install packages
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
BUILD_DIR=${MULTICHAT_BUILD_DIR:-build}
case $BUILD_DIR in /*) ;; *) BUILD_DIR=$REPO/$BUILD_DIR ;; esac
HOST=${MULTICHAT_HOST:-127.0.0.1}
PORT=${MULTICHAT_PORT:-8080}
STAFF_GROUP=${MULTICHAT_STAFF_GROUP:-multichat-staff}

BUS_NAME=org.multichat.Chat1
BUS_PATH=/org/multichat/Chat1
BUS_IFACE=org.multichat.Chat1.Manager

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'run-local: %s\n' "$*" >&2; exit 1; }

# Commands that need root: directly when we are root, else through sudo.
as_root() {
        if [[ $EUID -eq 0 ]]; then
                "$@"
        elif command -v sudo >/dev/null; then
                sudo "$@"
        else
                die "need root for: $*  (run this script as root or install sudo)"
        fi
}

# Under sudo, build as the user who owns the checkout, so that the build
# directory does not end up owned by root.
as_builder() {
        if [[ $EUID -eq 0 && -n ${SUDO_USER:-} && $SUDO_USER != root &&
              $(stat -c %U "$REPO") == "$SUDO_USER" ]]; then
                runuser -u "$SUDO_USER" -- "$@"
        else
                "$@"
        fi
}

# Script options first; everything else is multichatd's.
DAEMON_ARGS=()
parse_args() {
        while [[ $# -gt 0 ]]; do
                case $1 in
                --host=*) HOST=${1#--host=} ;;
                --host) HOST=${2:?--host needs an address}; shift ;;
                --port=*) PORT=${1#--port=} ;;
                --port) PORT=${2:?--port needs a number}; shift ;;
                -h|--help) sed -n '3,24s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
                --) shift; DAEMON_ARGS+=("$@"); break ;;
                *) DAEMON_ARGS+=("$1") ;;
                esac
                shift
        done
        [[ $PORT =~ ^[0-9]+$ && $PORT -ge 1 && $PORT -le 65535 ]] || die "--port: not a port: $PORT"
        [[ -n $HOST && $HOST != *[[:space:]/]* ]] || die "--host: not an address: $HOST"
        HOST=${HOST#[}
        HOST=${HOST%]}
        if [[ $HOST == *:* ]]; then
                LISTEN=${MULTICHAT_LISTEN:-[$HOST]:$PORT}
        else
                LISTEN=${MULTICHAT_LISTEN:-$HOST:$PORT}
        fi
}

install_packages() {
        "$REPO/tools/install-deps.sh" build run
}

build() {
        if [[ ! -f $BUILD_DIR/build.ninja ]]; then
                say "Configuring $BUILD_DIR"
                (cd "$REPO" && as_builder meson setup "$BUILD_DIR")
        fi
        say "Building"
        as_builder ninja -C "$BUILD_DIR"
        [[ -x $BUILD_DIR/daemon/multichatd ]] || die "$BUILD_DIR/daemon/multichatd was not built"
}

install_pam_service() {
        if [[ -e /etc/pam.d/multichat ]]; then
                return 0
        fi
        say "Installing the PAM service /etc/pam.d/multichat"
        as_root install -m 0644 "$REPO/pam/multichat" /etc/pam.d/multichat
}

# Unix socket paths are limited to 107 bytes: fall back to a fresh
# directory under /tmp when the checkout lies too deep.
make_runtime_dir() {
        RUN_DIR=${MULTICHAT_RUNTIME_DIR:-$BUILD_DIR/run}
        if [[ ${#RUN_DIR} -gt 90 ]]; then
                RUN_DIR=$(mktemp -d /tmp/multichat-dev.XXXXXX)
        fi
        mkdir -p "$RUN_DIR"
        chmod 0700 "$RUN_DIR"
        RUN_DIR=$(cd -- "$RUN_DIR" && pwd -P)
}

# Children we started, killed again on exit.
PIDS=()
DAEMON_PID=

# shellcheck disable=SC2317  # invoked from the EXIT trap
cleanup() {
        local status=$?
        trap - EXIT INT TERM
        if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
                kill -TERM "$DAEMON_PID" 2>/dev/null || true
                wait "$DAEMON_PID" 2>/dev/null || true
        fi
        local i
        for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
                kill -TERM "${PIDS[i]}" 2>/dev/null || true
                wait "${PIDS[i]}" 2>/dev/null || true
        done
        rm -f "$RUN_DIR/bus.sock" 2>/dev/null || true
        # Under sudo, hand Redis' files back to the owner of the checkout.
        if [[ $EUID -eq 0 && -n ${SUDO_USER:-} && $SUDO_USER != root &&
              $RUN_DIR == "$REPO"/* ]]; then
                chown -R "$SUDO_USER": "$RUN_DIR" 2>/dev/null || true
        fi
        exit "$status"
}

# wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s.
wait_for() {
        local n=$(( $1 * 10 )); shift
        while ((n-- > 0)); do
                "$@" >/dev/null 2>&1 && return 0
                sleep 0.1
        done
        return 1
}

start_redis() {
        if [[ -n ${MULTICHAT_REDIS:-} ]]; then
                REDIS=$MULTICHAT_REDIS
                return 0
        fi
        local server
        server=$(command -v redis-server || true)
        if [[ -z $server ]]; then
                # redis-tools' redis-check-rdb is the whole server; Redis
                # picks the tool by the name it was started under.
                command -v redis-check-rdb >/dev/null || die "redis-tools is not installed"
                ln -sfn "$(command -v redis-check-rdb)" "$RUN_DIR/redis-server"
                server=$RUN_DIR/redis-server
        fi
        rm -f "$RUN_DIR/redis.sock"
        say "Starting a private Redis on $RUN_DIR/redis.sock"
        # No TCP port; data (dump.rdb) and log stay in the runtime directory,
        # so rooms and history survive a restart of this script.
        "$server" --port 0 --unixsocket "$RUN_DIR/redis.sock" --unixsocketperm 700 \
                --dir "$RUN_DIR" --dbfilename dump.rdb --appendonly no \
                --logfile "$RUN_DIR/redis.log" --daemonize no --supervised no \
                </dev/null &
        PIDS+=($!)
        wait_for 10 redis-cli -s "$RUN_DIR/redis.sock" ping ||
                die "Redis did not start; see $RUN_DIR/redis.log"
        REDIS=unix:$RUN_DIR/redis.sock
}

start_bus() {
        if [[ -n ${MULTICHAT_BUS:-} ]]; then
                BUS=$MULTICHAT_BUS
                return 0
        fi
        command -v dbus-daemon >/dev/null || die "dbus-daemon is not installed"
        rm -f "$RUN_DIR/bus.sock"
        # A private session-type bus that allows everything: the daemon may own
        # org.multichat.Chat1 without installing the system bus policy. The
        # daemon still checks callers itself (root or the admin group).
        cat >"$RUN_DIR/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$RUN_DIR/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
EOF
        say "Starting a private D-Bus on $RUN_DIR/bus.sock"
        dbus-daemon --config-file="$RUN_DIR/bus.conf" --nofork --nopidfile \
                </dev/null >>"$RUN_DIR/bus.log" 2>&1 &
        PIDS+=($!)
        BUS=unix:path=$RUN_DIR/bus.sock
        wait_for 10 busctl --address="$BUS" list || die "dbus-daemon did not start"
}

# busctl's switch for the daemon's --bus= value.
busctl_bus() {
        case $BUS in
        system) echo --system ;;
        session) echo --user ;;
        *) echo "--address=$BUS" ;;
        esac
}

busctl_manager() {
        busctl "$(busctl_bus)" call "$BUS_NAME" "$BUS_PATH" "$BUS_IFACE" "$@"
}

daemon_alive() {
        kill -0 "$DAEMON_PID" 2>/dev/null || die "multichatd exited"
}

# ListRooms answers from the daemon's cache, which is empty until the room
# list came from Redis: wait for RedisConnected (true once it has), or a
# restart would create the default rooms a second time.
daemon_ready() {
        [[ $(busctl "$(busctl_bus)" get-property "$BUS_NAME" "$BUS_PATH" "$BUS_IFACE" \
                RedisConnected 2>/dev/null) == "b true" ]]
}

create_default_rooms() {
        local i rooms
        for ((i = 0; i < 100; i++)); do
                daemon_alive
                daemon_ready && break
                sleep 0.1
        done
        if ! daemon_ready || ! rooms=$(busctl_manager ListRooms); then
                say "The daemon is not ready (Redis?); not creating rooms"
                return 0
        fi
        if [[ $rooms == "a(ssbu) 0" ]]; then
                say "Creating the rooms Lobby and Staff (staff only)"
                busctl_manager CreateRoom sb Lobby false >/dev/null || say "CreateRoom Lobby failed"
                busctl_manager CreateRoom sb Staff true >/dev/null || say "CreateRoom Staff failed"
        fi
}

# The environment that makes the README's multichatctl and busctl lines
# reach this daemon: both take the system bus from DBUS_SYSTEM_BUS_ADDRESS.
write_env() {
        local ctl_dir=$BUILD_DIR/daemon
        {
                echo "# . $RUN_DIR/env: multichatctl and busctl reach the daemon of tools/run-local.sh"
                echo "export PATH=$(printf '%q' "$ctl_dir"):\$PATH"
                case $BUS in
                system) ;;
                session) echo "export DBUS_SYSTEM_BUS_ADDRESS=\${DBUS_SESSION_BUS_ADDRESS:-unix:path=\$XDG_RUNTIME_DIR/bus}" ;;
                *) echo "export DBUS_SYSTEM_BUS_ADDRESS=$(printf '%q' "$BUS")" ;;
                esac
        } >"$RUN_DIR/env"
}

print_help() {
        local host=${LISTEN%:*} url ctl=$BUILD_DIR/daemon/multichatctl bus
        host=${host#[}
        host=${host%]}
        case $host in 0.0.0.0|::|"") host=localhost ;; esac
        [[ $host == *:* ]] && host="[$host]"
        url=http://$host:${LISTEN##*:}
        case $LISTEN in unix:*) url="(unix socket ${LISTEN#unix:})" ;; esac
        case $BUS in system|session) bus=$BUS ;; *) bus=$(printf '%q' "$BUS") ;; esac
        cat >&2 <<EOF

  multichat is running.

  Open          $url
  Log in with   a system account (uid >= 1000; root and system accounts are refused).
                A new one: useradd -m alice && passwd alice
  Staff         members of the group $STAFF_GROUP may enter staff-only rooms:
                groupadd -f $STAFF_GROUP && usermod -aG $STAFF_GROUP alice
                (checked again on every connection: reload the page)
  Administer    $ctl --bus=$bus list-rooms
                busctl $(busctl_bus) call $BUS_NAME $BUS_PATH $BUS_IFACE ListRooms
                or, for the README's lines as they are, in another shell:
                . $RUN_DIR/env
  Files         ${RUN_DIR}  (Redis data and log, bus config and log)

  Ctrl-C stops everything.

EOF
}

main() {
        parse_args "$@"
        install_packages
        build
        if [[ $EUID -ne 0 ]]; then
                cat >&2 <<'EOF'
run-local: warning: not running as root. PAM's pam_unix can check other
users' passwords only as root (FACTS.md), so logins will fail except, at best,
for your own account. Run: sudo tools/run-local.sh
EOF
        fi
        install_pam_service

        make_runtime_dir
        trap cleanup EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        start_redis
        start_bus

        say "Starting multichatd on $LISTEN"
        "$BUILD_DIR/daemon/multichatd" --no-config \
                --listen="$LISTEN" \
                --redis="$REDIS" \
                --bus="$BUS" \
                --web-root="$REPO/web" \
                --staff-group="$STAFF_GROUP" \
                "${DAEMON_ARGS[@]}" </dev/null &
        DAEMON_PID=$!

        create_default_rooms
        write_env
        print_help

        # Interrupted by Ctrl-C (trap → cleanup) or ended by the daemon.
        local status=0
        wait "$DAEMON_PID" || status=$?
        DAEMON_PID=
        say "multichatd exited with status $status"
        exit "$status"
}

main "$@"
