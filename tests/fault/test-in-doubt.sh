#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Source killed after its commit decision with the destination unreachable: in-doubt, then Resolve commit or abort.

. "$MIGD_SOURCE_ROOT/tests/lib/hosts.sh"

hosts_init a b
printf '[SimDevice %s]\nMigrationFlags=stop-copy,p2p\nMSIXVectors=4\nGuestInterrupts=msix\n' r_commit r_abort | host_config a
printf '[SimDevice %s]\nMigrationFlags=stop-copy,p2p\nMSIXVectors=4\n' r_commit r_abort | host_config b

host_start a
host_start b
for decision in commit abort; do
        dev=r_$decision
        what="in doubt, Resolve(\"$decision\")"
        # The source holds in cleanup (it decided commit, B confirmed), B holds in start (committed, not yet running).
        host_restart a MIGD_TEST_PAUSE=source:cleanup=6000
        host_restart b MIGD_TEST_PAUSE=destination:start=6000
        ra="$(record_file a "$dev")@$(record_mark a "$dev")"
        rb="$(record_file b "$dev")@$(record_mark b "$dev")"
        m=$(start_migration a "$dev" b stop-window target "$dev")
        wait_phase a "$m" cleanup || not_ok "$what: the source reached cleanup"
        host_kill b 9
        host_restart a -
        expect_eq "$what: after restart with the destination unreachable: Result" in-doubt "$(wait_result a "$m")"
        expect_eq "$what: the source device stays stopped (record)" STOP "$(checkrec state "$ra")"
        expect_eq "$what: Resolve of a bad decision: InvalidArgs" org.freedesktop.DBus.Error.InvalidArgs \
                "$(herror a "$m" Migration.Resolve maybe)"
        expect_eq "$what: Resolve" "" "$(herror a "$m" Migration.Resolve "$decision")"
        if [ "$decision" = commit ]; then
                expect_eq "$what: Result" success "$(wait_result a "$m")"
                expect_eq "$what: the source device stays STOP (record)" STOP "$(checkrec state "$ra")"
                # B comes back: its journal says commit, so it runs the device.
                host_restart b -
                wait_device b "$dev" RUNNING
                expect_eq "$what: S4: the destination runs the device after its restart (record)" RUNNING \
                        "$(checkrec state "$rb")"
                winner=b
        else
                expect_eq "$what: Result" failed "$(wait_result a "$m")"
                wait_device a "$dev" RUNNING
                expect_eq "$what: S4: the source runs the device again (record)" RUNNING "$(checkrec state "$ra")"
                expect_eq "$what: the unreachable destination's device is not running (record)" STOP \
                        "$(checkrec state "$rb")"
                winner=a
                # B stays down: Resolve("abort") is only right when the destination is known not to run the
                # device (its host was lost); restarting it would run it from its committed journal.
        fi
        expect_ok "$what: S1 from the records" checkrec s1 "$ra" "$rb"
        mi=$(record_mark $winner "$dev")
        out=$(raise_irq $winner "$dev" msix 2) || diag "RaiseInterrupt: $out"
        expect_eq "$what: the running device's interrupts are delivered" 1 \
                "$(checkrec count "$(record_file $winner "$dev")@$mi" irq_delivered vector=2)"
        expect_eq "$what: Resolve again: InvalidState" org.vfiomig.Migd1.Error.InvalidState \
                "$(herror a "$m" Migration.Resolve "$decision")"
done

finish
