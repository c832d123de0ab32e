#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Mutual TLS with certificates made at test time: it works, and a wrong CA or a wrong host name is refused clearly.

. "$MIGD_SOURCE_ROOT/tests/lib/hosts.sh"

command -v certtool >/dev/null || { echo "1..0 # SKIP certtool (gnutls-bin) is missing"; exit 0; }

hosts_init a b
make_pki a b
printf '[SimDevice gpu0]\nMigrationFlags=stop-copy,p2p\nMSIXVectors=4\nGuestInterrupts=msix\n' | host_config a tls
printf '[SimDevice gpu0]\nMigrationFlags=stop-copy,p2p\nMSIXVectors=4\n\n[SimDevice gpu1]\nMigrationFlags=stop-copy,p2p\nMSIXVectors=4\n' |
        host_config b tls

# refused WHAT A-CA A-LEAF B-CA B-LEAF WANTED-ERROR: A's migration to B fails with that error; A's device runs
# with working interrupts and B's target never ran after it stopped.
refused() {
        local what=$1 m ma mb rec err
        install_certs a "$2" "$3"
        install_certs b "$4" "$5"
        host_restart a
        host_restart b
        ma=$(record_mark a gpu0)
        mb=$(record_mark b gpu1)
        m=$(start_migration a gpu0 b stop-window target gpu1)
        expect_eq "$what: Result" failed "$(wait_result a "$m")"
        err=$(mig_prop a "$m" Error)
        expect_contains "$what: Error names the certificate problem" "$6" "$err"
        expect_eq "$what: source device RUNNING" RUNNING "$(dev_state a gpu0)"
        rec=$(record_file a gpu0)
        expect_eq "$what: the source device never left RUNNING (record)" 0 "$(checkrec count "$rec@$ma" arc)"
        raise_irq a gpu0 msix 1 >/dev/null
        expect_eq "$what: source interrupts still delivered" 1 "$(checkrec count "$rec@$ma" irq_delivered vector=1)"
        expect_eq "$what: the destination's target was not touched (record)" 0 \
                "$(checkrec count "$(record_file b gpu1)@$mb" arc)"
}

install_certs a ca ca-a
install_certs b ca ca-b
host_start a
host_start b
ma=$(record_mark a gpu0)
m=$(start_migration a gpu0 b stop-window target gpu0)
expect_eq "mutual TLS (Insecure=no): Result" success "$(wait_result a "$m")"
expect_eq "mutual TLS: no Error" "" "$(mig_prop a "$m" Error)"
expect_eq "mutual TLS: the destination device RUNNING" RUNNING "$(dev_state b gpu0)"
expect_ok "mutual TLS: S1 from the records" checkrec s1 "$(record_file a gpu0)@$ma" "$(record_file b gpu0)"
expect_eq "mutual TLS: the destination's Migration ends success" success "$(wait_result b "$(mig_path_of "$m")")"

# gpu0 on A is stopped now (migrated); bring it back for the refusals.
host_kill a
rm -rf "$T/a/state"
mkdir -p "$T/a/state"

refused "server certificate from another CA" ca ca-a ca ca2-b "is not signed by the CA"
refused "server certificate for another host" ca ca-a ca ca-other "names"
refused "client certificate from another CA" ca ca2-a ca ca-b "rejected the certificate of this end"
refused "client certificate for another host" ca ca-other ca ca-b "certificate"
refused "destination trusts another CA" ca ca-a ca2 ca2-b "certificate"

finish
