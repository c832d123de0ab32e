#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# PID 1 of a test VM: the host's root is ours read-only over 9p; mount what is private, run the scenario, power off.
# The kernel hands MIGD_* parameters of its command line to us as environment variables.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /run
# A checkout or build under the host's /tmp (CI clones may live there) must stay visible under the guest's
# private /tmp: keep the host's /tmp reachable and bind those trees back into place.
mkdir -p /run/host-tmp
mount --bind /tmp /run/host-tmp
for d in /tmp /var/tmp /root; do
        mount -t tmpfs -o mode=1777 tmpfs "$d"
done
for tree in "$MIGD_SOURCE_ROOT" "$MIGD_BUILD_ROOT"; do
        case $tree in
        /tmp/*)
                mkdir -p "$tree"
                mount --bind "/run/host-tmp/${tree#/tmp/}" "$tree"
                ;;
        esac
done
export HOME=/root TMPDIR=/tmp
hostname "${MIGD_HOST:-vm}"
ip link set lo up

if [ -n "${MIGD_ADDR:-}" ]; then
        ip link set eth0 up
        ip addr add "$MIGD_ADDR/24" dev eth0
fi

# shellcheck source=/dev/null
. "$MIGD_SOURCE_ROOT/tests/vm/guest-lib.sh"
# shellcheck source=/dev/null
. "$MIGD_SOURCE_ROOT/tests/vm/scenario-$MIGD_SCENARIO.sh"

guest_cleanup
echo "@@END"
sync
# -no-reboot turns the reboot into QEMU's exit; no ACPI needed.
echo 1 > /proc/sys/kernel/sysrq 2>/dev/null
reboot -f 2>/dev/null || /bin/busybox reboot -f
