# SPDX-License-Identifier: LGPL-2.1-or-later
# Two-host harness: per host a private dbus-daemon and migd (in its own network namespace when root), TAP, certificates, teardown.
#
# Source it from a test run by meson (MIGD_BUILD_ROOT, MIGD_SOURCE_ROOT set). Hosts are named by one word
# (a, b, c...). As root, unless MIGD_TEST_NETNS=0, every host is a network namespace joined to the first one
# by a veth pair: host a is 10.77.X.1, host b 10.77.X.2, ... on 10.77.X.0/24, X unique per test run (a lock
# directory /tmp/migd-test-net.X); migd listens on ADDRESS:7480. Otherwise every host is 127.0.0.1 with its
# own free port. Everything (daemons, buses, namespaces, the lock, the temporary directory) goes on exit.

set -u

: "${MIGD_BUILD_ROOT:?run through meson test}"
: "${MIGD_SOURCE_ROOT:?run through meson test}"
MIGD="$MIGD_BUILD_ROOT/daemon/migd"
MIGCTL="$MIGD_BUILD_ROOT/client/migctl"
CHECK_RECORDS="$MIGD_SOURCE_ROOT/tests/lib/check-records.py"
PYTHON=${PYTHON:-python3}

T=$(mktemp -d /tmp/migd-2h.XXXXXX)
chmod 755 "$T"
HOSTS=()
declare -A H_NS=() H_IP=() H_PORT=() H_BUS=() H_BUS_PID=() H_PID=() H_ENV=() H_CERTS=()
EXTRA_PIDS=
DIED=
NET_X=
NET_LOCK=
HOSTS_MODE=loopback

# ---- TAP ----
# shellcheck source=/dev/null
. "$MIGD_SOURCE_ROOT/tests/lib/tap.sh"
. "$MIGD_SOURCE_ROOT/tests/lib/private-bus.sh"

# expect_ok DESCRIPTION COMMAND...: a TAP line from the exit status; the command's output becomes diagnostics on failure.
expect_ok() {
        local what=$1 out
        shift
        if out=$("$@" 2>&1); then
                ok "$what"
        else
                not_ok "$what"
                printf '%s\n' "$out" | sed 's/^/#   /'
        fi
}

finish() {
        local h
        # A daemon that died on its own (a crash) fails the test, whatever else passed.
        for h in "${HOSTS[@]}"; do
                [ -n "${H_PID[$h]:-}" ] || continue
                if host_alive "$h"; then
                        ok "migd of host $h is still running (no crash)"
                else
                        wait "${H_PID[$h]}"
                        not_ok "migd of host $h is still running (no crash): it exited with status $?"
                        tail -n 15 "$T/$h/migd.log" | sed 's/^/#   /'
                fi
        done
        for h in $DIED; do
                not_ok "migd of host ${h%%:*} died on its own with status ${h#*:} before a test stopped it"
        done
        echo "1..$tap_n"
        exit $tap_failed
}

bail() {
        echo "Bail out! $*"
        exit 1
}

# ---- set-up and teardown ----

hosts_cleanup() {
        local h pid
        for pid in $EXTRA_PIDS; do kill "$pid" 2>/dev/null; done
        for h in "${HOSTS[@]}"; do
                [ -n "${H_PID[$h]:-}" ] && kill -9 "${H_PID[$h]}" 2>/dev/null
                [ -n "${H_BUS_PID[$h]:-}" ] && kill "${H_BUS_PID[$h]}" 2>/dev/null
        done
        for pid in $EXTRA_PIDS; do wait "$pid" 2>/dev/null; done
        for h in "${HOSTS[@]}"; do
                [ -n "${H_PID[$h]:-}" ] && wait "${H_PID[$h]}" 2>/dev/null
                [ -n "${H_BUS_PID[$h]:-}" ] && wait "${H_BUS_PID[$h]}" 2>/dev/null
                [ -n "${H_NS[$h]:-}" ] && ip netns del "${H_NS[$h]}" 2>/dev/null
        done
        [ -n "$NET_LOCK" ] && rm -rf "$NET_LOCK"
        if [ -n "${MIGD_TEST_KEEP:-}" ]; then
                echo "# kept $T" >&2
        else
                rm -rf "$T"
        fi
}
trap hosts_cleanup EXIT
trap 'exit 130' INT TERM

