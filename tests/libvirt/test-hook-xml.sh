#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The hook's hostdev logic on real domain XML with PCI and mdev hostdevs, run as libvirt runs hooks, output validated.

. "$(dirname "$0")/lib.sh"

start_bus
mkdir -p "$T/policy.d"
cat >"$T/policy.d/10-gpu.json" <<'EOP'
{ "name": "qemu-gpu", "priority": 10, "irq_restore": "during-resuming", "match": { "name": "0000:3b:00.1" } }
EOP
cat >"$T/policy.d/10-vgpu.json" <<'EOP'
{ "name": "vgpu-post", "priority": 10, "irq_restore": "during-resuming", "postcopy": true,
  "match": { "name": "c2177883-*" } }
EOP
write_libvirt_config() {
        cat >"$T/migd.conf" <<EOC
[Daemon]
PolicyDirectory=policy.d
Backends=libvirt
[Peer]
Listen=
[Libvirt]
URI=test:///default
HookFailMode=$1
HookTimeoutSec=5
$2
EOC
}
write_libvirt_config closed ""
start_migd
install_hook_wrapper "$T/hook"

# hook FIXTURE OPERATION SUB EXTRA: as libvirt runs it (empty environment but PATH and LC_ALL, cwd /).
hook() {
        local xml=$1
        shift
        (cd / && env -i PATH=/usr/sbin:/usr/bin LC_ALL=C "$T/hook" "$(domain_name_of "$xml")" "$@" <"$xml" \
                >"$T/out.xml" 2>"$T/err")
}

hook "$FIXTURES/pci-gpu.xml" migrate begin -
expect_eq "PCI hostdev under a during-resuming policy: accepted" 0 "$?"
out=$(cat "$T/out.xml")
expect_contains "vfio-pci of hostdev0 gets x-enable-migration=on through <qemu:override>" \
        "<qemu:device alias=\"hostdev0\"><qemu:frontend><qemu:property name=\"x-enable-migration\" type=\"bool\" value=\"true\"/>" \
        "$out"
expect_contains "the check is recorded in the domain's metadata" \
        "<migd:device alias=\"hostdev0\" hostdev=\"0000:3b:00.1\" policy=\"qemu-gpu\" irq-restore=\"during-resuming\"/>" "$out"
check "the USB hostdev is left alone" bash -c "! grep -q 'alias=\"hostdev1\"><qemu' '$T/out.xml'"
out=$(virt-xml-validate "$T/out.xml" domain 2>&1)
expect_eq "the rewritten XML validates against libvirt's schema" "$T/out.xml validates" "$out"
cp "$T/out.xml" "$T/again.xml"
hook "$T/again.xml" migrate begin -
expect_eq "rewriting is idempotent (one override per property)" 1 \
        "$(grep -o 'x-enable-migration' "$T/out.xml" | wc -l)"
json=$(list_migrations)
expect_contains "migd shows the libvirt-driven incoming migration" '"role":"destination","device":"libvirt:vm-pci","peer":"libvirt","policy":"qemu-gpu","phase":"preflight"' "$json"

hook "$FIXTURES/mdev-vgpu.xml" migrate begin -
expect_eq "mdev hostdev under a post-copy policy: refused (exit 1)" 1 "$?"
expect_contains "stderr, which libvirt shows, says why" \
        "migd refuses the incoming migration of domain vm-mdev: ua-vgpu0: policy vgpu-post cannot be honoured by QEMU: it asks for post-copy" \
        "$(cat "$T/err")"
expect_eq "nothing on stdout when refused" "" "$(cat "$T/out.xml")"

rm "$T/policy.d/10-gpu.json"
cat >"$T/policy.d/10-vgpu.json" <<'EOP'
{ "name": "vgpu", "priority": 10, "irq_restore": "during-resuming", "match": { "name": "c2177883-*" } }
EOP
manager_call Reload >/dev/null
hook "$FIXTURES/pci-gpu.xml" migrate begin -
expect_eq "PCI hostdev under the default stop-window: refused" 1 "$?"
expect_contains "the refusal names the policy and QEMU's order" \
        "hostdev0: policy stop-window cannot be honoured by QEMU: it restores interrupts in a STOP window after RESUMING, and QEMU restores MSI-X/MSI/INTx while the device is still RESUMING" \
        "$(cat "$T/err")"
