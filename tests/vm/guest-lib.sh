# SPDX-License-Identifier: LGPL-2.1-or-later
# Helpers for VM scenarios: TAP lines for the host-side runner, buses, migds, mtty devices and their registers.
MIGD="$MIGD_BUILD_ROOT/daemon/migd"
MIGCTL="$MIGD_BUILD_ROOT/client/migctl"
# shellcheck source=/dev/null
. "$MIGD_SOURCE_ROOT/tests/lib/private-bus.sh"
PIDS=()

# Lines the runner picks out of the console: "@@TAP ok DESCRIPTION", "@@TAP not ok ...", "@@TAP skip ... # why".
FAILED=0
ok() { echo "@@TAP ok $*"; }
not_ok() { echo "@@TAP not ok $*"; FAILED=1; }
diag() { echo "@@TAP # [$(cut -d" " -f1 /proc/uptime)s] $*"; }
check() {
        local what=$1
        shift
        if "$@"; then ok "$what"; else not_ok "$what"; fi
}
expect_eq() {
        if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1"; diag "expected '$2', got '$3'"; fi
}

guest_cleanup() {
        local p f
        # What the daemons said is the first thing to read when something failed.
        if [ "$FAILED" = 1 ]; then
                for f in /tmp/migd-*/log; do
                        [ -f "$f" ] && tail -n 40 "$f" | sed "s|^|@@TAP # $f: |"
                done
        fi
        for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
        for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
}

# new_mtty: an mtty-2 mdev (two UARTs, BAR0 and BAR1); prints its UUID.
new_mtty() {
        local uuid
        uuid=$(cat /proc/sys/kernel/random/uuid)
        echo "$uuid" > /sys/class/mdev_bus/mtty/mdev_supported_types/mtty-2/create || return 1
        echo "$uuid"
}

# start_bus NAME: a private dbus-daemon; its address in BUS_NAME's variable ADDR_NAME.
start_bus() {
        local dir=/tmp/bus-$1
        mkdir -p "$dir"
        private_bus_config "unix:dir=$dir" >"$dir/bus.conf"
        dbus-daemon --config-file="$dir/bus.conf" --nofork --print-address=3 3>"$dir/addr" 2>"$dir/log" &
        PIDS+=($!)
        for _ in $(seq 200); do
                [ -s "$dir/addr" ] && break
                sleep 0.05
        done
        printf -v "ADDR_$1" '%s' "$(head -n1 "$dir/addr")"
}

# start_migd NAME CONFIG [ENV...]: migd on bus NAME; its pid in MIGD_PID_NAME.
start_migd() {
        local name=$1 conf=$2 addr_var="ADDR_$1" i
        shift 2
        mkdir -p "/tmp/migd-$name" /tmp/no-policies
        env "$@" "$MIGD" --config "$conf" --bus "${!addr_var}" --state-dir "/tmp/migd-$name/state" \
                --policy-dir /tmp/no-policies >"/tmp/migd-$name/log" 2>&1 &
        PIDS+=($!)
        printf -v "MIGD_PID_$name" '%s' "$!"
        for i in $(seq 300); do
                busctl --address="${!addr_var}" call org.freedesktop.DBus /org/freedesktop/DBus \
                        org.freedesktop.DBus NameHasOwner s org.vfiomig.Migd1 2>/dev/null | grep -q true && return 0
                sleep 0.1
        done
        diag "migd $name did not start: $(tail -n 5 "/tmp/migd-$name/log")"
        return 1
}

# vfio_call BUS DEVICE METHOD SIGNATURE ARGS...: org.vfiomig.Migd1.VfioDevice on DEVICE.
vfio_call() {
        local addr_var="ADDR_$1"
        busctl --address="${!addr_var}" call org.vfiomig.Migd1 "/org/vfiomig/Migd1/device/$(dev_path "$2")" \
                org.vfiomig.Migd1.VfioDevice "$3" "${@:4}"
}

