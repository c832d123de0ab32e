#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Checks the shipped systemd and D-Bus files with systemd's own tools (TAP output).
set -uo pipefail

src=${MIGD_SOURCE_ROOT:?}
build=${MIGD_BUILD_ROOT:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=1; echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }

echo "1..7"

# verify needs the ExecStart binary to exist: point it at the one just built.
sed "s|@sbindir@/migd|$build/daemon/migd|" "$src/units/migd.service.in" > "$tmp/migd.service"
if out=$(systemd-analyze verify --man=no "$tmp/migd.service" 2>&1) && [ -z "$out" ]; then
    ok "systemd-analyze verify migd.service is clean"
else
    not_ok "systemd-analyze verify migd.service" "$out"
fi

cp "$src/units/migd.socket" "$tmp/migd.socket"
if out=$(systemd-analyze verify --man=no "$tmp/migd.socket" 2>&1) && [ -z "$out" ]; then
    ok "systemd-analyze verify migd.socket is clean"
else
    not_ok "systemd-analyze verify migd.socket" "$out"
fi

if grep -qx 'Type=notify' "$tmp/migd.service" && grep -qx 'BusName=org.vfiomig.Migd1' "$tmp/migd.service"; then
    ok "migd.service is Type=notify with BusName"
else
    not_ok "migd.service lacks Type=notify or BusName"
fi

out=$(systemd-sysusers --dry-run "$src/units/sysusers-migd.conf" 2>&1)
if getent group migd >/dev/null || grep -q "Creating group 'migd'" <<<"$out"; then
    ok "sysusers.d creates group migd"
else
    not_ok "sysusers.d entry" "$out"
fi

# tmpfiles resolves the group inside --root, as on a system where sysusers.d already ran.
mkdir -p "$tmp/root/etc"
printf 'root:x:0:0::/root:/bin/sh\n' > "$tmp/root/etc/passwd"
printf 'root:x:0:\nmigd:x:990:\n' > "$tmp/root/etc/group"
# As an ordinary user tmpfiles cannot chown: then paths and modes are checked, and the group only as root.
out=$(systemd-tmpfiles --root="$tmp/root" --create "$src/units/tmpfiles-migd.conf" 2>&1)
rc=$?
if [ "$(id -u)" -ne 0 ]; then
    rc=0
    want_gid=$(id -g)
else
    want_gid=990
fi
if [ $rc -eq 0 ] && [ "$(stat -c %a "$tmp/root/var/lib/migd")" = 750 ] &&
   [ "$(stat -c %g "$tmp/root/var/lib/migd")" = "$want_gid" ] && [ -d "$tmp/root/etc/migd/policy.d" ]; then
    ok "tmpfiles.d creates /var/lib/migd 0750 (group migd as root) and /etc/migd/policy.d"
else
    not_ok "tmpfiles.d entries" "$out"
fi

act="$src/units/org.vfiomig.Migd1.service"
if grep -qx 'Name=org.vfiomig.Migd1' "$act" && grep -qx 'SystemdService=migd.service' "$act"; then
    ok "D-Bus activation file names the bus name and migd.service"
else
    not_ok "D-Bus activation file"
fi

if out=$(python3 - "$src/units/org.vfiomig.Migd1.conf" 2>&1 <<'PY'
import sys, xml.dom.minidom
doc = xml.dom.minidom.parse(sys.argv[1])
owners = [p.getAttribute("user") for p in doc.getElementsByTagName("policy")
          if any(a.getAttribute("own") == "org.vfiomig.Migd1" for a in p.getElementsByTagName("allow"))]
assert owners == ["root"], owners
PY
); then
    ok "D-Bus policy parses and only root owns the name"
else
    not_ok "D-Bus policy" "$out"
fi
exit $failed
