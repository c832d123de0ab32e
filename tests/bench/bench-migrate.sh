#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Benchmark: a 1 GiB sim device between two migds on loopback, against a plain TCP copy in the same run.
# Prints ratios; never fails on timing (meson's `benchmark()`, suite bench).
set -euo pipefail

: "${MIGD_BUILD_ROOT:?run through meson test --benchmark, or set MIGD_BUILD_ROOT and MIGD_SOURCE_ROOT}"
: "${MIGD_SOURCE_ROOT:?}"
MIGD=$MIGD_BUILD_ROOT/daemon/migd
MIGCTL=$MIGD_BUILD_ROOT/client/migctl
TCP_COPY=$MIGD_BUILD_ROOT/tests/bench/tcp-copy
SHA256_RATE=$MIGD_BUILD_ROOT/tests/bench/sha256-rate
# shellcheck source=/dev/null
. "$MIGD_SOURCE_ROOT/tests/lib/private-bus.sh"
SIZE=${MIGD_BENCH_SIZE:-1073741824}
RUNS=${MIGD_BENCH_RUNS:-3}

T=$(mktemp -d /tmp/migd-bench.XXXXXX)
pids=()
migds=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_host NAME PORT INSECURE CERTDIR DEVICE-SECTIONS
start_host() {
    local name=$1 port=$2 insecure=$3 certs=$4 devices=$5 dir=$T/$1
    mkdir -p "$dir"
    private_bus_config "unix:path=$dir/bus" >"$dir/bus.conf"
    cat >"$dir/migd.conf" <<EOF
[Daemon]
PolicyDirectory=$dir/none
Backends=sim
[Peer]
Listen=127.0.0.1:$port
Insecure=$insecure
Name=${HOST_NAME_OVERRIDE:-$name}
CertificateDirectory=$certs
$devices
EOF
    dbus-daemon --config-file="$dir/bus.conf" --nofork 2>/dev/null &
    pids+=($!)
    for _ in $(seq 100); do [ -S "$dir/bus" ] && break; sleep 0.05; done
    "$MIGD" --config "$dir/migd.conf" --bus "unix:path=$dir/bus" --state-dir "$dir/state" 2>"$dir/log" &
    pids+=($!)
    migds+=($!)
    for _ in $(seq 200); do "$MIGCTL" --bus "unix:path=$dir/bus" devices >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo "bench: migd $name did not start: $(tail -n 3 "$dir/log")" >&2
    exit 1
}

stop_hosts() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
    migds=()
    rm -rf "$T/hosta" "$T/hostb"
}

sim() { # NAME SIZE GUEST
    printf '[SimDevice %s]\nMigrationFlags=stop-copy,p2p,pre-copy\nStateSize=%s\nMSIXVectors=4\n%s\n' "$1" "$2" "$3"
}

# migrate FROM TO PORT DEVICE: wall time in µs of one migration, pre-copy off (the data moves once).
migrate() {
    local from=$1 port=$3 dev=$4 t0 t1
    t0=$(date +%s%N)
    if ! "$MIGCTL" --bus "unix:path=$T/$from/bus" migrate "$dev" --to "127.0.0.1:$port" --policy stop-window \
        --precopy off >"$T/migrate.out" 2>&1; then
        echo "bench: the migration failed: $(cat "$T/migrate.out")" >&2
        kill -TERM $$
        exit 1
    fi
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000))
}

last_downtime() { # HOST: DowntimeUsec of the newest migration there
    "$MIGCTL" --bus "unix:path=$T/$1/bus" --json status |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["downtime_usec"])'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# cpu_ticks: user plus system clock ticks both migds used so far. Unlike the rates it hardly depends on what
# else the machine runs, so it is the number to compare when the rates are noisy.
cpu_ticks() {
    local t=0 p f
    for p in "${migds[@]}"; do
        read -r -a f <"/proc/$p/stat"
        t=$((t + f[13] + f[14])) # utime, stime (the command name has no spaces)
    done
    echo "$t"
}

# rate PROGRAM BYTES: bytes/s of a "BYTES USEC" printing program, median of RUNS.
rate() {
    : >"$T/samples"
    for _ in $(seq "$RUNS"); do
        "$1" "$2" | awk '{printf "%.0f\n", $1 * 1000000 / $2}' >>"$T/samples"
    done
    median <"$T/samples"
}

