#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# migd's command line, configuration errors, SIGHUP and SIGTERM.

. "$(dirname "$0")/lib.sh"

start_bus
write_config

out=$("$MIGD" --version 2>&1)
expect_eq "--version: exit 0" 0 "$?"
expect_contains "--version prints the version" "migd 0." "$out"
"$MIGD" --frobnicate >/dev/null 2>&1
expect_eq "unknown option: exit 2" 2 "$?"
"$MIGD" extra >/dev/null 2>&1
expect_eq "positional argument: exit 2" 2 "$?"
"$MIGD" --bus "$ADDR" --user >/dev/null 2>&1
expect_eq "--bus with --user: exit 2" 2 "$?"

printf '[Daemon]\nBackends=sim\nFrobnicate=yes\n' >"$T/bad.conf"
out=$("$MIGD" --config "$T/bad.conf" --bus "$ADDR" --state-dir "$T/state" 2>&1)
expect_eq "unknown key: exit 1" 1 "$?"
expect_contains "unknown key: FILE:LINE: [Section] Key: what (allowed: …)" \
        "$T/bad.conf:3: [Daemon] Frobnicate: unknown key (allowed: PolicyDirectory, StateDirectory, Backends, AdminGroup)" \
        "$out"
printf '[SimDevice sim0]\nUAPI=3\n' >"$T/bad.conf"
out=$("$MIGD" --config "$T/bad.conf" --bus "$ADDR" --state-dir "$T/state" 2>&1)
expect_contains "bad value names the section, key and the allowed values" \
        "$T/bad.conf:2: [SimDevice sim0] UAPI: \"3\" is not a migration uAPI version (allowed: 1, 2)" "$out"
printf '[Frob]\n' >"$T/bad.conf"
out=$("$MIGD" --config "$T/bad.conf" --bus "$ADDR" --state-dir "$T/state" 2>&1)
expect_contains "unknown section" "$T/bad.conf:1: [Frob]: unknown section (allowed: Daemon, Peer, Libvirt, SimDevice NAME, VfioDevice NAME, LibvirtDevice NAME)" "$out"
printf '[SimDevice sim0]\nQuirks=irq-in-stream,teleport\n' >"$T/bad.conf"
out=$("$MIGD" --config "$T/bad.conf" --bus "$ADDR" --state-dir "$T/state" 2>&1)
expect_contains "bad quirk names the word" "$T/bad.conf:2: [SimDevice sim0] Quirks: bad quirk \"teleport\"" "$out"
"$MIGD" --config "$T/does-not-exist.conf" --bus "$ADDR" --state-dir "$T/state" >/dev/null 2>&1
expect_eq "a missing --config file: exit 1" 1 "$?"

start_migd
count() {
        manager_json ListDevices | grep -o '"id":' | wc -l
}
expect_eq "three devices at start" 3 "$(count)"

printf '\n[SimDevice sim3]\nStateSize=1M\n' >>"$T/migd.conf"
kill -HUP "$MIGD_PID"
for _ in $(seq 100); do
        [ "$(count)" = 4 ] && break
        sleep 0.05
done
expect_eq "SIGHUP adds the new [SimDevice]" 4 "$(count)"
echo "Bogus=1" >>"$T/migd.conf"
kill -HUP "$MIGD_PID"
for _ in $(seq 100); do
        grep -q "Reload failed" "$T/migd.log" && break
        sleep 0.05
done
expect_contains "SIGHUP with a broken config is logged with FILE:LINE" \
        "Reload failed, keeping the running configuration and 5 policies: $T/migd.conf:" "$(cat "$T/migd.log")"
expect_eq "and migd keeps running with what it had" 4 "$(count)"
expect_contains "Reload with a broken config: InvalidConfig" \
        "Error org.vfiomig.Migd1.Error.InvalidConfig: Configuration not reloaded" "$(manager_call Reload)"

sed -i '/^Bogus=1$/d' "$T/migd.conf"
"$MIGD" --config "$T/migd.conf" --bus "$ADDR" --state-dir "$T/state2" >"$T/second.log" 2>&1
expect_eq "a second migd on the same bus exits 1" 1 "$?"
expect_contains "and says the name is taken" "org.vfiomig.Migd1 is owned by another process" "$(cat "$T/second.log")"

stop_migd INT
expect_eq "SIGINT: exit 0" 0 "$MIGD_RC"

finish
