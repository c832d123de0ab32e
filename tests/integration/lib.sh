# SPDX-License-Identifier: LGPL-2.1-or-later
# Integration harness: a private dbus-daemon, the built migd on it, TAP output, and cleanup of all of it.

set -u

: "${MIGD_BUILD_ROOT:?run through meson test}"
: "${MIGD_SOURCE_ROOT:?run through meson test}"
MIGD="$MIGD_BUILD_ROOT/daemon/migd"
MIGCTL="$MIGD_BUILD_ROOT/client/migctl"

T=$(mktemp -d /tmp/migd-it.XXXXXX)
# An unprivileged client (setpriv --reuid=65534) must reach the bus socket in here.
chmod 755 "$T"
BUS_PID=
MIGD_PID=
EXTRA_PIDS=
ADDR=
# Tests run in parallel: each daemon gets its own peer port.
PEER_PORT=$((20000 + $$ % 20000))

cleanup() {
        for pid in $EXTRA_PIDS $MIGD_PID $BUS_PID; do
                kill "$pid" 2>/dev/null
        done
        for pid in $EXTRA_PIDS $MIGD_PID $BUS_PID; do
                wait "$pid" 2>/dev/null
        done
        rm -rf "$T"
}
trap cleanup EXIT

# shellcheck source=/dev/null
. "$MIGD_SOURCE_ROOT/tests/lib/tap.sh"
. "$MIGD_SOURCE_ROOT/tests/lib/private-bus.sh"

finish() {
        echo "1..$tap_n"
        exit $tap_failed
}

is_root() {
        [ "$(id -u)" = 0 ]
}

as_nobody() {
        setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
}

start_bus() {
        private_bus_config "unix:dir=$T" >"$T/bus.conf"
        dbus-daemon --config-file="$T/bus.conf" --nofork --print-address=3 3>"$T/bus.addr" 2>"$T/bus.log" &
        BUS_PID=$!
        for _ in $(seq 100); do
                ADDR=$(head -n1 "$T/bus.addr" 2>/dev/null)
                [ -n "$ADDR" ] && return 0
                sleep 0.05
        done
        echo "Bail out! dbus-daemon did not start: $(cat "$T/bus.log")"
        exit 1
}

# The configuration every test starts from: three sim devices, one site policy for sim1.
write_config() {
        mkdir -p "$T/policy.d"
        cat >"$T/policy.d/10-site.json" <<'EOP'
{ "name": "site-sim1", "priority": 10, "irq_restore": "during-resuming", "match": { "name": "sim1" } }
EOP
        cat >"$T/migd.conf" <<EOC
[Daemon]
PolicyDirectory=policy.d
Backends=sim
AdminGroup=migd

[Peer]
Listen=127.0.0.1:$PEER_PORT

[SimDevice sim0]
VendorId=0x1b36
DeviceId=0x0101
MigrationFlags=stop-copy,p2p,pre-copy

[SimDevice sim1]
DeviceId=0x0102
MigrationFlags=stop-copy,p2p
Quirks=irq-in-stream

[SimDevice sim2]
DeviceId=0x0103
MdevType=mtty-2
MigrationFlags=stop-copy
UAPI=1
EOC
}

name_owned() {
        busctl --address="$ADDR" call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
                NameHasOwner s org.vfiomig.Migd1 2>/dev/null | grep -q true
}

start_migd() {
        "$MIGD" --config "$T/migd.conf" --bus "$ADDR" --state-dir "$T/state" "$@" >"$T/migd.log" 2>&1 &
        MIGD_PID=$!
        for _ in $(seq 200); do
                name_owned && return 0
                kill -0 "$MIGD_PID" 2>/dev/null || break
                sleep 0.05
        done
        echo "Bail out! migd did not take its name: $(cat "$T/migd.log")"
        exit 1
}

# stop_migd SIGNAL: sends it and leaves migd's exit status in MIGD_RC (not a subshell: wait needs the parent).
stop_migd() {
        kill -"$1" "$MIGD_PID"
        wait "$MIGD_PID"
        MIGD_RC=$?
        MIGD_PID=
}

manager_call() {
        dbus-send --bus="$ADDR" --print-reply --dest=org.vfiomig.Migd1 /org/vfiomig/Migd1 \
                "org.vfiomig.Migd1.Manager.$1" "${@:2}" 2>&1
}

device_call() {
        dbus-send --bus="$ADDR" --print-reply --dest=org.vfiomig.Migd1 "/org/vfiomig/Migd1/device/$1" \
                "org.vfiomig.Migd1.$2" "${@:3}" 2>&1
}

# The JSON string a method returned, without D-Bus framing.
manager_json() {
        gdbus call --address "$ADDR" --dest org.vfiomig.Migd1 --object-path /org/vfiomig/Migd1 \
                --method "org.vfiomig.Migd1.Manager.$1" "${@:2}"
}

device_property() {
        busctl --address="$ADDR" get-property org.vfiomig.Migd1 "/org/vfiomig/Migd1/device/$1" \
                org.vfiomig.Migd1.Device "$2"
}