# migrate_rate INSECURE CERTDIR_A CERTDIR_B: bytes/s of migrations back and forth, median of RUNS; the CPU
# seconds per GiB both migds spent on them go to $T/cpu.
# Samples go through a file: the hosts are this shell's children, which a pipeline's subshell could not wait for.
migrate_rate() {
    local pa pb us c0
    pa=$(free_port)
    pb=$(free_port)
    start_host hosta "$pa" "$1" "$2" "$(sim big "$SIZE" GuestInterrupts=msix)"
    start_host hostb "$pb" "$1" "$3" "$(sim big "$SIZE" '')"
    : >"$T/samples"
    c0=$(cpu_ticks)
    for i in $(seq "$RUNS"); do
        if [ $((i % 2)) = 1 ]; then migrate hosta hostb "$pb" big >"$T/us"; else migrate hostb hosta "$pa" big >"$T/us"; fi
        us=$(cat "$T/us")
        echo $((SIZE * 1000000 / us)) >>"$T/samples"
    done
    awk -v t="$(($(cpu_ticks) - c0))" -v hz="$(getconf CLK_TCK)" -v n="$RUNS" -v s="$SIZE" \
        'BEGIN {printf "%.2f\n", t / hz / (n * s / 1073741824)}' >"$T/cpu"
    stop_hosts
    median <"$T/samples"
}

certs() {
    sh "$MIGD_SOURCE_ROOT/tests/unit/certs.sh" "$T/pki" >/dev/null
    # Each host is client and server in turn: both use the hostb certificate (dnsName hostb, ipAddress
    # 127.0.0.1) as server and hosta's as client, and both call themselves hosta, the name the client
    # certificate carries.
    for d in "$T/pki-a" "$T/pki-b"; do
        mkdir -p "$d"
        cp "$T/pki/ca-cert.pem" "$d/"
        cp "$T/pki/hostb-cert.pem" "$d/server-cert.pem"
        cp "$T/pki/hostb-key.pem" "$d/server-key.pem"
        cp "$T/pki/hosta-cert.pem" "$d/client-cert.pem"
        cp "$T/pki/hosta-key.pem" "$d/client-key.pem"
    done
}

mib() { awk -v r="$1" 'BEGIN {printf "%.0f MiB/s", r / 1048576}'; }

echo "# migd benchmark: $((SIZE / 1048576)) MiB of sim device state, $RUNS runs each, medians"
tcp=$(rate "$TCP_COPY" "$SIZE")
sha=$(rate "$SHA256_RATE" "$SIZE")
plain=$(migrate_rate yes "$T/none" "$T/none")
plain_cpu=$(cat "$T/cpu")
echo "plain TCP copy:        $(mib "$tcp")"
echo "SHA-256, one stream:   $(mib "$sha")"
echo "migration, plaintext:  $(mib "$plain"), migd CPU $plain_cpu s per GiB"
awk -v a="$plain" -v b="$tcp" 'BEGIN {printf "migrate/plain-tcp ratio: %.2f (goal >= 0.9)\n", a / b}'
# Both ends hash every byte (docs/peer-protocol.md), each in one sequential SHA-256 stream: even on two idle
# cores doing nothing else, a migration cannot outrun one such stream.
awk -v a="$sha" -v b="$tcp" 'BEGIN {printf "ceiling set by SHA-256 on both ends: %.2f\n", a / b}'

certs
tls=$(HOST_NAME_OVERRIDE=hosta migrate_rate no "$T/pki-a" "$T/pki-b")
echo "migration, TLS 1.3:    $(mib "$tls"), migd CPU $(cat "$T/cpu") s per GiB"
awk -v a="$tls" -v b="$plain" 'BEGIN {printf "TLS/plaintext ratio: %.2f\n", a / b}'

# Downtime of a small device: source stop to destination running, as the daemons' DowntimeUsec reports it.
pa=$(free_port)
pb=$(free_port)
start_host hosta "$pa" yes "$T/none" "$(sim small 4096 GuestInterrupts=msix)"
start_host hostb "$pb" yes "$T/none" "$(sim small 4096 '')"
: >"$T/samples"
for i in $(seq 7); do
    if [ $((i % 2)) = 1 ]; then migrate hosta hostb "$pb" small >/dev/null; last_downtime hosta >>"$T/samples"
    else migrate hostb hosta "$pa" small >/dev/null; last_downtime hostb >>"$T/samples"; fi
done
median <"$T/samples" | awk '{printf "downtime, 4 KiB device, stop-window: %d us (goal <= 5000 us)\n", $1}'
stop_hosts
