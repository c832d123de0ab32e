# SPDX-License-Identifier: LGPL-2.1-or-later
# libvirt suite harness: libvirtd instances in private mount namespaces, a private bus with migd, TAP, cleanup.

. "$MIGD_SOURCE_ROOT/tests/integration/lib.sh"

HOOK="$MIGD_BUILD_ROOT/client/migd-libvirt-hook"
SUBREAPER="$MIGD_BUILD_ROOT/tests/libvirt/subreaper"
FIXTURES="$MIGD_SOURCE_ROOT/tests/libvirt/domains"
# QEMU's capability probe takes 8-15 s; one probe per build tree, copied into every instance.
CAPS_CACHE="$MIGD_BUILD_ROOT/tests/libvirt/qemu-capabilities"
LIBVIRT_PIDS=
LIBVIRT_NAMES=

libvirt_cleanup() {
        local name pidfile
        for name in $LIBVIRT_NAMES; do
                # Stopping libvirtd leaves QEMU running: kill every domain by its pidfile.
                for pidfile in "$T/$name/run/qemu/"*.pid; do
                        [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null
                done
        done
        for pid in $LIBVIRT_PIDS; do
                kill "$pid" 2>/dev/null
        done
        for pid in $LIBVIRT_PIDS; do
                wait "$pid" 2>/dev/null
        done
        cleanup
}
trap libvirt_cleanup EXIT

need_root_and_libvirt() {
        local what
        if ! is_root; then
                echo "1..0 # SKIP needs root (private mount namespaces for libvirtd)"
                exit 0
        fi
        for what in libvirtd virsh qemu-system-x86_64 virt-xml-validate unshare; do
                if ! command -v "$what" >/dev/null; then
                        echo "Bail out! $what is missing; run scripts/install-deps.sh"
                        exit 1
                fi
        done
}

# A host UUID per instance: libvirt refuses to migrate to a host with its own UUID.
instance_uuid() {
        printf '8d1f6c2e-0000-4000-8000-%012d\n' "$1"
}

libvirt_uri() {
        echo "qemu+unix:///system?socket=$T/$1/run/libvirt-sock"
}

virsh_on() {
        local name=$1
        shift
        virsh -q -c "$(libvirt_uri "$name")" "$@"
}

# start_libvirtd NAME INDEX: a libvirtd whose /etc/libvirt, /run, /var/{lib,log,cache}/libvirt and
# passwd/group are its own; its socket is $T/NAME/run/libvirt-sock.
start_libvirtd() {
        local name=$1 index=$2 d="$T/$1"

        mkdir -p "$d/etc/hooks/qemu.d" "$d/run" "$d/lib" "$d/log" "$d/cache/qemu/capabilities"
        cat >"$d/etc/libvirtd.conf" <<EOC
host_uuid = "$(instance_uuid "$index")"
unix_sock_dir = "/run/libvirt"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOC
        cat >"$d/etc/qemu.conf" <<'EOC'
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
stdio_handler = "file"
namespaces = [ ]
cgroup_controllers = [ ]
EOC
        cp /etc/passwd "$d/passwd"
        cp /etc/group "$d/group"
        grep -q '^libvirt-qemu:' "$d/passwd" || echo 'libvirt-qemu:x:64055:64055:libvirt qemu:/var/lib/libvirt:/usr/sbin/nologin' >>"$d/passwd"
        grep -q '^libvirt-qemu:' "$d/group" || echo 'libvirt-qemu:x:64055:' >>"$d/group"
        grep -q '^kvm:' "$d/group" || echo 'kvm:x:64056:' >>"$d/group"
        cp "$CAPS_CACHE"/*.xml "$d/cache/qemu/capabilities/" 2>/dev/null
        # Everything is mounted in the namespace of the daemon only; the sockets stay reachable from here
        # because they live in this test's directory.
        "$SUBREAPER" unshare -m --propagation private sh -ec "
                mount -t tmpfs tmpfs /run
                mount -t tmpfs tmpfs /var/lib
                mount -t tmpfs tmpfs /var/log
                mount -t tmpfs tmpfs /var/cache
                mkdir -p /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt
                mount --bind '$d/run' /run/libvirt
                mount --bind '$d/lib' /var/lib/libvirt
                mount --bind '$d/log' /var/log/libvirt
                mount --bind '$d/cache' /var/cache/libvirt
                mount --bind '$d/etc' /etc/libvirt
                mount --bind '$d/passwd' /etc/passwd
                mount --bind '$d/group' /etc/group
                exec libvirtd
        " >"$d/libvirtd.out" 2>&1 &
        LIBVIRT_PIDS="$LIBVIRT_PIDS $!"
        LIBVIRT_NAMES="$LIBVIRT_NAMES $name"
        for _ in $(seq 600); do
                [ -S "$d/run/libvirt-sock" ] && virsh_on "$name" version >/dev/null 2>&1 && break
                sleep 0.05
        done
        if ! virsh_on "$name" version >/dev/null 2>&1; then
                echo "Bail out! libvirtd $name did not start: $(cat "$d/libvirtd.out")"
                exit 1
        fi
        # The first instance ever pays for the capability probe; later ones copy its result.
        if [ ! -e "$CAPS_CACHE/.done" ]; then
                virsh_on "$name" domcapabilities --virttype qemu >/dev/null 2>&1
                mkdir -p "$CAPS_CACHE"
                cp "$d/cache/qemu/capabilities/"*.xml "$CAPS_CACHE/" 2>/dev/null && touch "$CAPS_CACHE/.done"
        fi
}

# A disk-less TCG domain: nothing to share between the two hosts, so a live migration needs no storage. Its RAM
# is all zero pages, which QEMU sends almost for free; a ROM file (argument 2) of random bytes gives the migration
# real data to move, at the bandwidth a test sets.
domain_xml() {
        cat <<EOX
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='null'/>
    ${2:+<interface type='user'><model type='e1000'/><rom file='$2'/></interface>}
    <memballoon model='none'/>
  </devices>
</domain>
EOX
}

domain_name_of() {
        sed -n 's:.*<name>\(.*\)</name>.*:\1:p' "$1" | head -n1
}

# The hook as installed into a qemu.d folder: libvirt runs it with fixed arguments and an empty environment,
# so the bus and the configuration file are the only things the wrapper adds.
install_hook_wrapper() {
        cat >"$1" <<EOW
#!/bin/sh
exec "$HOOK" --bus "$ADDR" --config "$T/migd.conf" "\$@"
EOW
        chmod +x "$1"
}

# ListMigrations()'s JSON as migd sent it (gdbus quotes strings differently when they hold an apostrophe).
list_migrations() {
        busctl --address="$ADDR" --json=short call org.vfiomig.Migd1 /org/vfiomig/Migd1 org.vfiomig.Migd1.Manager \
                ListMigrations | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"][0])'
}

migration_timeline() {
        busctl --address="$ADDR" --json=short call org.vfiomig.Migd1 "$1" org.vfiomig.Migd1.Migration GetTimeline |
                python3 -c 'import json, sys; print(json.load(sys.stdin)["data"][0])'
}
