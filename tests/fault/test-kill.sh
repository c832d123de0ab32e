#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# kill -9 of one daemon in each phase (argument: source or destination), restart, then S1, S3 and S4 from the records.

. "$MIGD_SOURCE_ROOT/tests/lib/hosts.sh"

role=${1:?usage: test-kill.sh source|destination}
# PHASE:SIDE-THAT-MUST-END-RUNNING
if [ "$role" = destination ]; then
        cases="prepare:a load:a irq_restore:a commit:a start:b"
        victim=b
else
        cases="prepare:a stop_copy:a commit:a cleanup:b"
        victim=a
fi

hosts_init a b
sections() {
        local c
        for c in $cases; do
                printf '[SimDevice k_%s]\nMigrationFlags=stop-copy,p2p\nStateSize=1M\nMSIXVectors=4\n%s\n' "${c%%:*}" "$1"
        done
}
sections GuestInterrupts=msix | host_config a
sections "" | host_config b
host_start a
host_start b

for c in $cases; do
        phase=${c%%:*}
        winner=${c#*:}
        dev=k_$phase
        what="$role killed in $phase"
        host_restart $victim MIGD_TEST_PAUSE="$role:$phase=4000"
        ra="$(record_file a "$dev")@$(record_mark a "$dev")"
        rb="$(record_file b "$dev")@$(record_mark b "$dev")"
        m=$(start_migration a "$dev" b stop-window target "$dev")
        vpath=$(mig_path_of "$m")
        if ! wait_phase $victim "$vpath" "$phase"; then
                not_ok "$what: the migration reached $phase"
                continue
        fi
        host_restart $victim -
        sleep 0.5
        if [ -z "$(mig_prop a "$vpath" Id)" ]; then
                # Killed before its journal record (docs/safety.md step 2): the restarted source knows nothing of it.
                expect_eq "$what: no Migration after the restart: only a source killed in prepare has no journal" \
                        "source:prepare" "$role:$phase"
                result=failed
        else
                result=$(wait_result a "$vpath")
        fi
        if [ "$winner" = a ]; then
                expect_eq "$what: the source's Migration ends failed" failed "$result"
        else
                expect_eq "$what: the source's Migration ends success" success "$result"
        fi
        loser=b
        [ "$winner" = b ] && loser=a
        wait_device $winner "$dev" RUNNING
        declare -A rec=([a]=$ra [b]=$rb)
        expect_eq "$what: S4: host $winner's device RUNNING (record)" RUNNING "$(checkrec state "${rec[$winner]}")"
        other=$(checkrec state "${rec[$loser]}")
        if [ "$(checkrec count "${rec[$loser]}" arc)" = 0 ] && [ "$loser" = b ]; then
                # Killed before the target was prepared: it stayed the idle device it was, untouched.
                ok "$what: S4: host b's idle target was never touched (record: no arc, $other)"
        else
                expect_eq "$what: S4: host $loser's device is back in STOP (record)" STOP "$other"
        fi
        expect_ok "$what: S1 from the records" checkrec s1 "$ra" "$rb"
        if [ "$winner" = a ]; then
                expect_ok "$what: S2: the destination never ran" checkrec s2 "$rb"
        fi
        mi=$(record_mark $winner "$dev")
        out=$(raise_irq $winner "$dev" msix 1) || diag "RaiseInterrupt: $out"
        expect_eq "$what: S3/S4: interrupts of the running device are delivered" 1 \
                "$(checkrec count "$(record_file $winner "$dev")@$mi" irq_delivered vector=1)"
        for _ in $(seq 50); do
                [ "$(hprop a "$(dev_path "$dev")" Device Busy)" = False ] && break
                sleep 0.1
        done
        expect_eq "$what: the source device is not busy any more" False "$(hprop a "$(dev_path "$dev")" Device Busy)"
done

finish
