#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# migctl -H: a real sshd whose sessions see the test's bus as their system bus, reached as hostnamectl -H does.
. "$MIGD_SOURCE_ROOT/tests/integration/lib.sh"

if ! [ -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null || ! command -v systemd-stdio-bridge >/dev/null; then
        echo "1..0 # SKIP sshd, ssh or systemd-stdio-bridge missing"
        exit 0
fi

start_bus
write_config
start_migd

ssh_port=$((PEER_PORT + 1))
ssh-keygen -q -t ed25519 -N '' -f "$T/id"
ssh-keygen -q -t ed25519 -N '' -f "$T/host"
cat >"$T/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $ssh_port
HostKey $T/host
AuthorizedKeysFile $T/id.pub
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
PidFile $T/sshd.pid
# The remote end of -H runs systemd-stdio-bridge, which always dials the real system bus socket; on this test
# host "the system bus" is the test's bus.
ForceCommand systemd-stdio-bridge --bus-path=$ADDR
EOF
cat >"$T/ssh_config" <<EOF
Host migd-remote
        HostName 127.0.0.1
        Port $ssh_port
        User $(id -un)
        IdentityFile $T/id
        IdentitiesOnly yes
        BatchMode yes
        StrictHostKeyChecking no
        UserKnownHostsFile /dev/null
        LogLevel ERROR
EOF
# sd-bus runs "ssh" from PATH: this one reads the test's client configuration.
mkdir -p "$T/bin" /run/sshd 2>/dev/null
printf '#!/bin/sh\nexec /usr/bin/ssh -F %s "$@"\n' "$T/ssh_config" >"$T/bin/ssh"
chmod +x "$T/bin/ssh"

/usr/sbin/sshd -D -e -f "$T/sshd_config" 2>"$T/sshd.log" &
EXTRA_PIDS="$EXTRA_PIDS $!"
for _ in $(seq 100); do
        grep -q "Server listening" "$T/sshd.log" 2>/dev/null && break
        sleep 0.05
done

remote() {
        PATH="$T/bin:$PATH" "$MIGCTL" -H migd-remote "$@"
}

check "sshd listens" grep -q "Server listening" "$T/sshd.log"
expect_eq "migctl -H devices equals the local answer" "$("$MIGCTL" --bus "$ADDR" devices)" "$(remote devices 2>&1)"
expect_eq "migctl -H show sim1" "$("$MIGCTL" --bus "$ADDR" show sim1)" "$(remote show sim1 2>&1)"
expect_eq "migctl -H --json policies" "$("$MIGCTL" --bus "$ADDR" --json policies)" "$(remote --json policies 2>&1)"

out=$(PATH="$T/bin:$PATH" "$MIGCTL" -H nobody@127.0.0.1:1 devices 2>&1)
rc=$?
expect_eq "an unreachable -H host: exit 7" 7 "$rc"
expect_contains "and a sentence naming the host" "127.0.0.1:1" "$out"

finish
