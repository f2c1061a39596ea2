#!/bin/sh
# Make a throwaway CA, a server certificate for an rsyslog RELP/TLS receiver and a client
# certificate for auditrelay, with the openssl CLI. FOR TESTS AND TRIALS ONLY: keys are unencrypted
# and valid for 30 days.
#
#   sh make-test-certs.sh DIR [SERVER_NAME [EXTRA_CLIENT...]]
#
# DIR gets ca.pem ca.key server.pem server.key client.pem client.key (the client is named
# "auditrelay", the name to give imrelp's tls.permittedPeer), and NAME.pem NAME.key for each
# EXTRA_CLIENT: more client certificates from the same CA, named NAME (to try permittedPeer with a
# certificate that is valid but not permitted). The server certificate names
# SERVER_NAME (default localhost) as a DNS name and 127.0.0.1 / ::1 as IP addresses, so auditrelay's
# default server-name check (the host part of `address`) passes for 127.0.0.1:PORT and localhost:PORT.
set -eu
dir=${1:?usage: make-test-certs.sh DIR [SERVER_NAME]}
name=${2:-localhost}
[ $# -ge 2 ] && shift 2 || shift $#
mkdir -p "$dir"
cd "$dir"
umask 077

# EC P-256 keys: quick to make, supported by rustls and by librelp's openssl driver.
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

newkey ca.key
openssl req -x509 -new -key ca.key -sha256 -days 30 -subj "/CN=auditrelay test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.pem

leaf() { # leaf NAME CN EXTENDED_KEY_USAGE SAN
    newkey "$1.key"
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
        "$3" "$4" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 30 \
        -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

leaf server "$name" serverAuth "DNS:$name,IP:127.0.0.1,IP:::1"
leaf client auditrelay clientAuth "DNS:auditrelay"
for extra in "$@"; do
    leaf "$extra" "$extra" clientAuth "DNS:$extra"
    chmod 644 "$extra.pem"
done
rm -f ca.srl
chmod 644 ca.pem server.pem client.pem
echo "certificates in $(pwd): ca.pem server.pem server.key client.pem client.key"
