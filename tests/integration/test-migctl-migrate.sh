#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# migctl migrate/status/watch/cancel/resolve/timeline between two real migds (two private buses, loopback).

. "$(dirname "$0")/lib.sh"

PTY="python3 $(dirname "$0")/pty-drive.py"
PORT_A=$PEER_PORT
PORT_B=$((PEER_PORT + 1))

# start_host NAME PORT [ENV...]: a bus and a migd for one host; sets ADDR_<NAME> and remembers the pids.
start_host() {
        local name=$1 port=$2
        shift 2
        mkdir -p "$T/$name"
        cat >"$T/$name/migd.conf" <<EOC
[Daemon]
PolicyDirectory=/nonexistent
Backends=sim

[Peer]
Listen=127.0.0.1:$port
Insecure=yes
Name=$name

[SimDevice gpu0]
MigrationFlags=stop-copy,p2p,pre-copy
StateSize=$STATE_SIZE
MSIXVectors=4
$([ "$name" = hosta ] && echo GuestInterrupts=msix)
EOC
        # start_bus reads the address from this file: the last host's must not answer for the new bus.
        rm -f "$T/bus.addr"
        start_bus
        EXTRA_PIDS="$EXTRA_PIDS $BUS_PID"
        BUS_PID=
        if [ -n "${SOCKET_ACTIVATED:-}" ]; then
                # As migd.socket does: the port is listened on now, migd starts with the first connection.
                env "$@" systemd-socket-activate -l "127.0.0.1:$port" -- "$MIGD" --config "$T/$name/migd.conf" \
                        --bus "$ADDR" --state-dir "$T/$name/state" >"$T/$name/migd.log" 2>&1 &
                EXTRA_PIDS="$EXTRA_PIDS $!"
                eval "ADDR_$name=\$ADDR"
                return 0
        fi
        env "$@" "$MIGD" --config "$T/$name/migd.conf" --bus "$ADDR" --state-dir "$T/$name/state" \
                >"$T/$name/migd.log" 2>&1 &
        EXTRA_PIDS="$EXTRA_PIDS $!"
        eval "ADDR_$name=\$ADDR"
        for _ in $(seq 200); do
                name_owned && return 0
                sleep 0.05
        done
        echo "Bail out! migd on $name did not start: $(cat "$T/$name/migd.log")"
        exit 1
}

stop_hosts() {
        for pid in $EXTRA_PIDS; do
                kill "$pid" 2>/dev/null
        done
        for pid in $EXTRA_PIDS; do
                wait "$pid" 2>/dev/null
        done
        EXTRA_PIDS=
}

# Fresh daemons for each scenario: a migrated device stays on the destination. Fresh ports too, so that no
# socket of the last pair (TIME_WAIT) stands in the way of the new listener.
n_restarts=0
restart_hosts() {
        stop_hosts
        rm -rf "$T/hosta" "$T/hostb"
        PORT_A=$((PEER_PORT + 2 * n_restarts))
        PORT_B=$((PORT_A + 1))
        DEST=127.0.0.1:$PORT_B
        n_restarts=$((n_restarts + 1))
        start_host hosta "$PORT_A" "$@"
        start_host hostb "$PORT_B"
        for _ in $(seq 100); do
                ss -ltnH "sport = :$PORT_B" 2>/dev/null | grep -q . && return 0
                sleep 0.05
        done
}

a() {
        "$MIGCTL" --bus "$ADDR_hosta" "$@"
}

device_state_a() {
        a show gpu0 --json | sed -n 's/.*"state":"\([A-Z_]*\)".*/\1/p'
}

wait_result() {
        for _ in $(seq 200); do
                a status --json | grep -q "\"result\":\"$1\"" && return 0
                sleep 0.05
        done
        return 1
}

STATE_SIZE=64M
restart_hosts

# --- usage errors ---
a migrate >/dev/null 2>&1
expect_eq "migrate without DEVICE: exit 2" 2 "$?"
out=$(a migrate gpu0 2>&1)
expect_eq "migrate without --to: exit 2" 2 "$?"
expect_eq "migrate without --to: a sentence" "migctl: migrate needs --to HOST[:PORT] (see migctl migrate --help)" "$out"
a migrate gpu0 --to "$DEST" --precopy sometimes >/dev/null 2>&1
expect_eq "migrate --precopy sometimes: exit 2" 2 "$?"
a migrate gpu0 --to "$DEST" --frobnicate >/dev/null 2>&1
expect_eq "migrate --frobnicate: exit 2" 2 "$?"
a resolve >/dev/null 2>&1
expect_eq "resolve without MIGRATION: exit 2" 2 "$?"
for verb in migrate status watch cancel resolve timeline; do
        out=$(a "$verb" --help 2>&1)
        expect_contains "$verb --help: exit 0 and a usage line" "0:Usage: migctl $verb" "$?:$out"
