#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# migctl devices/show/policies/reload against a real migd: exact output and exit codes.

. "$(dirname "$0")/lib.sh"

start_bus
write_config
start_migd

migctl() {
        "$MIGCTL" --bus "$ADDR" "$@"
}

out=$(migctl devices 2>&1)
expect_eq "migctl devices: exit 0" 0 "$?"
expect_eq "migctl devices: the table" \
"ID   BACKEND DRIVER   STATE   BITS POLICY      BUSY
sim0 sim     migd-sim RUNNING 001  stop-window no
sim1 sim     migd-sim RUNNING 001  site-sim1   no
sim2 sim     migd-sim RUNNING 001  stop-window no" "$out"

out=$(migctl devices --json 2>&1)
expect_eq "migctl devices --json prints the daemon's JSON" "$(manager_json ListDevices)" "('$out',)"

out=$(migctl show sim2 2>&1)
expect_eq "migctl show sim2: exit 0" 0 "$?"
expect_eq "migctl show sim2: the key: value block" \
"             ID: sim2
    Object Path: /org/vfiomig/Migd1/device/sim2
        Backend: sim
         Driver: migd-sim
      Vendor ID: 0x1b36
      Device ID: 0x0103
      Mdev Type: mtty-2
Migration Flags: stop-copy
 Migration uAPI: 1
          State: RUNNING
        v1 Bits: 001
         Policy: stop-window
           Busy: no" "$out"
expect_contains "migctl show --json" '"id":"sim0"' "$(migctl show sim0 --json 2>&1)"

out=$(migctl show nope 2>&1)
expect_eq "migctl show nope: exit 6 (not found)" 6 "$?"
expect_eq "migctl show nope: a sentence" \
        'migctl: cannot show device nope: No device "nope" on '"$(hostname)"' (known: sim0, sim1, sim2).' "$out"
out=$(migctl show 2>&1)
expect_eq "migctl show without DEVICE: exit 2 (usage)" 2 "$?"

out=$(migctl policies 2>&1)
expect_eq "migctl policies: exit 0" 0 "$?"
expect_eq "migctl policies: header and the site policy first" \
"NAME            PRIORITY IRQ-RESTORE     POSTCOPY SOURCE
site-sim1       10       during-resuming no       $T/policy.d/10-site.json" "$(echo "$out" | head -n2)"
expect_eq "migctl policies: built-ins and the site policy" 5 "$(echo "$out" | tail -n +2 | wc -l)"

out=$(migctl reload 2>&1)
expect_eq "migctl reload: exit 0, silent" "0:" "$?:$out"
echo '{ "name": 7 }' >"$T/policy.d/30-bad.json"
out=$(migctl reload 2>&1)
expect_eq "migctl reload with a broken policy: exit 3" 3 "$?"
expect_contains "migctl reload with a broken policy: names the file" \
        "migctl: cannot reload migd: Policies not reloaded, keeping the running configuration and 5 policies: $T/policy.d/30-bad.json: \$.name:" \
        "$out"
rm "$T/policy.d/30-bad.json"

if is_root; then
        out=$(as_nobody "$MIGCTL" --bus "$ADDR" reload 2>&1)
        expect_eq "migctl reload as an unprivileged user: exit 5" 5 "$?"
        expect_eq "migctl reload as an unprivileged user: a sentence" \
                "migctl: cannot reload migd: Reloading migd requires root or membership in group migd." "$out"
else
        skip "migctl reload as an unprivileged user: exit 5" "needs root to run a client as another user"
        skip "migctl reload as an unprivileged user: a sentence" "needs root to run a client as another user"
fi

stop_migd TERM
expect_eq "migd stops with exit 0" 0 "$MIGD_RC"
out=$(migctl devices 2>&1)
expect_eq "migctl devices without migd: exit 7" 7 "$?"
expect_eq "migctl devices without migd: says so" \
        "migctl: cannot list devices: migd is not running on the bus at $ADDR (is migd.service started?)" "$out"

finish
