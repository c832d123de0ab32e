# SPDX-License-Identifier: LGPL-2.1-or-later
# Two VMs, this one the destination host: two spare mtty devices; checks registers and interrupts after each
# migration arrives.
T1=$(new_mtty) && T2=$(new_mtty)
cat >/tmp/dst.conf <<EOC
[Daemon]
Backends=vfio
[Peer]
Listen=0.0.0.0:7480
Insecure=yes
[VfioDevice tsw]
Path=$T1
[VfioDevice tqc]
Path=$T2
EOC
start_bus d
check "destination: migd starts" start_migd d /tmp/dst.conf
for pair in tsw:77:11:stop-window tqc:88:22:qemu-compatible; do
        IFS=: read -r dev scr lcr policy <<<"$pair"
        for _ in $(seq 600); do
                # Arrived: the restored MSI is on, the migration has let go of the device, and it runs.
                vfio_call d "$dev" InterruptSignals 2>/dev/null | grep -q '\\"msi\\":{[^}]*\\"enabled\\":1' &&
                        [ "$(device_prop d "$dev" Busy)" = false ] && [ "$(device_prop d "$dev" State)" = RUNNING ] && break
                sleep 0.2
        done
        diag "ready for $dev"
        expect_eq "destination: $dev RUNNING ($policy)" RUNNING "$(device_prop d "$dev" State)"
        expect_eq "destination: $dev scratch register from the other host" "$scr" "$(read_reg d "$dev" 0 7)"
        expect_eq "destination: $dev line control from the other host" "$lcr" "$(read_reg d "$dev" 0 3)"
        check "destination: $dev interrupt fires on this host" uart_interrupt d "$dev"
done
