#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Makes the throw-away certificates test-peer needs, with certtool, into the directory given.
#
#   ca-cert.pem                  the CA both test hosts trust
#   hostb-{cert,key}.pem         server "hostb": dnsName hostb and ipAddress 127.0.0.1 (tests connect to 127.0.0.1)
#   hosta-{cert,key}.pem         client "hosta": dnsName hosta
#   otherhost-{cert,key}.pem     server "otherhost" only, signed by the CA (wrong name)
#   ca2-cert.pem                 a second, untrusted CA
#   ca2-hostb-{cert,key}.pem     server hostb/127.0.0.1 signed by the second CA (wrong CA)
#   ca2-hosta-{cert,key}.pem     client hosta signed by the second CA (wrong CA)
set -eu

dir=${1:?usage: certs.sh DIR}
mkdir -p "$dir"
cd "$dir"

key() {
    certtool --generate-privkey --key-type=ecdsa --outfile "$1-key.pem" >/dev/null 2>&1
}

ca() {
    key "$1"
    cat >"$1.tmpl" <<EOF
cn = "migd test $1"
ca
cert_signing_key
expiration_days = 30
EOF
    certtool --generate-self-signed --load-privkey "$1-key.pem" --template "$1.tmpl" \
        --outfile "$1-cert.pem" >/dev/null 2>&1
}

# leaf NAME CA ROLE DNSNAME [IPADDRESS]
leaf() {
    key "$1"
    {
        echo "cn = \"$4\""
        echo "dns_name = \"$4\""
        if [ $# -ge 5 ]; then echo "ip_address = \"$5\""; fi
        echo "signing_key"
        echo "tls_www_$3"
        echo "expiration_days = 30"
    } >"$1.tmpl"
    certtool --generate-certificate --load-privkey "$1-key.pem" --load-ca-certificate "$2-cert.pem" \
        --load-ca-privkey "$2-key.pem" --template "$1.tmpl" --outfile "$1-cert.pem" >/dev/null 2>&1
}

ca ca
ca ca2
leaf hostb ca server hostb 127.0.0.1
leaf hosta ca client hosta
leaf otherhost ca server otherhost
leaf ca2-hostb ca2 server hostb 127.0.0.1
leaf ca2-hosta ca2 client hosta