done
out=$(a status 2>&1)
expect_eq "status with no migrations" "0:No migrations." "$?:$out"
out=$(a watch deadbeef 2>&1)
expect_eq "watch an unknown migration: exit 6" 6 "$?"
expect_eq "watch an unknown migration: a sentence" 'migctl: no migration "deadbeef" on this host (there are none).' "$out"
out=$(a migrate nope --to "$DEST" 2>&1)
expect_eq "migrate an unknown device: exit 6" 6 "$?"
expect_contains "migrate an unknown device: the daemon's sentence" "migctl: cannot migrate nope to $DEST: No device" "$out"
out=$(a migrate gpu0 --to "$DEST" --policy nope 2>&1)
expect_eq "migrate with an unknown policy: exit 6" 6 "$?"

# --- not on a terminal: plain progress lines, the result line, exit 0 ---
out=$(a migrate gpu0 --to "$DEST" 2>&1)
expect_eq "migrate (no terminal): exit 0" 0 "$?"
expect_contains "migrate (no terminal): a line for the precopy phase" $'\nprecopy: ' "$out"
case "$out" in *$'\r'*) not_ok "migrate (no terminal): no carriage returns" ;; *) ok "migrate (no terminal): no carriage returns" ;; esac
last=$(echo "$out" | tail -n1)
check "migrate (no terminal): the result line" \
        grep -Eq "^Migrated gpu0 to $DEST in [0-9.]+ (s|ms), downtime [0-9.]+ (µs|ms|s) \(policy stop-window\)$" <<<"$last"
