#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The main job on the embedded default: two hosts on private buses migrate simulated devices, no root needed.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=/dev/null
. tests/lib/private-bus.sh

./scripts/install-deps.sh
builddir=${MIGD_DEMO_BUILDDIR:-build-demo}
[ -f "$builddir/build.ninja" ] || meson setup "$builddir" >/dev/null
ninja -C "$builddir" >/dev/null

migd="$builddir/daemon/migd"
migctl="$builddir/client/migctl"
run=$(mktemp -d /tmp/migd-demo.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$run"
}
trap cleanup EXIT

bold() { if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then printf '\n\033[1m%s\033[0m\n' "$*"; else printf '\n%s\n' "$*"; fi; }
say() { bold "== $*"; }

# A free TCP port on loopback for each host's peer listener.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_host NAME PORT DEVICES-CONFIG: a private bus and a migd on it, like two machines.
start_host() {
    local name=$1 port=$2 devices=$3 dir="$run/$1"
    mkdir -p "$dir"
    private_bus_config "unix:path=$dir/bus" > "$dir/bus.conf"
    cat > "$dir/migd.conf" <<EOF
[Daemon]
PolicyDirectory=$dir/policy.d
Backends=sim

[Peer]
Listen=127.0.0.1:$port
# Loopback demo: both daemons log that the peer link is unencrypted. Real hosts use TLS (docs/migd.conf.md).
Insecure=yes
Name=$name

$devices
EOF
    dbus-daemon --config-file="$dir/bus.conf" --nofork 2>"$dir/bus.log" &
    pids+=($!)
    for _ in $(seq 100); do [ -S "$dir/bus" ] && break; sleep 0.05; done
    "$migd" --config "$dir/migd.conf" --bus "unix:path=$dir/bus" --state-dir "$dir/state" 2>"$dir/migd.log" &
    pids+=($!)
    for _ in $(seq 100); do
        "$migctl" --bus "unix:path=$dir/bus" devices >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "demo: migd on $name did not start:" >&2
    cat "$dir/migd.log" >&2
    exit 1
}

device() {
    cat <<EOF
[SimDevice $1]
MigrationFlags=stop-copy,p2p,pre-copy
StateSize=$2
DirtyRate=64M
MSIXVectors=4
Quirks=irq-in-stream
$3
EOF
}

port_a=$(free_port)
port_b=$(free_port)
A=(--bus "unix:path=$run/hosta/bus")
B=(--bus "unix:path=$run/hostb/bus")

say "Where does the destination restore interrupts? Two of the built-in policies:"
for p in stop-window qemu-compatible; do
    printf '  %-16s destination: %s\n' "$p" \
        "$(MIGD_POLICY_DIR=/nonexistent "$migctl" policy explain "$p" | sed -n '/^Destination/,/^$/p' | tail -2 | head -1 | sed 's/^ *//')"
done
echo "  (migctl policy explain NAME draws the whole plan; see docs/state-model.md)"

say "Starting host A (source) and host B (destination): each a private D-Bus and a migd"
start_host hosta "$port_a" "$(device gpu0 256M GuestInterrupts=msix; echo; device nic0 4K GuestInterrupts=msix)"
start_host hostb "$port_b" "$(device gpu0 256M ''; echo; device nic0 4K '')"
echo "host A: $("$migctl" "${A[@]}" devices | tail -n +2 | wc -l) devices, peer port $port_a"
echo "host B: $("$migctl" "${B[@]}" devices | tail -n +2 | wc -l) devices, peer port $port_b"

say "migctl devices (host A)"
"$migctl" "${A[@]}" devices

# The guest left something in the device's registers; it must arrive on B.
busctl --address="unix:path=$run/hosta/bus" call org.vfiomig.Migd1 /org/vfiomig/Migd1/device/gpu0 \
    org.vfiomig.Migd1.SimDevice WriteRegister uy 7 42

say "migctl migrate gpu0 --to 127.0.0.1:$port_b --policy stop-window   (256 MiB of device state)"
"$migctl" "${A[@]}" migrate gpu0 --to "127.0.0.1:$port_b" --policy stop-window

mig=$("$migctl" "${A[@]}" --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
say "migctl timeline $mig"
"$migctl" "${A[@]}" timeline "$mig"

say "After the move (host B)"
"$migctl" "${B[@]}" devices
reg=$(busctl --address="unix:path=$run/hostb/bus" call org.vfiomig.Migd1 /org/vfiomig/Migd1/device/gpu0 \
    org.vfiomig.Migd1.SimDevice ReadRegister u 7)
echo "register 7 on host B: ${reg#y } (written as 42 on host A)"

# Both devices carry their interrupt state in the migration data (irq-in-stream), which the kernel thread
# warns about: restored during RESUMING, it is overwritten when the data is loaded.
raise_and_check() {
    local dev=$1
    busctl --address="unix:path=$run/hostb/bus" call org.vfiomig.Migd1 "/org/vfiomig/Migd1/device/$dev" \
        org.vfiomig.Migd1.SimDevice RaiseInterrupt su msix 0
    gdbus call --address "unix:path=$run/hostb/bus" --dest org.vfiomig.Migd1 \
        --object-path "/org/vfiomig/Migd1/device/$dev" --method org.vfiomig.Migd1.SimDevice.GetRecord |
        python3 -c 'import ast,json,sys
events=json.loads(ast.literal_eval(sys.stdin.read().strip())[0])
last=[e for e in events if e["event"] in ("irq_delivered","irq_lost")][-1]
print("delivered to the eventfd" if last["event"]=="irq_delivered" else "LOST (%s)" % last.get("reason"))'
}
echo "gpu0 (stop-window) raises MSI-X vector 0 on host B: $(raise_and_check gpu0)"

say "migctl migrate nic0 --to 127.0.0.1:$port_b --policy qemu-compatible"
"$migctl" "${A[@]}" migrate nic0 --to "127.0.0.1:$port_b" --policy qemu-compatible
echo "nic0 (qemu-compatible) raises MSI-X vector 0 on host B: $(raise_and_check nic0)"
echo
echo "Same device model, same data: restoring MSI-X while RESUMING lost the vectors; the STOP window kept them."