json=$(list_migrations)
expect_contains "the refused one is recorded as failed" '"policy":"stop-window","phase":"","bytes_total":0' "$json"

hook "$FIXTURES/mdev-vgpu.xml" migrate begin -
expect_eq "mdev hostdev under during-resuming: accepted" 0 "$?"
out=$(cat "$T/out.xml")
expect_contains "mdev's vfio-pci gets the property too" \
        "<qemu:device alias=\"ua-vgpu0\"><qemu:frontend><qemu:property name=\"x-enable-migration\"" "$out"
expect_contains "another application's metadata survives" "<app:owner xmlns:app=\"https://example.org/app/1\">team-a</app:owner>" "$out"
expect_eq "the existing qemu namespace is reused" 1 "$(grep -o 'xmlns:qemu=' "$T/out.xml" | wc -l)"
out=$(virt-xml-validate "$T/out.xml" domain 2>&1)
expect_eq "the rewritten mdev XML validates" "$T/out.xml validates" "$out"

# A device whose data carries no interrupt state: QEMU's order is equivalent to stop-window's.
stop_migd TERM
write_libvirt_config closed "[LibvirtDevice gpu0]
Domain=vm-pci
Hostdev=hostdev0
InterruptStateInData=no"
start_migd
hook "$FIXTURES/pci-gpu.xml" migrate begin -
expect_eq "stop-window with InterruptStateInData=no: accepted" 0 "$?"
expect_contains "the metadata names migd's device" 'device="gpu0" policy="stop-window" irq-restore="after-resuming"' \
        "$(cat "$T/out.xml")"

hook "$FIXTURES/pci-gpu.xml" prepare begin -
expect_eq "prepare: exit 0" 0 "$?"
expect_eq "prepare: the XML passes through unchanged" "$(cat "$FIXTURES/pci-gpu.xml")" "$(cat "$T/out.xml")"
for _ in $(seq 20); do
        json=$(list_migrations)
        case "$json" in *'"device":"gpu0","peer":"libvirt","policy":"stop-window","phase":"prepare"'*) break ;; esac
        sleep 0.05
done
expect_contains "prepare moves the incoming migration to phase prepare" \
        '"device":"gpu0","peer":"libvirt","policy":"stop-window","phase":"prepare"' "$json"
hook "$FIXTURES/pci-gpu.xml" stopped end -
json=$(list_migrations)
expect_contains "stopped before it ran: the incoming migration failed" \
        '"error":"the incoming QEMU stopped before the migration finished"' "$json"

# migd not running.
stop_migd TERM
hook "$FIXTURES/pci-gpu.xml" migrate begin -
expect_eq "migd down, HookFailMode=closed: refused" 1 "$?"
expect_contains "and says so" "migd cannot check the VFIO devices of domain vm-pci" "$(cat "$T/err")"
expect_contains "naming the fail mode" "and HookFailMode=closed; refusing the migration" "$(cat "$T/err")"
hook "$FIXTURES/plain.xml" migrate begin -
expect_eq "migd down, a domain without VFIO hostdevs: passes" 0 "$?"
expect_eq "unchanged" "$(cat "$FIXTURES/plain.xml")" "$(cat "$T/out.xml")"
write_libvirt_config open ""
hook "$FIXTURES/pci-gpu.xml" migrate begin -
expect_eq "migd down, HookFailMode=open: passes" 0 "$?"
expect_eq "unchanged" "$(cat "$FIXTURES/pci-gpu.xml")" "$(cat "$T/out.xml")"
start=$(date +%s%N)
hook "$FIXTURES/pci-gpu.xml" started begin -
expect_eq "lifecycle events never fail a domain, migd or not" 0 "$?"
expect_eq "and take no noticeable time" 1 "$(( ($(date +%s%N) - start) < 2000000000 ))"
echo '<domain><name>x' >"$T/broken.xml"
hook "$T/broken.xml" migrate begin -
expect_eq "XML that cannot be parsed: refused" 1 "$?"

finish
