# SPDX-License-Identifier: LGPL-2.1-or-later
# Two VMs, this one the source host: two mtty devices with guests, migrated to the other VM over the socket
# network, one under each policy, with migctl migrate.
A=$(new_mtty) && A2=$(new_mtty)
cat >/tmp/src.conf <<EOC
[Daemon]
Backends=vfio
[Peer]
Listen=0.0.0.0:7480
Insecure=yes
[VfioDevice sw]
Path=$A
GuestInterrupts=msi
[VfioDevice qc]
Path=$A2
Access=group
GuestInterrupts=msi
EOC
start_bus s
check "source: migd starts" start_migd s /tmp/src.conf
write_reg s sw 0 7 77 && write_reg s sw 0 3 11
write_reg s qc 0 7 88 && write_reg s qc 0 3 22
# The destination VM boots at the same time: wait until its migd listens.
for _ in $(seq 300); do
        # Bounded: a connect to a VM still booting could sit in SYN retries for minutes.
        timeout 2 bash -c 'exec 3<>/dev/tcp/10.0.2.2/7480' 2>/dev/null && break
        sleep 0.2
done
diag "destination reachable"
for pair in sw:stop-window qc:qemu-compatible; do
        dev=${pair%%:*} policy=${pair#*:}
        if "$MIGCTL" --bus "$ADDR_s" migrate "$dev" --to 10.0.2.2:7480 --target "t$dev" --policy "$policy" \
                >/tmp/m.log 2>&1; then
                ok "source: $dev migrated to the other host ($policy)"
        else
                not_ok "source: $dev migrated to the other host ($policy)"
                sed 's/^/@@TAP # /' /tmp/m.log | tail -n 20
        fi
        expect_eq "source: $dev stopped after the move" STOP "$(device_prop s "$dev" State)"
done