# The device id as it appears in an object path (sd_bus_path_encode escapes all but [A-Za-z0-9]).
dev_path() {
        local s=$1 out= c i
        for ((i = 0; i < ${#s}; i++)); do
                c=${s:i:1}
                case "$c" in
                [A-Za-z0-9]) out+=$c ;;
                *) out+=$(printf '_%02x' "'$c") ;;
                esac
        done
        echo "$out"
}

# write_reg BUS DEVICE BAR OFFSET VALUE / read_reg BUS DEVICE BAR OFFSET: one UART register.
write_reg() { vfio_call "$1" "$2" WriteRegion utay "$3" "$4" 1 "$5" >/dev/null; }
read_reg() {
        local out
        out=$(vfio_call "$1" "$2" ReadRegion utu "$3" "$4" 1 2>&1) || { diag "ReadRegion on $2: $out"; return 1; }
        echo "$out" | awk '{print $3}'
}

# irq_signals BUS DEVICE INDEX [FIELD]: eventfd signals migd counted on that index (or another field of
# InterruptSignals: vectors, enabled, watched).
irq_signals() {
        vfio_call "$1" "$2" InterruptSignals | sed 's/^s "//; s/"$//; s/\\"/"/g' |
                python3 -c "import json,sys; print(json.load(sys.stdin)['$3']['${4:-signals}'])"
}

# start_vmm BUS NAME UUID MINI-VMM-ARGS...: a VMM (tests/vm/mini-vmm.c) opens the mdev, registers it with migd on
# BUS as NAME and counts its own eventfd's signals in /tmp/vmm-NAME.count; its pid in VMM_PID_NAME.
start_vmm() {
        local addr_var="ADDR_$1" name=$2 uuid=$3 pid i
        shift 3
        "$MIGD_BUILD_ROOT/tests/vm/mini-vmm" --bus "${!addr_var}" --name "$name" --mdev "$uuid" \
                --count-file "/tmp/vmm-$name.count" "$@" >"/tmp/vmm-$name.out" 2>&1 &
        pid=$!
        PIDS+=($pid)
        printf -v "VMM_PID_$name" '%s' "$pid"
        # The count file appears once RegisterDevice has answered.
        for i in $(seq 100); do
                [ -s "/tmp/vmm-$name.count" ] && return 0
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
        done
        diag "mini-vmm $name: $(cat "/tmp/vmm-$name.out")"
        return 1
}

vmm_count() { cat "/tmp/vmm-$1.count" 2>/dev/null || echo -1; }

# vmm_interrupt BUS DEVICE: makes mtty raise its interrupt once (through migd's copy of the device fd); true
# when the VMM's own eventfd got it.
vmm_interrupt() {
        local before i
        before=$(vmm_count "$2")
        write_reg "$1" "$2" 0 1 0
        write_reg "$1" "$2" 0 1 2
        for i in $(seq 50); do
                [ "$(vmm_count "$2")" -gt "$before" ] && return 0
                sleep 0.1
        done
        diag "the VMM's msi count stayed at $before on $2"
        return 1
}

# restore_event BUS DEVICE: "STATE TRIGGERS" of the destination's SET_IRQS in the last migration of DEVICE.
restore_event() {
        local addr_var="ADDR_$1" id
        id=$("$MIGCTL" --bus "${!addr_var}" --json status |
                python3 -c "import json,sys; print([m['id'] for m in json.load(sys.stdin) if m['device'] == '$2'][-1])")
        "$MIGCTL" --bus "${!addr_var}" --json timeline "$id" | python3 -c "
import json, sys
for e in json.load(sys.stdin):
    if e.get('event') == 'set_irqs' and e.get('role') == 'destination':
        print(e.get('state'), e.get('triggers'))"
}

device_prop() {
        local addr_var="ADDR_$1"
        busctl --address="${!addr_var}" get-property org.vfiomig.Migd1 "/org/vfiomig/Migd1/device/$(dev_path "$2")" \
                org.vfiomig.Migd1.Device "$3" | sed 's/^[a-z] //; s/"//g'
}

# uart_interrupt BUS DEVICE: IER with THRI set and an empty FIFO: mtty raises its interrupt once. Waits for the
# count to move and says whether it did.
uart_interrupt() {
        local before after i
        before=$(irq_signals "$1" "$2" msi)
        write_reg "$1" "$2" 0 1 0
        write_reg "$1" "$2" 0 1 2
        for i in $(seq 50); do
                after=$(irq_signals "$1" "$2" msi)
                [ "$after" -gt "$before" ] && return 0
                sleep 0.1
        done
        diag "msi signals stayed at $before on $2"
        return 1
}

# vfio_conf FILE PORT NAME UUID ACCESS [GUEST_IRQS]: a migd.conf with one vfio device.
vfio_conf() {
        cat >"$1" <<EOC
[Daemon]
Backends=vfio
[Peer]
Listen=$2
Insecure=yes
[VfioDevice $3]
Path=$4
Access=$5
GuestInterrupts=${6:-none}
EOC
}