id=$(a status --json | sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p' | head -n1)
short=${id:0:8}

# --- status ---
out=$(a status 2>&1)
expect_eq "status: the table" \
"ID       ROLE   DEVICE PEER            POLICY      PHASE/RESULT PROGRESS
$short source gpu0   $DEST stop-window success      100% of 64.4 MiB" "$out"
out=$(a status "${id:0:5}" 2>&1)
expect_eq "status PREFIX: exit 0" 0 "$?"
expect_contains "status PREFIX: the block" "           ID: $id
  Object Path: /org/vfiomig/Migd1/migration/" "$out"
expect_contains "status PREFIX: the result" "       Result: success" "$out"
path=$(echo "$out" | sed -n 's/^  Object Path: //p')
expect_contains "status OBJECT-PATH" "ID: $id" "$(a status "$path" 2>&1)"
expect_contains "status ID --json" "{\"id\":\"$id\",\"object_path\":\"$path\",\"role\":\"source\"" "$(a status "$id" --json)"
expect_eq "status --json is the daemon's list" "$(manager_json ListMigrations 2>/dev/null || true)" \
        "$(manager_json ListMigrations 2>/dev/null || true)"

# --- timeline ---
out=$(a timeline "$short" 2>&1)
expect_eq "timeline: exit 0" 0 "$?"
expect_contains "timeline: the title" "Migration $id: gpu0 to $DEST, policy stop-window, success" "$out"
expect_contains "timeline: both lanes" "hosta · source                             hostb · destination" "$out"
expect_contains "timeline: SET_IRQS on the destination" "◆ SET_IRQS msix ×4 in STOP" "$out"
expect_contains "timeline: an arc with v1 bits" "● PRE_COPY_P2P → STOP_COPY  010" "$out"
expect_contains "timeline: the downtime label" "╰ │ downtime " "$out"
check "timeline: fits in 100 columns" python3 -c '
import sys
sys.exit(any(len(l) > 100 for l in sys.stdin.read().splitlines()))' <<<"$out"
out=$(a timeline "$short" --json 2>&1)
check "timeline --json: the events" python3 -c '
import json, sys
ev = json.load(sys.stdin)
roles = {e["role"] for e in ev}
sys.exit(not (roles == {"source", "destination"} and any(e["event"] == "result" for e in ev)))' <<<"$out"

# --- cancel and resolve after the end ---
out=$(a cancel "$short" 2>&1)
expect_eq "cancel after the end: exit 1" 1 "$?"
expect_eq "cancel after the end: a sentence" \
        "migctl: cannot cancel migration $short: Migration $id has already ended (success)." "$out"
out=$(a resolve "$short" --commit 2>&1)
expect_eq "resolve a migration that is not in doubt: exit 1" 1 "$?"
expect_contains "resolve a migration that is not in doubt: a sentence" "migctl: cannot resolve migration $short: " "$out"
a resolve "$short" --commit --abort >/dev/null 2>&1
expect_eq "resolve --commit --abort: exit 2" 2 "$?"

# --- a peer that does not answer: exit 4 ---
restart_hosts
out=$(a migrate gpu0 --to 127.0.0.1:1 2>&1)
expect_eq "migrate to a closed port: exit 4" 4 "$?"
expect_contains "migrate to a closed port: the failure sentence" "migctl: Migration of gpu0 to 127.0.0.1:1 failed: cannot reach 127.0.0.1:1" "$out"
expect_eq "migrate to a closed port: the Migration's ErrorName" '"org.vfiomig.Migd1.Error.PeerUnreachable"' \
        "$(a status --json | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)[-1]["error_name"]))')"

# --- the destination refuses: its reason reaches the exit code through ErrorName ---
out=$(a migrate gpu0 --to "$DEST" --target nosuch 2>&1)
expect_eq "migrate to a target the destination does not have: exit 6" 6 "$?"
expect_contains "... the destination's sentence" "refused: no device nosuch on" "$out"
expect_eq "... ErrorName NoSuchDevice; the source runs on" "org.vfiomig.Migd1.Error.NoSuchDevice RUNNING" \
        "$(a status --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[-1]["error_name"])') $(device_state_a)"

# --- --no-wait, then watch ---
STATE_SIZE=1G
restart_hosts
out=$(a migrate gpu0 --to "$DEST" --no-wait --json 2>&1)
expect_eq "migrate --no-wait --json: exit 0" 0 "$?"
check "migrate --no-wait --json: {migration, object_path}" \
        grep -Eq '^\{"migration":"[0-9a-f]+","object_path":"/org/vfiomig/Migd1/migration/[_0-9a-f]+"\}$' <<<"$out"
id=$(echo "$out" | sed -n 's/.*"migration":"\([0-9a-f]*\)".*/\1/p')
out=$(a watch "${id:0:8}" 2>&1)
expect_eq "watch: exit 0 when the migration succeeds" 0 "$?"
expect_contains "watch: the result line" "Migrated gpu0 to $DEST in " "$out"

# --- on a terminal: the bar is redrawn in place ---
restart_hosts
out=$($PTY -- "$MIGCTL" --bus "$ADDR_hosta" migrate gpu0 --to "$DEST")
expect_eq "migrate on a terminal: exit 0" 0 "$?"
redraws=$(grep -o $'\r\e\[K' <<<"$out" | wc -l)
check "migrate on a terminal: the bar is redrawn in place ($redraws times)" test "$redraws" -ge 3
expect_contains "migrate on a terminal: the bar" "█" "$out"
expect_contains "migrate on a terminal: the bar shows bytes/total" " GiB/1.0 GiB" "$out"
check "migrate on a terminal: the final line" \
        grep -Eq "Migrated gpu0 to $DEST in [0-9.]+ (s|ms), downtime .* \(policy stop-window\)" <<<"$out"
out=$(NO_COLOR=1 $PTY -- "$MIGCTL" --bus "$ADDR_hosta" status)
case "$out" in *$'\e[3'*|*$'\e[1m'*) not_ok "NO_COLOR: no colour on a terminal" ;; *) ok "NO_COLOR: no colour on a terminal" ;; esac

# --- Ctrl-C, then y: cancelled, and the source device runs again ---
restart_hosts MIGD_TEST_PAUSE="source:load=3000"
out=$($PTY --expect 'precopy|stop_copy|load' --send '\x03' --expect 'Cancel the migration\? \[y/N\] ' --send 'y\n' \
        -- "$MIGCTL" --bus "$ADDR_hosta" migrate gpu0 --to "$DEST")
rc=$?
expect_contains "Ctrl-C asks" "Cancel the migration? [y/N] " "$out"
expect_eq "Ctrl-C, y: exit 1 (cancelled)" 1 "$rc"
expect_contains "Ctrl-C, y: says so" "Cancelled the migration of gpu0 to $DEST; the device runs on the source again." "$out"
expect_eq "Ctrl-C, y: gpu0 is RUNNING on host A" RUNNING "$(device_state_a)"
expect_contains "Ctrl-C, y: the result is cancelled" '"result":"cancelled"' "$(a status --json)"

# --- Ctrl-C twice: detached, and the migration still succeeds ---
restart_hosts MIGD_TEST_PAUSE="source:load=3000"
out=$($PTY --expect 'precopy|stop_copy|load' --send '\x03' --expect 'Cancel the migration\? \[y/N\] ' --send '\x03' \
        -- "$MIGCTL" --bus "$ADDR_hosta" migrate gpu0 --to "$DEST")
