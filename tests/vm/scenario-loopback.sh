# SPDX-License-Identifier: LGPL-2.1-or-later
# One VM, two mtty devices, two migds joined over loopback: migrations both ways under both policies, a
# qualification run, and a destination killed during load.
diag "kernel $(uname -r), $(ls /sys/bus/mdev/devices 2>/dev/null | wc -l) mdevs before the test"
A=$(new_mtty) && B=$(new_mtty)
check "two mtty-2 mdevs created" test -n "$A" -a -n "$B"

# A is opened through group + container and has a guest with MSI; B (the spare) through the cdev and iommufd.
vfio_conf /tmp/a.conf 127.0.0.1:7481 mttyA "$A" group msi
vfio_conf /tmp/b.conf 127.0.0.1:7482 mttyB "$B" cdev
start_bus a && start_bus b
check "migd A starts" start_migd a /tmp/a.conf
check "migd B starts" start_migd b /tmp/b.conf
expect_eq "A opened through the group" "group" "$(vfio_call a mttyA Access 2>/dev/null; busctl --address="$ADDR_a" get-property org.vfiomig.Migd1 /org/vfiomig/Migd1/device/mttyA org.vfiomig.Migd1.VfioDevice Access | sed 's/^s //; s/"//g')"
expect_eq "B opened through the cdev" "cdev" "$(busctl --address="$ADDR_b" get-property org.vfiomig.Migd1 /org/vfiomig/Migd1/device/mttyB org.vfiomig.Migd1.VfioDevice Access | sed 's/^s //; s/"//g')"
expect_eq "mtty reports its migration flags" "as 3 \"stop-copy\" \"p2p\" \"pre-copy\"" \
        "$(busctl --address="$ADDR_a" get-property org.vfiomig.Migd1 /org/vfiomig/Migd1/device/mttyA org.vfiomig.Migd1.Device MigrationFlags)"
discovered=$(busctl --address="$ADDR_a" call org.vfiomig.Migd1 /org/vfiomig/Migd1 org.vfiomig.Migd1.Manager DiscoverDevices)
case "$discovered" in *"$A"*"mttyA"*) ok "DiscoverDevices lists the mdev and its name" ;; *) not_ok "DiscoverDevices lists the mdev"; diag "$discovered" ;; esac

# Qualify the spare before it is used; the report is kept for docs/qualify-mtty.md.
"$MIGCTL" --bus "$ADDR_b" qualify mttyB >/tmp/qualify.txt 2>&1
rc=$?
sed 's/^/@@QUALIFY /' /tmp/qualify.txt
expect_eq "migctl qualify mttyB passes" 0 "$rc"

check "A's interrupt works before migration" uart_interrupt a mttyA

# migrate FROM_BUS FROM_DEV TO_PORT TO_DEV POLICY
migrate() {
        "$MIGCTL" --bus "$(eval echo "\$ADDR_$1")" migrate "$2" --to "127.0.0.1:$3" --target "$4" --policy "$5" \
                >"/tmp/migrate-$2-$5.log" 2>&1
}

round() {
        local from_bus=$1 from=$2 to_bus=$3 to=$4 port=$5 policy=$6 scr=$7 lcr=$8
        write_reg "$from_bus" "$from" 0 7 "$scr"
        write_reg "$from_bus" "$from" 0 3 "$lcr"
        write_reg "$from_bus" "$from" 1 7 $((scr ^ 0xff))
        if migrate "$from_bus" "$from" "$port" "$to" "$policy"; then
                ok "$policy: $from -> $to migrated"
        else
                not_ok "$policy: $from -> $to migrated"
                sed 's/^/@@TAP # /' "/tmp/migrate-$from-$policy.log" | tail -n 20
        fi
        # migctl returns when the source is done; the destination lets go of its device a moment later.
        for _ in $(seq 100); do
                [ "$(device_prop "$to_bus" "$to" Busy)" = false ] && break
                sleep 0.1
        done
        expect_eq "$policy: destination $to RUNNING" RUNNING "$(device_prop "$to_bus" "$to" State)"
        expect_eq "$policy: source $from stopped" STOP "$(device_prop "$from_bus" "$from" State)"
        expect_eq "$policy: scratch register survived" "$scr" "$(read_reg "$to_bus" "$to" 0 7)"
        expect_eq "$policy: line control register survived" "$lcr" "$(read_reg "$to_bus" "$to" 0 3)"
        expect_eq "$policy: second UART's scratch survived" "$((scr ^ 0xff))" "$(read_reg "$to_bus" "$to" 1 7)"
        check "$policy: destination's interrupt fires after the move" uart_interrupt "$to_bus" "$to"
}