is_root() {
        [ "$(id -u)" = 0 ]
}

free_port() {
        "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Takes a /24 nobody else uses: a lock directory per X, reclaimed when the test run that made it is gone.
net_lock() {
        local x owner
        for x in $(shuf -i 1-250); do
                if mkdir "/tmp/migd-test-net.$x" 2>/dev/null; then
                        echo $$ >"/tmp/migd-test-net.$x/pid"
                        NET_X=$x
                        NET_LOCK="/tmp/migd-test-net.$x"
                        return 0
                fi
                owner=$(cat "/tmp/migd-test-net.$x/pid" 2>/dev/null)
                if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then
                        ip netns del "migd$x-a" 2>/dev/null
                        ip netns del "migd$x-b" 2>/dev/null
                        ip netns del "migd$x-c" 2>/dev/null
                        rm -rf "/tmp/migd-test-net.$x"
                fi
        done
        return 1
}

# hosts_init HOST...: creates the hosts (no daemons yet). Host names are single letters a..i.
hosts_init() {
        local h i=0 first=
        if [ "${MIGD_TEST_NETNS:-1}" != 0 ] && is_root && command -v ip >/dev/null && net_lock; then
                HOSTS_MODE=netns
        fi
        for h in "$@"; do
                i=$((i + 1))
                HOSTS+=("$h")
                mkdir -p "$T/$h/state" "$T/$h/certs"
                if [ "$HOSTS_MODE" = netns ]; then
                        H_NS[$h]="migd$NET_X-$h"
                        H_IP[$h]="10.77.$NET_X.$i"
                        H_PORT[$h]=7480
                        ip netns add "${H_NS[$h]}" || bail "ip netns add ${H_NS[$h]} failed"
                        ip -n "${H_NS[$h]}" link set lo up
                        if [ -z "$first" ]; then
                                first=$h
                        else
                                # One veth pair from the first host to every other one, all on the /24.
                                ip link add "v$h" netns "${H_NS[$first]}" type veth peer name "v$first" \
                                        netns "${H_NS[$h]}" || bail "ip link add veth failed"
                                ip -n "${H_NS[$first]}" link set "v$h" up
                                ip -n "${H_NS[$h]}" addr add "${H_IP[$h]}/32" dev "v$first"
                                ip -n "${H_NS[$h]}" link set "v$first" up
                                ip -n "${H_NS[$h]}" route add "10.77.$NET_X.0/24" dev "v$first"
                                ip -n "${H_NS[$first]}" route add "${H_IP[$h]}/32" dev "v$h"
                        fi
                else
                        H_IP[$h]=127.0.0.1
                        H_PORT[$h]=$(free_port)
                fi
        done
        if [ "$HOSTS_MODE" = netns ]; then
                ip -n "${H_NS[$first]}" addr add "${H_IP[$first]}/32" dev lo
        fi
}

# in_host HOST COMMAND...: runs a command in the host's network (its namespace, or here).
in_host() {
        local h=$1
        shift
        if [ -n "${H_NS[$h]:-}" ]; then
                ip netns exec "${H_NS[$h]}" "$@"
        else
                "$@"
        fi
}

host_addr() {
        echo "${H_IP[$1]}:${H_PORT[$1]}"
}

host_name() {
        echo "host$1"
}

bus() {
        echo "unix:path=$T/$1/bus"
}

start_bus() {
        local h=$1
        private_bus_config "unix:path=$T/$h/bus" >"$T/$h/bus.conf"
        dbus-daemon --config-file="$T/$h/bus.conf" --nofork --print-address=3 3>"$T/$h/bus.addr" \
                2>"$T/$h/bus.log" &
        H_BUS_PID[$h]=$!
        for _ in $(seq 200); do
                [ -s "$T/$h/bus.addr" ] && [ -S "$T/$h/bus" ] && return 0
                sleep 0.05
        done
        bail "dbus-daemon of host $h did not start: $(cat "$T/$h/bus.log")"
}

# host_config HOST [tls|insecure] < SIMDEVICE-SECTIONS: writes the host's migd.conf.
host_config() {
        local h=$1 mode=${2:-insecure}
        {
                echo "[Daemon]"
                echo "PolicyDirectory=/nonexistent"
                echo "Backends=sim"
                echo
                echo "[Peer]"
                echo "Listen=$(host_addr "$h")"
                echo "Name=$(host_name "$h")"
                if [ "$mode" = tls ]; then
                        echo "Insecure=no"
                        echo "CertificateDirectory=$T/$h/certs"
                else
                        echo "Insecure=yes"
                fi
                echo
                cat
        } >"$T/$h/migd.conf"
}

name_owned() {
        busctl --address="$(bus "$1")" call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
                NameHasOwner s org.vfiomig.Migd1 2>/dev/null | grep -q true
}

# host_start HOST [VAR=VALUE...]: starts the host's bus (once) and migd with those environment variables;
# they are kept for host_restart. Waits until migd owns its name (it does so after recovery).
host_start() {
        local h=$1
        shift
        [ -n "${H_BUS_PID[$h]:-}" ] || start_bus "$h"
        H_ENV[$h]="$*"
        host_launch "$h"
}

host_launch() {
        local h=$1
        local ns=()
        # Not through in_host: $! must be migd itself (ip netns exec and env exec it), not a subshell.
        [ -n "${H_NS[$h]:-}" ] && ns=(ip netns exec "${H_NS[$h]}")
        # shellcheck disable=SC2086 # H_ENV is a list of VAR=VALUE words
        "${ns[@]}" env ${H_ENV[$h]} ${MIGD_TEST_WRAP:-} "$MIGD" --config "$T/$h/migd.conf" --bus "$(bus "$h")" \
                --state-dir "$T/$h/state" >>"$T/$h/migd.log" 2>&1 &
        H_PID[$h]=$!
        for _ in $(seq 600); do
                name_owned "$h" && return 0
                kill -0 "${H_PID[$h]}" 2>/dev/null || break
                sleep 0.05
        done
        bail "migd of host $h did not take its name: $(tail -n 20 "$T/$h/migd.log")"
}

# host_kill HOST [SIGNAL]: kill -9 (default) and reap.
host_kill() {
        local h=$1 sig=${2:-9}
        local rc
        [ -n "${H_PID[$h]:-}" ] || return 0
        if ! kill -"$sig" "${H_PID[$h]}" 2>/dev/null; then
                wait "${H_PID[$h]}" 2>/dev/null
                rc=$?
                DIED="$DIED $h:$rc"
                echo "# migd of host $h had already exited with status $rc" \
                        "($([ $rc -gt 128 ] && kill -l $((rc - 128))))"
        else
                wait "${H_PID[$h]}" 2>/dev/null
        fi
        H_PID[$h]=
        # The name goes with the connection; wait so that a restart does not race the old owner.
        for _ in $(seq 100); do
                name_owned "$h" || return 0
                sleep 0.05
        done
}

# host_restart HOST [VAR=VALUE...]: kill -9, then start again with the same state directory (and the same
# environment unless new variables are given; "-" clears them).
host_restart() {
        local h=$1
        shift
        host_kill "$h" 9
        if [ $# -gt 0 ]; then
                if [ "$1" = - ]; then H_ENV[$h]=; else H_ENV[$h]="$*"; fi
        fi
        echo "---- restart ----" >>"$T/$h/migd.log"
        host_launch "$h"
}

# host_alive HOST: migd still runs (a crash is reaped and noted in DIED).
host_alive() {
        [ -n "${H_PID[$1]:-}" ] && kill -0 "${H_PID[$1]}" 2>/dev/null
}

host_log() {
        cat "$T/$1/migd.log"
}

# ---- D-Bus ----

# hcall HOST PATH INTERFACE METHOD [SIGNATURE ARGS...]: busctl call, stdout+stderr.
hcall() {
        local h=$1 path=$2 iface=$3 method=$4
        shift 4
        busctl --address="$(bus "$h")" call org.vfiomig.Migd1 "$path" "org.vfiomig.Migd1.$iface" "$method" "$@" 2>&1
}

# herror HOST PATH INTERFACE.METHOD GVARIANT-ARGS...: the D-Bus error name a call fails with ("" on success),
# through gdbus, which (unlike busctl) prints it.
herror() {
        local h=$1 path=$2 method=$3 out
        shift 3
        out=$(gdbus call --address "$(bus "$h")" --dest org.vfiomig.Migd1 --object-path "$path" \
                --method "org.vfiomig.Migd1.$method" "$@" 2>&1)
        case $out in
        *GDBus.Error:*)
                out=${out#*GDBus.Error:}
                echo "${out%%:*}"
                ;;
        esac
}

# hstring HOST PATH INTERFACE METHOD [SIGNATURE ARGS...]: the one string a method returns, unquoted.
hstring() {
        local h=$1 path=$2 iface=$3 method=$4
        shift 4
        busctl --address="$(bus "$h")" --json=short call org.vfiomig.Migd1 "$path" "org.vfiomig.Migd1.$iface" \
                "$method" "$@" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["data"][0])'
}

# hprop HOST PATH INTERFACE PROPERTY: the property's value (strings unquoted, numbers as digits).
hprop() {
        busctl --address="$(bus "$1")" --json=short get-property org.vfiomig.Migd1 "$2" "org.vfiomig.Migd1.$3" "$4" \
                2>/dev/null | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["data"])' 2>/dev/null
}

