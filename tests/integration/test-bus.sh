#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# migd's D-Bus API with real clients: listings, properties, signals, named errors, access, reload, SIGTERM.

. "$(dirname "$0")/lib.sh"

start_bus
write_config
start_migd

devices=$(manager_json ListDevices)
expect_eq "ListDevices lists sim0, sim1, sim2" "sim0 sim1 sim2" \
        "$(echo "$devices" | grep -o '"id":"[^"]*"' | sed 's/"id":"\(.*\)"/\1/' | tr '\n' ' ' | sed 's/ $//')"
expect_contains "ListDevices gives the documented device JSON" \
        '{"id":"sim0","object_path":"/org/vfiomig/Migd1/device/sim0","backend":"sim","driver":"migd-sim","vendor_id":"0x1b36","device_id":"0x0101","mdev_type":null,"migration_flags":["stop-copy","p2p","pre-copy"],"uapi":2,"state":"RUNNING","state_bits":"001","policy":"stop-window","busy":false}' \
        "$devices"
expect_contains "a site policy matching by name wins for sim1" '"policy":"site-sim1"' \
        "$(echo "$devices" | grep -o '{"id":"sim1"[^}]*}')"
expect_eq "sim1's Policy property is the site policy" 's "site-sim1"' "$(device_property sim1 Policy)"
expect_eq "ListMigrations is empty" "('[]',)" "$(manager_json ListMigrations)"

expect_eq "Device.State" 's "RUNNING"' "$(device_property sim0 State)"
expect_eq "Device.StateBits" 's "001"' "$(device_property sim0 StateBits)"
expect_eq "Device.VendorId" 'q 6966' "$(device_property sim0 VendorId)"
expect_eq "Device.MigrationFlags" 'as 3 "stop-copy" "p2p" "pre-copy"' "$(device_property sim0 MigrationFlags)"
expect_eq "Device.MdevType" 's "mtty-2"' "$(device_property sim2 MdevType)"
expect_eq "Device.Busy" 'b false' "$(device_property sim0 Busy)"
expect_eq "Manager.Version" "s \"$("$MIGD" --version | cut -d' ' -f2)\"" \
        "$(busctl --address="$ADDR" get-property org.vfiomig.Migd1 /org/vfiomig/Migd1 org.vfiomig.Migd1.Manager Version)"
expect_eq "Manager.PeerListen" "s \"127.0.0.1:$PEER_PORT\"" \
        "$(busctl --address="$ADDR" get-property org.vfiomig.Migd1 /org/vfiomig/Migd1 org.vfiomig.Migd1.Manager PeerListen)"
expect_eq "Manager.Backends" 'as 1 "sim"' \
        "$(busctl --address="$ADDR" get-property org.vfiomig.Migd1 /org/vfiomig/Migd1 org.vfiomig.Migd1.Manager Backends)"
expect_eq "GetDevice gives the object path" 'o "/org/vfiomig/Migd1/device/sim1"' \
        "$(busctl --address="$ADDR" call org.vfiomig.Migd1 /org/vfiomig/Migd1 org.vfiomig.Migd1.Manager GetDevice s sim1)"

# PropertiesChanged, seen by a separate client, for each arc of the walk RUNNING -> RUNNING_P2P -> STOP.
gdbus monitor --address "$ADDR" --dest org.vfiomig.Migd1 --object-path /org/vfiomig/Migd1/device/sim0 \
        >"$T/monitor" 2>&1 &
EXTRA_PIDS="$EXTRA_PIDS $!"
for _ in $(seq 100); do
        grep -q "is owned by" "$T/monitor" && break
        sleep 0.05
done
reply=$(device_call sim0 Device.SetState string:STOP)
expect_contains "SetState STOP succeeds" "method return" "$reply"
for _ in $(seq 100); do
        grep -q "'State': <'STOP'>" "$T/monitor" && break
        sleep 0.05
done
expect_eq "PropertiesChanged for each arc of the walk" \
        "{'State': <'RUNNING_P2P'>, 'StateBits': <''>}
{'State': <'STOP'>, 'StateBits': <'000'>}" \
        "$(grep -o "{'State'[^}]*}" "$T/monitor")"
expect_eq "State after SetState" 's "STOP"' "$(device_property sim0 State)"

expect_contains "unknown device: NoSuchDevice" \
        'Error org.vfiomig.Migd1.Error.NoSuchDevice: No device "nope"' "$(manager_call GetDevice string:nope)"
expect_contains "unknown policy: NoSuchPolicy" \
        'Error org.vfiomig.Migd1.Error.NoSuchPolicy: No policy named "nope"' "$(manager_call GetPolicy string:nope)"
expect_contains "GetPolicy returns the document" '"name":"site-sim1"' "$(manager_json GetPolicy site-sim1)"
expect_contains "bad state name: InvalidArgs naming the argument" \
        'Error org.freedesktop.DBus.Error.InvalidArgs: Argument state: "BOGUS" is not a state' \
        "$(device_call sim0 Device.SetState string:BOGUS)"
expect_contains "state the device lacks: InvalidState" \
        'Error org.vfiomig.Migd1.Error.InvalidState: Device sim1 has no state PRE_COPY' \
        "$(device_call sim1 Device.SetState string:PRE_COPY)"
expect_contains "v1 state on a v2 device: InvalidState" \
        'Error org.vfiomig.Migd1.Error.InvalidState: Device sim0 speaks migration v2' \
        "$(device_call sim0 Device.SetState string:RESUMING_RUNNING)"
expect_contains "bad interrupt index: InvalidArgs naming the argument" \
        'Error org.freedesktop.DBus.Error.InvalidArgs: Argument index: "nmi" is not an interrupt index' \
        "$(device_call sim0 SimDevice.RaiseInterrupt string:nmi uint32:0)"
expect_contains "vector out of range: InvalidArgs naming the argument" \
        'Error org.freedesktop.DBus.Error.InvalidArgs: Argument vector: device sim0 has 4 msix vectors' \
        "$(device_call sim0 SimDevice.RaiseInterrupt string:msix uint32:9)"
expect_contains "the v1 device takes RESUMING then RESUMING|RUNNING (101)" "method return" \
        "$(device_call sim2 Device.SetState string:RESUMING)$(device_call sim2 Device.SetState string:RESUMING_RUNNING)"
expect_eq "StateBits of RESUMING_RUNNING" 's "101"' "$(device_property sim2 StateBits)"
expect_contains "WriteRegister then ReadRegister" "byte 42" \
        "$(device_call sim0 SimDevice.WriteRegister uint32:0 byte:42 >/dev/null; device_call sim0 SimDevice.ReadRegister uint32:0)"

if is_root; then
        expect_contains "an unprivileged caller gets NotPermitted" \
                'Error org.vfiomig.Migd1.Error.NotPermitted: Changing the state of sim0 requires root or membership in group migd.' \
                "$(as_nobody dbus-send --bus="$ADDR" --print-reply --dest=org.vfiomig.Migd1 \
                        /org/vfiomig/Migd1/device/sim0 org.vfiomig.Migd1.Device.SetState string:RUNNING 2>&1)"
        expect_contains "an unprivileged caller may not Reload" "Error org.vfiomig.Migd1.Error.NotPermitted" \
                "$(as_nobody dbus-send --bus="$ADDR" --print-reply --dest=org.vfiomig.Migd1 /org/vfiomig/Migd1 \
                        org.vfiomig.Migd1.Manager.Reload 2>&1)"
        expect_contains "an unprivileged caller may read" '"id":"sim0"' \
                "$(as_nobody gdbus call --address "$ADDR" --dest org.vfiomig.Migd1 --object-path /org/vfiomig/Migd1 \
                        --method org.vfiomig.Migd1.Manager.ListDevices 2>&1)"
else
        skip "an unprivileged caller gets NotPermitted" "needs root to run a client as another user"
        skip "an unprivileged caller may not Reload" "needs root to run a client as another user"
        skip "an unprivileged caller may read" "needs root to run a client as another user"
fi

before=$(manager_json ListPolicies)
echo '{ "name": "broken", "priority": "high" }' >"$T/policy.d/20-broken.json"
expect_contains "Reload with a broken policy file: InvalidPolicy naming the file" \
        "Error org.vfiomig.Migd1.Error.InvalidPolicy: Policies not reloaded, keeping the running configuration and 5 policies: $T/policy.d/20-broken.json: \$.priority:" \
        "$(manager_call Reload)"
expect_eq "the last good policy set stays" "$before" "$(manager_json ListPolicies)"
rm "$T/policy.d/20-broken.json" "$T/policy.d/10-site.json"
expect_contains "Reload after the fix succeeds" "method return" "$(manager_call Reload)"
expect_eq "without the site policy sim1 falls back to a built-in" 's "stop-window"' "$(device_property sim1 Policy)"

intro=$(busctl --address="$ADDR" introspect org.vfiomig.Migd1 /org/vfiomig/Migd1)
expect_contains "the root object has the Manager interface" "org.vfiomig.Migd1.Manager" "$intro"
intro=$(busctl --address="$ADDR" introspect org.vfiomig.Migd1 /org/vfiomig/Migd1/device/sim0)
expect_contains "device objects have the Device interface" "org.vfiomig.Migd1.Device" "$intro"
expect_contains "sim device objects have the SimDevice interface" "org.vfiomig.Migd1.SimDevice" "$intro"
expect_contains "the object manager lists the devices" "/org/vfiomig/Migd1/device/sim2" \
        "$(busctl --address="$ADDR" call org.vfiomig.Migd1 /org/vfiomig/Migd1 \
                org.freedesktop.DBus.ObjectManager GetManagedObjects)"

stop_migd TERM
expect_eq "SIGTERM: migd exits 0" 0 "$MIGD_RC"
expect_contains "SIGTERM is logged" "Received SIGTERM, stopping." "$(cat "$T/migd.log")"
check "the name is released" bash -c "! busctl --address='$ADDR' status org.vfiomig.Migd1 >/dev/null 2>&1"

finish