rc=$?
expect_eq "Ctrl-C twice: exit 0 (detached)" 0 "$rc"
expect_contains "Ctrl-C twice: how to follow it" "goes on. Follow it with: migctl watch " "$out"
check "Ctrl-C twice: the migration still succeeds" wait_result success
expect_eq "Ctrl-C twice: gpu0 on host A is stopped (it moved)" STOP "$(device_state_a)"

# --- not on a terminal, SIGINT cancels directly ---
restart_hosts MIGD_TEST_PAUSE="source:load=3000"
# A script's background job starts with SIGINT ignored; give migctl the default, as a foreground job has.
python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
        "$MIGCTL" --bus "$ADDR_hosta" migrate gpu0 --to "$DEST" >"$T/plain.out" 2>&1 &
pid=$!
for _ in $(seq 100); do
        grep -q "^precopy" "$T/plain.out" && break
        sleep 0.05
done
kill -INT "$pid"
wait "$pid"
expect_eq "SIGINT without a terminal: exit 1 (cancelled)" 1 "$?"
expect_contains "SIGINT without a terminal: cancels" "Cancelling migration" "$(cat "$T/plain.out")"
expect_eq "SIGINT without a terminal: gpu0 is RUNNING on host A" RUNNING "$(device_state_a)"

# --- cancel verb while running ---
restart_hosts MIGD_TEST_PAUSE="source:load=3000"
id=$(a migrate gpu0 --to "$DEST" --no-wait)
sleep 0.5
out=$(a cancel "$id" 2>&1)
expect_eq "cancel a running migration: exit 0" 0 "$?"
expect_eq "cancel a running migration: gpu0 is RUNNING on host A" RUNNING "$(device_state_a)"

# --- bash completion: verbs, options, and names asked from the daemon with the same --bus ---
complete_words() {
        bash -c '
                complete() { :; }
                . "$1"
                shift
                COMP_LINE="$*"
                read -ra COMP_WORDS <<<"$COMP_LINE"
                [[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
                COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
                _migctl
                echo "${COMPREPLY[*]}"' complete "$MIGD_SOURCE_ROOT/client/completion/migctl.bash" "$@"
}
check "completion: the script parses" bash -n "$MIGD_SOURCE_ROOT/client/completion/migctl.bash"
expect_eq "completion: verbs" "status" "$(complete_words "$MIGCTL" --bus "$ADDR_hosta" sta)"
expect_eq "completion: devices from the daemon" "gpu0" "$(complete_words "$MIGCTL" --bus "$ADDR_hosta" migrate "")"
expect_eq "completion: migrations from the daemon" "$id" "$(complete_words "$MIGCTL" --bus "$ADDR_hosta" watch "")"
expect_eq "completion: policies from the daemon" "stop-window qemu-compatible early-irqs postcopy" \
        "$(complete_words "$MIGCTL" --bus "$ADDR_hosta" migrate gpu0 --policy "")"
expect_eq "completion: resolve's options" "--commit" "$(complete_words "$MIGCTL" resolve x --c)"
expect_eq "completion: --precopy values" "off auto required" "$(complete_words "$MIGCTL" migrate gpu0 --precopy "")"

# --- socket activation, as units/migd.socket does it: the first peer connection starts host B's migd ---
stop_hosts
rm -rf "$T/hosta" "$T/hostb"
PORT_A=$((PEER_PORT + 2 * n_restarts))
PORT_B=$((PORT_A + 1))
n_restarts=$((n_restarts + 1))
start_host hosta "$PORT_A"
SOCKET_ACTIVATED=1 start_host hostb "$PORT_B"
for _ in $(seq 100); do
        ss -ltnH "sport = :$PORT_B" 2>/dev/null | grep -q . && break
        sleep 0.05
done
ADDR=$ADDR_hostb
if name_owned; then
        not_ok "socket activation: no migd on host B before a peer connects"
else
        ok "socket activation: no migd on host B before a peer connects"
fi
out=$(a migrate gpu0 --to "127.0.0.1:$PORT_B" 2>&1)
expect_eq "socket activation: the migration whose connection starts migd succeeds" 0 "$?"
check "socket activation: host B's migd owns its name now" name_owned
expect_contains "socket activation: migd says where its peers come from" \
        "come through the listening socket systemd passed (socket activation)" "$(cat "$T/hostb/migd.log")"

stop_hosts
finish
