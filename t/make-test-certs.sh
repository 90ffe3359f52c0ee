#!/bin/bash
# make-test-certs.sh DIR
#
# Makes the certificates and keys the TLS tests use, in DIR (created if
# missing), with openssl alone: no network, a few seconds (EC keys are fast
# to make). Every file is owned by the user who runs the script and every
# key is mode 0600, so run it as the user that runs postgres.
#
#   ca.crt, ca.key            the test CA ("leader_election test CA")
#   server.crt, server.key    etcd's certificate: SAN IP:127.0.0.1 and
#                             DNS:localhost, extendedKeyUsage serverAuth and
#                             clientAuth (etcd 3.4's JSON gateway dials its
#                             own gRPC server with it under --client-cert-auth)
#   client.crt, client.key    a client certificate, clientAuth, with no
#                             Common Name (see below)
#   client2.crt, client2.key  another one, for rotation
#   client-cn.crt, client-cn.key
#                             a client certificate with a Common Name
#                             (CN=pgnode), which etcd refuses at its gateway
#                             once auth is enabled
#   expired.crt, expired.key  a server certificate like server.crt whose
#                             validity ended in 2020 (notBefore 2019)
#   wronghost.crt, wronghost.key
#                             a server certificate for DNS:wrong.example only
#   ca2.crt, ca2.key          a second CA that signed none of the above
#   ca2-server.crt, ca2-server.key
#                             a server certificate for 127.0.0.1 signed by ca2
#   other.key                 a key that matches no certificate
#   jwt.key, jwt.pub          an RSA key pair for etcd's JWT auth tokens
#                             (--auth-token jwt,...,sign-method=RS256)
#
# The client certificates have no Common Name (subject O=... only): with
# --client-cert-auth and auth enabled, etcd 3.4 answers every JSON gateway
# request made with a client certificate that has one with HTTP 400
# "CommonName of client sending a request against gateway will be ignored and
# not used as expected" (the gateway cannot pass the name on as the user).
#
# openssl 3.0's req/x509 take no start date (-days must be positive), so the
# expired certificate is issued by `openssl ca`, which takes -startdate and
# -enddate, from a throw-away CA database.
set -euo pipefail

dir=${1:?usage: make-test-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
umask 077

newkey() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
	chmod 0600 "$1"
}

# A self-signed CA: name, subject.
make_ca() {
	newkey "$1.key"
	openssl req -x509 -new -key "$1.key" -out "$1.crt" -days 3650 -subj "$2" \
		-addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}

# A certificate signed by a CA: name, CA name, subject, extensions.
make_cert() {
	local name=$1 ca=$2 subj=$3 ext=$4
	newkey "$name.key"
	openssl req -new -key "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
	printf '%b' "$ext" > "$name.ext"
	openssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" \
		-CAcreateserial -out "$name.crt" -days 3650 -extfile "$name.ext" 2>/dev/null
	rm -f "$name.csr" "$name.ext"
}

server_ext='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n'
client_ext='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n'
wrong_ext='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:wrong.example\n'

make_ca ca '/CN=leader_election test CA'
make_ca ca2 '/CN=leader_election unknown CA'
make_cert server ca '/CN=etcd-server' "$server_ext"
make_cert client ca '/O=leader_election test client' "$client_ext"
make_cert client2 ca '/O=leader_election test client 2' "$client_ext"
make_cert client-cn ca '/CN=pgnode' "$client_ext"
make_cert wronghost ca '/CN=wrong.example' "$wrong_ext"
make_cert ca2-server ca2 '/CN=etcd-server' "$server_ext"
newkey other.key
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out jwt.key 2>/dev/null
chmod 0600 jwt.key
openssl pkey -in jwt.key -pubout -out jwt.pub

# The expired server certificate, through `openssl ca`.
mkdir -p expired-ca
: > expired-ca/index.txt
echo 1000 > expired-ca/serial
printf '%b' "$server_ext" > expired-ca/ext
cat > expired-ca/ca.cnf <<CNF
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = expired-ca
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir
certificate = ca.crt
private_key = ca.key
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[ any ]
commonName = supplied
CNF
newkey expired.key
openssl req -new -key expired.key -out expired.csr -subj '/CN=etcd-server' 2>/dev/null
openssl ca -batch -notext -config expired-ca/ca.cnf -extfile expired-ca/ext \
	-startdate 20190101000000Z -enddate 20200101000000Z \
	-in expired.csr -out expired.crt 2>/dev/null
rm -rf expired-ca expired.csr ca.srl ca2.srl

# Sanity: what the tests rely on.
openssl verify -CAfile ca.crt server.crt client.crt client2.crt client-cn.crt wronghost.crt >/dev/null
openssl verify -CAfile ca2.crt ca2-server.crt >/dev/null
if openssl verify -CAfile ca.crt expired.crt >/dev/null 2>&1; then
	echo "make-test-certs.sh: expired.crt is not expired" >&2
	exit 1
fi
chmod 0644 ./*.crt jwt.pub
