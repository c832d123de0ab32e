#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A device whose stream carries its interrupt state: qemu-compatible loses interrupts, stop-window keeps them.

. "$MIGD_SOURCE_ROOT/tests/lib/hosts.sh"

hosts_init a b
section() {
        printf '[SimDevice %s]\nMigrationFlags=stop-copy,p2p\nStateSize=64K\nMSIXVectors=4\nQuirks=irq-in-stream\n%s\n' "$1" "$2"
}
{ section qc GuestInterrupts=msix; section sw GuestInterrupts=msix; } | host_config a
{ section qc ""; section sw ""; } | host_config b
host_start a
host_start b

for c in "qc qemu-compatible" "sw stop-window"; do
        read -r dev policy <<<"$c"
        mb=$(record_mark b "$dev")
        m=$(start_migration a "$dev" b "$policy" target "$dev")
        expect_eq "$policy: Result" success "$(wait_result a "$m")"
        rec=$(record_file b "$dev")
        mi=$(record_mark b "$dev")
        for v in 0 1 2 3; do
                raise_irq b "$dev" msix "$v" >/dev/null
        done
        if [ "$policy" = qemu-compatible ]; then
                expect_eq "$policy: the load overwrote the triggers set while RESUMING" 1 \
                        "$(checkrec count "$rec@$mb" irqs_overwritten_by_stream)"
                for v in 0 1 2 3; do
                        expect_eq "$policy: msix $v raised on the destination is lost (overwritten_by_stream)" "1 0" \
                                "$(checkrec count "$rec@$mi" irq_lost vector="$v" reason=overwritten_by_stream) $(checkrec \
                                        count "$rec@$mi" irq_delivered vector="$v")"
                done
        else
                expect_eq "$policy: the load lost no trigger (all set after RESUMING)" 1 \
                        "$(checkrec count "$rec@$mb" irqs_overwritten_by_stream lost=[])"
                for v in 0 1 2 3; do
                        expect_eq "$policy: msix $v raised on the destination is delivered exactly once" "1 0" \
                                "$(checkrec count "$rec@$mi" irq_delivered vector="$v" deferred=false) $(checkrec \
                                        count "$rec@$mi" irq_lost vector="$v")"
                done
        fi
        expect_eq "$policy: four raises recorded" 4 "$(checkrec count "$rec@$mi" irq_raised)"
done

finish
