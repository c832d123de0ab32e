#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Two real libvirtd instances migrate disk-less TCG domains; the destination's libvirt runs migd's hook itself.

. "$(dirname "$0")/lib.sh"

need_root_and_libvirt
start_bus
mkdir -p "$T/policy.d"
cat >"$T/policy.d/10-ok.json" <<'EOP'
{ "name": "qemu-order", "priority": 10, "irq_restore": "during-resuming", "match": { "name": "ok" } }
EOP
# The destination host's migd: "ok" is guest-ok's data path under QEMU's order, "bad" is guest-bad's under the
# default stop-window.
cat >"$T/migd.conf" <<EOC
[Daemon]
PolicyDirectory=policy.d
Backends=libvirt
[Peer]
Listen=
[Libvirt]
URI=$(libvirt_uri dst)
[LibvirtDevice ok]
Domain=guest-ok
[LibvirtDevice bad]
Domain=guest-bad
EOC
start_migd
mkdir -p "$T/dst/etc/hooks/qemu.d"
install_hook_wrapper "$T/dst/etc/hooks/qemu.d/50-migd"
start_libvirtd src 1
start_libvirtd dst 2

migrate() {
        virsh_on src migrate --live --p2p "$1" "$(libvirt_uri dst)" --migrateuri "unix://$T/$1.mig" 2>&1
}

for name in guest-ok guest-bad guest-plain; do
        domain_xml "$name" >"$T/$name.xml"
        virsh_on src create "$T/$name.xml" >/dev/null
done

start=$(date +%s%N)
out=$(migrate guest-ok)
rc=$?
echo "# guest-ok migrated in $(( ($(date +%s%N) - start) / 1000000 )) ms"
expect_eq "guest-ok: libvirt migrates it (its hook accepted)" "0" "$rc${out:+: $out}"
expect_eq "guest-ok runs on the destination" "running" "$(virsh_on dst domstate guest-ok 2>&1)"
xml=$(virsh_on dst dumpxml guest-ok 2>&1)
expect_contains "the hook's rewrite reached the destination's domain definition" \
        '<migd:device device="ok" policy="qemu-order" irq-restore="during-resuming"/>' "$xml"
for _ in $(seq 40); do
        json=$(list_migrations)
        case "$json" in *'"device":"ok","peer":"libvirt","policy":"qemu-order","phase":"","bytes_total":0,"bytes_transferred":0,"rate":0,"eta_seconds":0,"downtime_usec":0,"result":"success"'*) break ;; esac
        sleep 0.1
done
expect_contains "migd shows it as a destination migration that succeeded" \
        '"role":"destination","device":"ok","peer":"libvirt","policy":"qemu-order","phase":"","bytes_total":0,"bytes_transferred":0,"rate":0,"eta_seconds":0,"downtime_usec":0,"result":"success"' "$json"
path=$(echo "$json" | grep -o '"object_path":"[^"]*","role":"destination","device":"ok"' | head -n1 | cut -d'"' -f4)
timeline=$(migration_timeline "$path")
for op in "migrate begin" "prepare begin -" "start begin -" "started begin -"; do
        expect_contains "the timeline has libvirt's \"$op\"" "\"operation\":\"$op" "$timeline"
done

out=$(migrate guest-bad)
rc=$?
expect_eq "guest-bad: the hook aborts the migration" 1 "$rc"
expect_contains "virsh shows the hook's reason" \
        "migd refuses the incoming migration of domain guest-bad: bad: policy stop-window cannot be honoured by QEMU" "$out"
expect_eq "guest-bad keeps running on the source" "running" "$(virsh_on src domstate guest-bad 2>&1)"
check "and is not on the destination" bash -c "! virsh -q -c '$(libvirt_uri dst)' domstate guest-bad >/dev/null 2>&1"

out=$(migrate guest-plain)
expect_eq "a domain migd knows nothing of migrates untouched" "0" "$?${out:+: $out}"
check "without migd metadata" bash -c "! virsh -q -c '$(libvirt_uri dst)' dumpxml guest-plain | grep -q migd:"

finish
