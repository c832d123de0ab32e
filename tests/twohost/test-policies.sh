#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Every built-in policy's happy path between two hosts, checked against both sim devices' own records.

. "$MIGD_SOURCE_ROOT/tests/lib/hosts.sh"

hosts_init a b

# NAME POLICY FLAGS UAPI: one device per case, the same name on both hosts.
cases=(
        "sw1 stop-window stop-copy 2"
        "sw3 stop-window stop-copy,p2p,pre-copy 2"
        "qc1 qemu-compatible stop-copy 2"
        "qc3 qemu-compatible stop-copy,p2p,pre-copy 2"
        "ei1 early-irqs stop-copy 2"
        "ei3 early-irqs stop-copy,p2p,pre-copy 2"
        "pc1 postcopy stop-copy 1"
)

sections() {
        local guest=$1 c name policy flags uapi
        for c in "${cases[@]}"; do
                read -r name policy flags uapi <<<"$c"
                printf '[SimDevice %s]\nMigrationFlags=%s\nUAPI=%s\nStateSize=256K\nMSIXVectors=4\n%s\n' \
                        "$name" "$flags" "$uapi" "$guest"
        done
}
sections GuestInterrupts=msix | host_config a
sections "" | host_config b
host_start a
host_start b

# timeline_check JSON POLICY: the source's timeline as docs/dbus-api.md describes it.
timeline_check() {
        "$PYTHON" - "$1" "$2" "$3" <<'PY'
import json, sys
tl, postcopy, downtime = json.loads(sys.argv[1]), sys.argv[2] == "postcopy", int(sys.argv[3])
problems = []
for e in tl:
    for k in ("host", "role", "t_usec", "rt_usec", "event"):
        if k not in e:
            problems.append("event without %s: %s" % (k, e))
hosts = {(e["role"], e.get("host")) for e in tl}
if ("source", "hosta") not in hosts or ("destination", "hostb") not in hosts:
    problems.append("want events of source hosta and destination hostb, got %s" % sorted(hosts))
phases = [e["phase"] for e in tl if e["role"] == "source" and e["event"] == "phase"]
want = ["preflight", "prepare", "commit", "cleanup"] if postcopy else ["preflight", "prepare", "stop_copy", "commit", "cleanup"]
it = iter(phases)
if not all(p in it for p in want) or "rollback" in phases:
    problems.append("source phases %s lack %s in order" % (phases, want))
for role in ("source", "destination"):
    if [e["decision"] for e in tl if e["role"] == role and e["event"] == "commit"] != ["commit"]:
        problems.append("%s: want one commit event" % role)
res = [e for e in tl if e["role"] == "source" and e["event"] == "result"]
if len(res) != 1 or res[0]["result"] != "success" or res[0].get("downtime_usec") != downtime:
    problems.append("source result events %s, want one success with downtime_usec %d" % (res, downtime))
if any(e["event"] == "arc" and not e["ok"] for e in tl):
    problems.append("a failed arc")
print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
}

value=16
for c in "${cases[@]}"; do
        read -r name policy flags uapi <<<"$c"
        what="$policy ($flags, uAPI $uapi)"
        value=$((value + 1))
        uapi_opt=()
        [ "$uapi" = 1 ] && uapi_opt=(--uapi 1)
        "$MIGCTL" --json policy explain "$policy" --flags "$flags" "${uapi_opt[@]}" >"$T/plan-$name.json"

        hcall a "$(dev_path "$name")" SimDevice WriteRegister uy 32 "$value" >/dev/null
        ma=$(record_mark a "$name")
        mb=$(record_mark b "$name")
        m=$(start_migration a "$name" b "$policy" target "$name")
        expect_contains "$what: StartMigration returns a migration" /org/vfiomig/Migd1/migration/ "$m"
        expect_eq "$what: Result" success "$(wait_result a "$m")"
        # The destination lets go before it tells the source: no waiting here.
        expect_eq "$what: once the source reports success, the destination's Migration and device are done" \
                "success False" "$(mig_prop b "$(mig_path_of "$m")" Result) $(hprop b "$(dev_path "$name")" Device Busy)"
        expect_eq "$what: no Error" "" "$(mig_prop a "$m" Error)"
        expect_ok "$what: destination record: arcs and SET_IRQS in the plan's order" \
                checkrec plan "$T/plan-$name.json" destination "$(record_file b "$name")@$mb"
        expect_ok "$what: source record: arcs and teardown in the plan's order" \
                checkrec plan "$T/plan-$name.json" source "$(record_file a "$name")@$ma"
        expect_eq "$what: destination device RUNNING (record)" RUNNING \
                "$(checkrec state "$(record_file b "$name")@$mb")"
        expect_eq "$what: source device STOP (record)" STOP "$(checkrec state "$(record_file a "$name")@$ma")"
        expect_eq "$what: destination device RUNNING (property)" RUNNING "$(dev_state b "$name")"
        expect_eq "$what: register written on the source reads back on the destination" "y $value" \
                "$(hcall b "$(dev_path "$name")" SimDevice ReadRegister u 32)"
        expect_eq "$what: the destination loaded the data once" 1 \
                "$(checkrec count "$(record_file b "$name")@$mb" load_applied)"
        if [ "$policy" != postcopy ]; then
                expect_ok "$what: S1 from the records" \
                        checkrec s1 "$(record_file a "$name")@$ma" "$(record_file b "$name")@$mb"
        fi
        downtime=$(mig_prop a "$m" DowntimeUsec)
        check "$what: DowntimeUsec > 0" [ "${downtime:-0}" -gt 0 ]
        expect_ok "$what: timeline: both hosts, phases in order, commit on both, result with the downtime" \
                timeline_check "$(hstring a "$m" Migration GetTimeline)" "$policy" "${downtime:-0}"
        mi=$(record_mark b "$name")
        raise_irq b "$name" msix 2 >/dev/null
        expect_eq "$what: an interrupt raised on the destination is delivered exactly once" "1 0" \
                "$(checkrec count "$(record_file b "$name")@$mi" irq_delivered vector=2) $(checkrec count \
                        "$(record_file b "$name")@$mi" irq_lost)"
done

# Each side drops its journal record once the other can no longer need it: the source after the commit is
# confirmed, the destination when the source says it forgot (peer message "forget").
for _ in $(seq 50); do
        [ -z "$(ls "$T/b/state/journal")" ] && break
        sleep 0.1
done
expect_eq "no journal record left on either host after the migrations" "a: b:" \
        "a:$(ls "$T/a/state/journal" | tr '\n' ' ') b:$(ls "$T/b/state/journal" | tr '\n' ' ')"

finish
