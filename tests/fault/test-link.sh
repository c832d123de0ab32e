#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Through a proxy (tests/fault/proxy.py, insecure mode): link cut in each phase, truncated/corrupted stream, bad frames.

. "$MIGD_SOURCE_ROOT/tests/lib/hosts.sh"

# MODE (proxy.py) -> device; every case must end with the source device running (failure before the commit point).
cases="cut-after:preflight-ok cut-after:prepared cut-data:1 cut-after:data-end truncate corrupt inject:oversize inject:badjson inject:unknowntype inject:missingfield"

hosts_init a b
n=0
sections() {
        local c i=0
        for c in $cases; do
                i=$((i + 1))
                printf '[SimDevice l%d]\nMigrationFlags=stop-copy,p2p\nStateSize=1M\nMSIXVectors=4\n%s\n' $i "$1"
        done
}
sections GuestInterrupts=msix | host_config a
sections "" | host_config b
host_start a
host_start b

for c in $cases; do
        n=$((n + 1))
        dev=l$n
        what="proxy $c"
        start_proxy "$c"
        ra="$(record_file a "$dev")@$(record_mark a "$dev")"
        rb="$(record_file b "$dev")@$(record_mark b "$dev")"
        m=$(start_migration a "$dev" "$PROXY_ADDR" stop-window target "$dev")
        expect_eq "$what: the source's Migration ends failed" failed "$(wait_result a "$m")"
        diag "Error: $(mig_prop a "$m" Error)" "proxy: $(tr '\n' ';' <"$T/proxy.log")"
        # The destination's half ends too (rollback), when it got that far: it knows the migration from its claim,
        # which comes before the source can pass preflight.
        [ -n "$(mig_prop b "$(mig_path_of "$m")" Id)" ] && wait_result b "$(mig_path_of "$m")" >/dev/null
        wait_device a "$dev" RUNNING
        expect_eq "$what: S3: the source device RUNNING (record)" RUNNING "$(checkrec state "$ra")"
        expect_ok "$what: S2: the destination device never ran (record)" checkrec s2 "$rb"
        expect_ok "$what: S1 from the records" checkrec s1 "$ra" "$rb"
        st=$(checkrec state "$rb")
        if [ "$(checkrec count "$rb" arc)" = 0 ]; then
                ok "$what: the destination's target was never touched"
        else
                expect_eq "$what: the destination's target is back in STOP (record)" STOP "$st"
        fi
        mi=$(record_mark a "$dev")
        out=$(raise_irq a "$dev" msix 0) || diag "RaiseInterrupt: $out"
        expect_eq "$what: S3: the source's interrupts are delivered" 1 \
                "$(checkrec count "$(record_file a "$dev")@$mi" irq_delivered vector=0)"
        case $c in
        truncate | corrupt)
                expect_eq "$what: the destination never applied the data" 0 "$(checkrec count "$rb" load_applied)"
                if [ "$c" = truncate ]; then want="bytes announced"; else want="SHA-256 mismatch"; fi
                expect_contains "$what: the Error names the length or digest" "$want" "$(mig_prop a "$m" Error)"
                ;;
        esac
        stop_proxy
done
# Failed before the commit: a missing record answers a resolve-query as an abort record would.
expect_eq "no journal record left on either host after the failed migrations" "a: b:" \
        "a:$(ls "$T/a/state/journal" | tr '\n' ' ') b:$(ls "$T/b/state/journal" | tr '\n' ' ')"

finish
