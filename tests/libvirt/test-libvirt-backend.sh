#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The libvirt backend: StartMigration on a device of kind libvirt runs libvirt's job and fills the Migration object.

. "$(dirname "$0")/lib.sh"

need_root_and_libvirt
start_bus
mkdir -p "$T/policy.d"
cat >"$T/policy.d/10-web.json" <<'EOP'
{ "name": "qemu-order", "priority": 10, "irq_restore": "during-resuming", "downtime_limit_ms": 500,
  "match": { "name": ["web", "slow"] } }
EOP
start_libvirtd src 1
start_libvirtd dst 2
# The source host's migd. No hostdev can be attached to a TCG domain here: "web" is the domain's data path.
cat >"$T/migd.conf" <<EOC
[Daemon]
PolicyDirectory=policy.d
Backends=libvirt
[Peer]
Listen=
[Libvirt]
URI=$(libvirt_uri src)
[LibvirtDevice web]
Domain=guest-web
[LibvirtDevice slow]
Domain=guest-slow
[LibvirtDevice strict]
Domain=guest-strict
[LibvirtDevice cli]
Domain=guest-cli
EOC
head -c 4M /dev/urandom >"$T/data.rom"
for name in guest-web guest-slow guest-strict guest-cli; do
        domain_xml "$name" "$T/data.rom" >"$T/$name.xml"
        virsh_on src create "$T/$name.xml" >/dev/null
done
start_migd

expect_eq "a libvirt device's Backend" 's "libvirt"' "$(device_property web Backend)"
expect_eq "its State follows the domain" 's "RUNNING"' "$(device_property web State)"
expect_eq "its Policy" 's "qemu-order"' "$(device_property web Policy)"

migration_property() {
        busctl --address="$ADDR" get-property org.vfiomig.Migd1 "$1" org.vfiomig.Migd1.Migration "$2" 2>&1
}

# Watches PropertiesChanged while the migration runs: progress must be published, not only the end.
busctl --address="$ADDR" monitor --match "type='signal',interface='org.freedesktop.DBus.Properties'" \
        >"$T/monitor.log" 2>&1 &
EXTRA_PIDS="$EXTRA_PIDS $!"
sleep 0.3

start=$(date +%s%N)
out=$(busctl --address="$ADDR" call org.vfiomig.Migd1 /org/vfiomig/Migd1 org.vfiomig.Migd1.Manager StartMigration \
        'ssa{sv}' web "$(libvirt_uri dst)" 2 migrate_uri s "unix://$T/web.mig" bandwidth s 2 2>&1)
expect_contains "StartMigration on the libvirt device returns its Migration object" 'o "/org/vfiomig/Migd1/migration/' "$out"
path=$(echo "$out" | cut -d'"' -f2)
for _ in $(seq 300); do
        result=$(migration_property "$path" Result)
        [ "$result" != 's ""' ] && break
        sleep 0.1
done
echo "# guest-web migrated by migd through libvirt in $(( ($(date +%s%N) - start) / 1000000 )) ms"
expect_eq "the migration succeeds" 's "success"' "$result"
expect_eq "the domain runs on the destination" "running" "$(virsh_on dst domstate guest-web 2>&1)"
check "and no longer on the source" bash -c "! virsh -q -c '$(libvirt_uri src)' domstate guest-web >/dev/null 2>&1"
expect_eq "Role" 's "source"' "$(migration_property "$path" Role)"
expect_eq "Policy" 's "qemu-order"' "$(migration_property "$path" Policy)"
total=$(migration_property "$path" BytesTotal | cut -d' ' -f2)
done_bytes=$(migration_property "$path" BytesTransferred | cut -d' ' -f2)
echo "# BytesTotal $total BytesTransferred $done_bytes"
check "BytesTotal comes from libvirt's job statistics" test "${total:-0}" -gt 0
check "BytesTransferred too" test "${done_bytes:-0}" -gt 0
check "progress was published while it ran (several PropertiesChanged with BytesTransferred)" \
        test "$(grep -c 'BytesTransferred' "$T/monitor.log")" -ge 3
