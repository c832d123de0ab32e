#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Host side of the VM tier: builds (or finds) the kernel, boots one or two QEMU TCG guests whose root is this
# host's file system (read-only 9p), and turns the guests' "@@TAP" console lines into TAP.
#   run-vm.sh loopback        one VM, two mtty devices, two migds on loopback
#   run-vm.sh twohost         two VMs joined by a QEMU socket network, one migd each
set -u

: "${MIGD_BUILD_ROOT:?run through meson test}"
: "${MIGD_SOURCE_ROOT:?run through meson test}"
scenario=${1:?scenario}
here=$MIGD_SOURCE_ROOT/tests/vm
T=$(mktemp -d /tmp/migd-vm.XXXXXX)
pids=()
cleanup() {
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
        rm -rf "$T"
}
trap cleanup EXIT

kernel=$("$here/build-kernel.sh" 2>"$T/build.log")
rc=$?
if [ $rc = 77 ]; then
        echo "1..0 # SKIP no kernel source: $(tail -n1 "$T/build.log")"
        exit 0
fi
if [ $rc != 0 ]; then
        echo "Bail out! the test kernel did not build: $(tail -n 5 "$T/build.log" | tr '\n' ' ')"
        exit 1
fi
qemu=$(command -v qemu-system-x86_64) || { echo "Bail out! qemu-system-x86_64 is not installed"; exit 1; }

# boot NAME EXTRA_CMDLINE EXTRA_QEMU_ARGS...: one guest, console into $T/NAME.console.
boot() {
        local name=$1 cmdline=$2
        shift 2
        timeout 900 "$qemu" -M q35 -accel tcg -cpu max -m 512 -smp 1 -nodefaults -no-reboot -display none \
                -kernel "$kernel" -serial "file:$T/$name.console" \
                -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
                -append "console=ttyS0 quiet loglevel=3 panic=-1 root=hostroot rootfstype=9p \
rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose ro init=$here/guest-init.sh \
MIGD_SOURCE_ROOT=$MIGD_SOURCE_ROOT MIGD_BUILD_ROOT=$MIGD_BUILD_ROOT $cmdline" \
                "$@" &
        pids+=($!)
}

start=$(date +%s)
case $scenario in
loopback)
        boot vm "MIGD_SCENARIO=loopback MIGD_HOST=vm"
        ;;
twohost)
        port=$((30000 + $$ % 20000))
        boot dst "MIGD_SCENARIO=twohost-destination MIGD_HOST=dst MIGD_ADDR=10.0.2.2" \
                -netdev "socket,id=n0,listen=127.0.0.1:$port" -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:02
        sleep 1
        boot src "MIGD_SCENARIO=twohost-source MIGD_HOST=src MIGD_ADDR=10.0.2.1" \
                -netdev "socket,id=n0,connect=127.0.0.1:$port" -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01
        ;;
*)
        echo "Bail out! unknown scenario $scenario"
        exit 1
        ;;
esac
for p in "${pids[@]}"; do wait "$p"; done
pids=()

n=0
failed=0
for console in "$T"/*.console; do
        guest=$(basename "$console" .console)
        if ! grep -q '^@@END' "$console"; then
                n=$((n + 1)); failed=1
                echo "not ok $n - $guest: the guest ran to its end"
                tail -n 30 "$console" | sed 's/^/# /'
        fi
        while IFS= read -r line; do
                line=${line%$'\r'}
                case $line in
                "@@TAP ok "*) n=$((n + 1)); echo "ok $n - ${line#@@TAP ok }" ;;
                "@@TAP not ok "*) n=$((n + 1)); failed=1; echo "not ok $n - ${line#@@TAP not ok }" ;;
                "@@TAP # "*) echo "# $guest: ${line#@@TAP # }" ;;
                "@@QUALIFY "*) echo "${line#@@QUALIFY }" >>"$MIGD_BUILD_ROOT/qualify-mtty.txt.new" ;;
                esac
        done <"$console"
done
[ -f "$MIGD_BUILD_ROOT/qualify-mtty.txt.new" ] && mv "$MIGD_BUILD_ROOT/qualify-mtty.txt.new" "$MIGD_BUILD_ROOT/qualify-mtty.txt"
# A guest that reached its end without a single check ran nothing: that is a failure, never a pass.
if [ $n = 0 ]; then
        n=1
        failed=1
        echo "not ok 1 - $scenario: the guests reported no checks"
        for console in "$T"/*.console; do tail -n 20 "$console" | sed 's/^/# /'; done
fi
echo "# $scenario: $(( $(date +%s) - start )) s in the VM(s), kernel $kernel"
echo "1..$n"
exit $failed
