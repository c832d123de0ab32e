#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Busy devices, several migrations at once, and Cancel before and after the commit point.

. "$MIGD_SOURCE_ROOT/tests/lib/hosts.sh"

hosts_init a b
devs="d0 d1 d2 d3 d4"
sections() {
        local d
        for d in $devs; do
                printf '[SimDevice %s]\nMigrationFlags=stop-copy,p2p\nStateSize=1M\nMSIXVectors=4\n%s\n' "$d" "$1"
        done
}
sections GuestInterrupts=msix | host_config a
sections "" | host_config b
# Hold the destination in load (before the commit point) and in start (after it) long enough to act.
host_start a
host_start b MIGD_TEST_PAUSE=destination:load=1500,destination:start=1500

# Busy, then Cancel before the commit point.
ma=$(record_mark a d0)
mb=$(record_mark b d0)
m=$(start_migration a d0 b stop-window target d0)
wait_phase b "$(mig_path_of "$m")" load
expect_eq "a second StartMigration of the same device: Busy" org.vfiomig.Migd1.Error.Busy \
        "$(herror a /org/vfiomig/Migd1 Manager.StartMigration d0 "$(host_addr b)" "{'target': <'d1'>}")"
expect_eq "Device.Busy is true meanwhile" True "$(hprop a "$(dev_path d0)" Device Busy)"
expect_eq "Cancel before the commit point (destination in load) is accepted" "" \
        "$(hcall a "$m" Migration Cancel)"
expect_eq "cancelled migration: Result" cancelled "$(wait_result a "$m")"
expect_eq "cancelled migration: the source device RUNNING" RUNNING "$(dev_state a d0)"
expect_eq "cancelled migration: the source device RUNNING (record)" RUNNING \
        "$(checkrec state "$(record_file a d0)@$ma")"
wait_result b "$(mig_path_of "$m")" >/dev/null
expect_eq "cancelled migration: the destination device never ran after it stopped (record)" "" \
        "$(checkrec s2 "$(record_file b d0)@$mb")"
expect_ok "cancelled migration: S1 from the records" checkrec s1 "$(record_file a d0)@$ma" "$(record_file b d0)@$mb"
expect_eq "cancelled migration: the destination's target is back in STOP (record; docs/safety.md)" STOP \
        "$(checkrec state "$(record_file b d0)@$mb")"
mi=$(record_mark a d0)
raise_irq a d0 msix 3 >/dev/null
expect_eq "cancelled migration: the source device's interrupts are delivered" 1 \
        "$(checkrec count "$(record_file a d0)@$mi" irq_delivered vector=3)"
expect_eq "Cancel of an ended migration: InvalidState" org.vfiomig.Migd1.Error.InvalidState \
        "$(herror a "$m" Migration.Cancel)"

# Cancel after the commit point: the destination holds in start, after its commit.
m=$(start_migration a d1 b stop-window target d1)
wait_phase b "$(mig_path_of "$m")" start
expect_eq "Cancel after the commit point: PastCommitPoint" org.vfiomig.Migd1.Error.PastCommitPoint \
        "$(herror a "$m" Migration.Cancel)"
expect_eq "and the migration still succeeds" success "$(wait_result a "$m")"
expect_eq "the destination device RUNNING" RUNNING "$(dev_state b d1)"

# Several migrations of different devices at once (d2 d3 d4), all while the destination pauses in load.
declare -A mig=()
declare -A marks=()
for d in d2 d3 d4; do
        marks[$d]="$(record_mark a $d) $(record_mark b $d)"
        mig[$d]=$(start_migration a $d b qemu-compatible target $d)
done
for d in d2 d3 d4; do
        expect_eq "concurrent migration of $d: Result" success "$(wait_result a "${mig[$d]}")"
        read -r x y <<<"${marks[$d]}"
        expect_eq "concurrent migration of $d: destination RUNNING (record)" RUNNING \
                "$(checkrec state "$(record_file b $d)@$y")"
        expect_ok "concurrent migration of $d: S1 from the records" \
                checkrec s1 "$(record_file a $d)@$x" "$(record_file b $d)@$y"
done

finish