timeline=$(migration_timeline "$path")
expect_contains "the timeline has the pre-copy phase" '"event":"phase","phase":"precopy"' "$timeline"
expect_contains "and the result" '"event":"result","result":"success"' "$timeline"
expect_eq "the device is idle again" 'b false' "$(device_property web Busy)"
expect_eq "and not running here any more" 's "STOP"' "$(device_property web State)"

# migctl migrate passes the URI through; libvirt picks QEMU's migration URI itself (tcp to this host's name).
cat >"$T/policy.d/20-cli.json" <<'EOP'
{ "name": "cli-order", "priority": 10, "irq_restore": "during-resuming", "match": { "name": "cli" } }
EOP
manager_call Reload >/dev/null
out=$(timeout 60 "$MIGCTL" --bus "$ADDR" migrate cli --to "$(libvirt_uri dst)" --json 2>&1)
expect_eq "migctl migrate on a libvirt device: exit 0" 0 "$?"
expect_contains "and it ends in success" '"result":"success"' "$out"
expect_eq "guest-cli runs on the destination" "running" "$(virsh_on dst domstate guest-cli 2>&1)"

out=$(busctl --address="$ADDR" call org.vfiomig.Migd1 /org/vfiomig/Migd1 org.vfiomig.Migd1.Manager StartMigration \
        'ssa{sv}' strict "$(libvirt_uri dst)" 0 2>&1)
expect_contains "a policy QEMU cannot honour is refused with PolicyViolation" \
        "Device strict (domain guest-strict) cannot migrate under policy stop-window cannot be honoured by QEMU" "$out"
out=$(busctl --address="$ADDR" call org.vfiomig.Migd1 /org/vfiomig/Migd1 org.vfiomig.Migd1.Manager StartMigration \
        'ssa{sv}' web "$(libvirt_uri dst)" 1 policy s early-irqs 2>&1)
expect_contains "so is an explicitly named one, saying which" "under policy early-irqs cannot be honoured by QEMU" "$out"
out=$(busctl --address="$ADDR" call org.vfiomig.Migd1 /org/vfiomig/Migd1 org.vfiomig.Migd1.Manager StartMigration \
        'ssa{sv}' web "$(libvirt_uri dst)" 0 2>&1)
expect_contains "a domain that no longer runs here: InvalidState" "Domain guest-web of device web is not running" "$out"
out=$(busctl --address="$ADDR" call org.vfiomig.Migd1 /org/vfiomig/Migd1 org.vfiomig.Migd1.Manager StartMigration \
        'ssa{sv}' slow host-b 0 2>&1)
expect_contains "a destination that is no libvirt URI: InvalidArgs" "must be a libvirt URI" "$out"

# Cancel: a bandwidth of 1 MiB/s keeps the job running long enough to abort it.
out=$(busctl --address="$ADDR" call org.vfiomig.Migd1 /org/vfiomig/Migd1 org.vfiomig.Migd1.Manager StartMigration \
        'ssa{sv}' slow "$(libvirt_uri dst)" 2 migrate_uri s "unix://$T/slow.mig" bandwidth s 1 2>&1)
path=$(echo "$out" | cut -d'"' -f2)
for _ in $(seq 50); do
        [ "$(migration_property "$path" Phase)" = 's "precopy"' ] && break
        sleep 0.05
done
out=$(busctl --address="$ADDR" call org.vfiomig.Migd1 "$path" org.vfiomig.Migd1.Migration Cancel 2>&1)
expect_eq "Cancel() is accepted while libvirt's job runs" "" "$out"
for _ in $(seq 100); do
        result=$(migration_property "$path" Result)
        [ "$result" != 's ""' ] && break
        sleep 0.1
done
expect_eq "the job is aborted (virDomainAbortJob)" 's "cancelled"' "$result"
expect_eq "the domain keeps running on the source" "running" "$(virsh_on src domstate guest-slow 2>&1)"

finish