# The device's object path, escaped as sd_bus_path_encode() does: letters and digits stay (not a leading
# digit), everything else is _XX.
dev_path() {
        local id=$1 out= c i
        for ((i = 0; i < ${#id}; i++)); do
                c=${id:i:1}
                case $c in
                [A-Za-z]) out+=$c ;;
                [0-9]) if [ $i = 0 ]; then out+=$(printf '_%02x' "'$c"); else out+=$c; fi ;;
                *) out+=$(printf '_%02x' "'$c") ;;
                esac
        done
        echo "/org/vfiomig/Migd1/device/$out"
}

dev_state() {
        hprop "$1" "$(dev_path "$2")" Device State
}

# start_migration HOST DEVICE DEST-HOST POLICY [KEY VALUE...]: prints the migration's object path, or the error.
start_migration() {
        local h=$1 dev=$2 dest=$3 policy=$4 n out
        shift 4
        n=$(($# / 2 + 1))
        local args=(policy s "$policy")
        while [ $# -ge 2 ]; do
                args+=("$1" s "$2")
                shift 2
        done
        case $dest in
        [0-9]*) ;; # an address, e.g. a proxy's
        *) dest=$(host_addr "$dest") ;;
        esac
        out=$(hcall "$h" /org/vfiomig/Migd1 Manager StartMigration 'ssa{sv}' "$dev" "$dest" \
                "$n" "${args[@]}") || { echo "$out"; return 1; }
        out=${out#o \"}
        echo "${out%\"}"
}

mig_prop() {
        hprop "$1" "$2" Migration "$3"
}

# wait_result HOST MIGRATION-PATH: waits (at most 180 s, a hang guard, not a timing check) until Result is set,
# prints it.
wait_result() {
        local r
        case $2 in
        /org/vfiomig/Migd1/migration/*) ;;
        *)
                echo "(no migration: $2)"
                return 1
                ;;
        esac
        for _ in $(seq 1800); do
                r=$(mig_prop "$1" "$2" Result)
                if [ -n "$r" ]; then
                        echo "$r"
                        return 0
                fi
                sleep 0.1
        done
        echo "(still running)"
        return 1
}

# wait_phase HOST MIGRATION-PATH PHASE: waits until the migration is in that phase.
wait_phase() {
        for _ in $(seq 1200); do
                [ "$(mig_prop "$1" "$2" Phase)" = "$3" ] && return 0
                sleep 0.05
        done
        return 1
}

# wait_device HOST DEVICE STATE: waits until the device is in that state (hang guard 120 s).
wait_device() {
        for _ in $(seq 1200); do
                [ "$(dev_state "$1" "$2")" = "$3" ] && return 0
                sleep 0.1
        done
        return 1
}

# The migration path a host knows under ID (the id is the same on both hosts).
mig_path_of() {
        echo "/org/vfiomig/Migd1/migration/${1##*/}"
}

raise_irq() {
        hcall "$1" "$(dev_path "$2")" SimDevice RaiseInterrupt su "$3" "$4"
}

# start_proxy MODE: tests/fault/proxy.py in host a's network, from 127.0.0.1:PORT to host b; sets PROXY_ADDR.
start_proxy() {
        local port ns=()
        port=$(in_host a "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        [ -n "${H_NS[a]:-}" ] && ns=(ip netns exec "${H_NS[a]}")
        # The last proxy's "ready" must not be taken for this one's.
        rm -f "$T/proxy.log"
        "${ns[@]}" "$PYTHON" -u "$MIGD_SOURCE_ROOT/tests/fault/proxy.py" "127.0.0.1:$port" "$(host_addr b)" "$1" \
                >"$T/proxy.log" 2>&1 &
        EXTRA_PIDS="$EXTRA_PIDS $!"
        PROXY_PID=$!
        for _ in $(seq 200); do
                grep -q ready "$T/proxy.log" 2>/dev/null && break
                sleep 0.05
        done
        grep -q ready "$T/proxy.log" 2>/dev/null || diag "proxy $1 not listening after 10 s"
        PROXY_ADDR="127.0.0.1:$port"
}

stop_proxy() {
        kill "$PROXY_PID" 2>/dev/null
        wait "$PROXY_PID" 2>/dev/null
}

# ---- records ----

record_file() {
        echo "$T/$1/state/sim/$2.record.jsonl"
}

state_file() {
        echo "$T/$1/state/sim/$2.state"
}

# record_mark HOST DEVICE: the number of record lines so far, to look at what comes after.
record_mark() {
        local f
        f=$(record_file "$1" "$2")
        if [ -f "$f" ]; then wc -l <"$f"; else echo 0; fi
}

checkrec() {
        "$PYTHON" "$CHECK_RECORDS" "$@"
}

# ---- certificates ----

cert_key() {
        certtool --generate-privkey --key-type=ecdsa --outfile "$1" >/dev/null 2>&1
}

# make_ca DIR NAME: DIR/NAME-cert.pem, DIR/NAME-key.pem
make_ca() {
        cert_key "$1/$2-key.pem"
        printf 'cn = "migd test %s"\nca\ncert_signing_key\nexpiration_days = 2\n' "$2" >"$1/$2.tmpl"
        certtool --generate-self-signed --load-privkey "$1/$2-key.pem" --template "$1/$2.tmpl" \
                --outfile "$1/$2-cert.pem" >/dev/null 2>&1
}

# make_leaf DIR CA-PREFIX OUT-PREFIX DNSNAME IPADDRESS: a certificate for both TLS server and client use.
make_leaf() {
        cert_key "$1/$3-key.pem"
        printf 'cn = "%s"\ndns_name = "%s"\nip_address = "%s"\nsigning_key\ntls_www_server\ntls_www_client\nexpiration_days = 2\n' \
                "$4" "$4" "$5" >"$1/$3.tmpl"
        certtool --generate-certificate --load-privkey "$1/$3-key.pem" --load-ca-certificate "$1/$2-cert.pem" \
                --load-ca-privkey "$1/$2-key.pem" --template "$1/$3.tmpl" --outfile "$1/$3-cert.pem" >/dev/null 2>&1
}

# install_certs HOST CA-PREFIX LEAF-PREFIX: lays a CertificateDirectory out as libvirt does.
install_certs() {
        local d="$T/$1/certs" p="$T/pki"
        cp "$p/$2-cert.pem" "$d/ca-cert.pem"
        cp "$p/$3-cert.pem" "$d/server-cert.pem"
        cp "$p/$3-key.pem" "$d/server-key.pem"
        cp "$p/$3-cert.pem" "$d/client-cert.pem"
        cp "$p/$3-key.pem" "$d/client-key.pem"
}

# make_pki HOST...: in $T/pki, a CA "ca" and per host "ca-HOST" (its peer name and address), a second CA
# "ca2" with "ca2-HOST" for the same names, and "ca-other" naming a host nobody is ("hostz", 10.77.254.254).
make_pki() {
        local h p="$T/pki"
        mkdir -p "$p"
        make_ca "$p" ca
        make_ca "$p" ca2
        for h in "$@"; do
                make_leaf "$p" ca "ca-$h" "$(host_name "$h")" "${H_IP[$h]}"
                make_leaf "$p" ca2 "ca2-$h" "$(host_name "$h")" "${H_IP[$h]}"
        done
        make_leaf "$p" ca ca-other hostz 10.77.254.254
        [ -s "$p/ca-other-cert.pem" ] || bail "certtool failed"
}