round a mttyA b mttyB 7482 stop-window 90 27
round b mttyB a mttyA 7481 qemu-compatible 165 3

# A failed migration: the destination dies while it loads; A must run on, interrupts and registers intact.
# Each round gets a fresh destination daemon and device (MIGD_TEST_PAUSE holds it 3 s in load).
for policy in stop-window qemu-compatible; do
        C=$(new_mtty)
        vfio_conf "/tmp/c-$policy.conf" 127.0.0.1:7483 mttyC "$C" auto
        start_bus "c_${policy//-/_}"
        printf -v ADDR_c '%s' "$(eval echo "\$ADDR_c_${policy//-/_}")"
        start_migd c "/tmp/c-$policy.conf" MIGD_TEST_PAUSE=destination:load=3000 || not_ok "$policy: migd C starts"
        write_reg a mttyA 0 7 66
        migrate a mttyA 7483 mttyC "$policy" &
        mig=$!
        # Kill C once it is holding in load (its log says so), not at a guessed moment.
        for _ in $(seq 100); do
                grep -q "Phase load (destination)" /tmp/migd-c/log 2>/dev/null && break
                sleep 0.1
        done
        kill -9 "$MIGD_PID_c"
        if wait "$mig"; then not_ok "$policy: migration fails when the destination dies"; else ok "$policy: migration fails when the destination dies"; fi
        grep -q "Phase load (destination)" /tmp/migd-c/log || diag "C never reached load: $(tail -n 3 "/tmp/migd-$policy.log" 2>/dev/null)"
        diag "$(tail -n 2 "/tmp/migrate-mttyA-$policy.log")"
        rm -f /tmp/migd-c/log
        expect_eq "$policy: source RUNNING after the failure" RUNNING "$(device_prop a mttyA State)"
        expect_eq "$policy: source registers intact" 66 "$(read_reg a mttyA 0 7)"
        check "$policy: source interrupt works after the failure" uart_interrupt a mttyA
done
# A VMM keeps its device and its guest's eventfds and hands migd copies over D-Bus (RegisterDevice, fd passing):
# while the device runs its eventfd stays the VMM's; the target's VMM hands its eventfd for the restore, and migd
# sets it on the target at the point the plan puts SET_IRQS.
for policy in stop-window qemu-compatible; do
        src=vmmsrc_${policy%%-*}
        dst=vmmdst_${policy%%-*}
        S=$(new_mtty) && D=$(new_mtty)
        check "$policy: a VMM registers its running mtty and MSI eventfd with migd A" start_vmm a "$src" "$S" --msi 1
        check "$policy: the target's VMM registers its idle mtty, MSI eventfd for the restore" \
                start_vmm b "$dst" "$D" --msi 1 --interrupts-at restore
        expect_eq "$policy: migd A has $src as a registered fd" "b true fd" \
                "$(busctl --address="$ADDR_a" get-property org.vfiomig.Migd1 "/org/vfiomig/Migd1/device/$src" \
                        org.vfiomig.Migd1.VfioDevice Registered Access | tr '\n' ' ' | sed 's/"//g; s/s //; s/ $//')"
        expect_eq "$policy: the source has the VMM's MSI vector enabled" 1 "$(irq_signals a "$src" msi enabled)"
        expect_eq "$policy: the target waits with no trigger set" 0 "$(irq_signals b "$dst" msi enabled)"
        expect_eq "$policy: migd B keeps the target VMM's eventfd for the restore" 1 \
                "$(irq_signals b "$dst" msi for_restore)"
        check "$policy: the running source's interrupt reaches the VMM's own eventfd" vmm_interrupt a "$src"
        expect_eq "$policy: migd left the running device's VMM eventfd alone" 0 "$(irq_signals a "$src" msi)"
        write_reg a "$src" 0 7 $((0x5a))
        write_reg a "$src" 0 3 $((0x1b))
        if migrate a "$src" 7482 "$dst" "$policy"; then
                ok "$policy: migctl migrate $src -> $dst"
        else
                not_ok "$policy: migctl migrate $src -> $dst"
                sed 's/^/@@TAP # /' "/tmp/migrate-$src-$policy.log" | tail -n 20
        fi
        for _ in $(seq 100); do
                [ "$(device_prop b "$dst" Busy)" = false ] && break
                sleep 0.1
        done
        expect_eq "$policy: $dst RUNNING" RUNNING "$(device_prop b "$dst" State)"
        expect_eq "$policy: $src stopped" STOP "$(device_prop a "$src" State)"
        expect_eq "$policy: scratch register survived" $((0x5a)) "$(read_reg b "$dst" 0 7)"
        expect_eq "$policy: line control register survived" $((0x1b)) "$(read_reg b "$dst" 0 3)"
        if [ "$policy" = stop-window ]; then want=STOP; else want=RESUMING; fi
        expect_eq "$policy: the target VMM's eventfd was set in $want" "$want vmm" "$(restore_event b "$dst")"
        check "$policy: the moved device's interrupt reaches the target VMM's own eventfd" vmm_interrupt b "$dst"
        expect_eq "$policy: the source's triggers are gone" 0 "$(irq_signals a "$src" msi enabled)"
        expect_eq "$policy: the target's eventfd is its trigger now, no longer waiting" "1 0" \
                "$(irq_signals b "$dst" msi enabled) $(irq_signals b "$dst" msi for_restore)"
        kill "$(eval echo "\$VMM_PID_$src")" "$(eval echo "\$VMM_PID_$dst")" 2>/dev/null
done

# What a VMM gets wrong is refused with migd's reasons, before anything moves.
E=$(new_mtty) && F=$(new_mtty)
vectors=$(irq_signals a vmmsrc_stop msi vectors)
if start_vmm b toomany "$F" --msi $((vectors + 1)) --interrupts-at restore >/dev/null; then
        not_ok "RegisterDevice with more eventfds than vectors is refused"
else
        expect_eq "RegisterDevice with more eventfds than vectors is refused, naming both counts" \
                "mini-vmm: RegisterDevice toomany: $((vectors + 1)) msi eventfds for toomany, which has $vectors msi vectors. (org.freedesktop.DBus.Error.InvalidArgs)" \
                "$(cat /tmp/vmm-toomany.out)"
fi
G=$(new_mtty)
start_vmm b badopt "$G" --msi 1 --interrupts-at later >/dev/null
expect_eq "RegisterDevice with an unknown interrupts_at is refused, naming the choices" \
        "mini-vmm: RegisterDevice badopt: Option interrupts_at is 'later'; it must be 'registration' (a running device: set them now) or 'restore' (an incoming migration's target: set them at the plan's interrupt restore). (org.freedesktop.DBus.Error.InvalidArgs)" \
        "$(cat /tmp/vmm-badopt.out)"
check "a VMM whose guest has MSI off registers its mtty" start_vmm a vmmsrc_off "$E" --msi 0
check "a target's VMM hands one MSI eventfd for the restore" start_vmm b vmmdst_one "$F" --msi 1 --interrupts-at restore
if migrate a vmmsrc_off 7482 vmmdst_one stop-window; then
        not_ok "a migration into a target whose VMM expects other vectors fails"
else
        ok "a migration into a target whose VMM expects other vectors fails"
fi
case $(cat /tmp/migrate-vmmsrc_off-stop-window.log) in
*"its VMM handed 1 msi eventfds, the source's guest has 0 msi vectors enabled"*) ok "the error names the mismatch" ;;
*) not_ok "the error names the mismatch"; sed 's/^/@@TAP # /' /tmp/migrate-vmmsrc_off-stop-window.log | tail -n 5 ;;
esac
expect_eq "the source runs on" RUNNING "$(device_prop a vmmsrc_off State)"
expect_eq "the target was never touched" "RUNNING 0" \
        "$(device_prop b vmmdst_one State) $(irq_signals b vmmdst_one msi enabled)"

kill -0 "$MIGD_PID_a" 2>/dev/null || not_ok "migd A still runs"
