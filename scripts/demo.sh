#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The main job on the embedded default: built-in policies explained, then migd on a private bus with sim devices.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
builddir=${MIGD_DEMO_BUILDDIR:-build-demo}
[ -f "$builddir/build.ninja" ] || meson setup "$builddir" >/dev/null
ninja -C "$builddir" >/dev/null

migctl=("$builddir/client/migctl")
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

for policy in stop-window qemu-compatible early-irqs postcopy; do
    say "migctl policy explain $policy"
    MIGD_POLICY_DIR=/nonexistent "${migctl[@]}" policy explain "$policy"
done

[ -x "$builddir/daemon/migd" ] || exit 0

# A private bus and a state directory of our own: no root, nothing touched outside $run.
run=$(mktemp -d /tmp/migd-demo.XXXXXX)
cleanup() {
    [ -n "${migd_pid:-}" ] && kill "$migd_pid" 2>/dev/null && wait "$migd_pid" 2>/dev/null
    [ -n "${bus_pid:-}" ] && kill "$bus_pid" 2>/dev/null
    rm -rf "$run"
}
trap cleanup EXIT
cat > "$run/bus.conf" <<CONF
<busconfig>
  <type>session</type>
  <listen>unix:path=$run/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default"><allow send_destination="*"/><allow own="*"/></policy>
</busconfig>
CONF
dbus-daemon --config-file="$run/bus.conf" --nofork --print-pid > "$run/bus.pid" &
bus_pid=$!
address="unix:path=$run/bus"
for _ in $(seq 50); do [ -S "$run/bus" ] && break; sleep 0.1; done

say "migd --bus $address --config docs/examples/sim.conf"
"$builddir/daemon/migd" --bus "$address" --config docs/examples/sim.conf \
    --state-dir "$run/state" --policy-dir "$run/policy.d" 2> "$run/migd.log" &
migd_pid=$!
for _ in $(seq 50); do
    "${migctl[@]}" --bus "$address" devices >/dev/null 2>&1 && break
    sleep 0.1
done

say "migctl devices"
"${migctl[@]}" --bus "$address" devices
say "migctl policies"
"${migctl[@]}" --bus "$address" policies
say "migctl show sim0"
"${migctl[@]}" --bus "$address" show sim0
say "busctl introspect org.vfiomig.Migd1 /org/vfiomig/Migd1"
busctl --address="$address" introspect org.vfiomig.Migd1 /org/vfiomig/Migd1 | head -30
say "migd's log"
cat "$run/migd.log"
