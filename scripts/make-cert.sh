#!/bin/sh
# Makes self-signed certificates for trying TLS locally (examples/https.conf): an ECDSA P-256
# and an RSA 2048 pair for NAME (default localhost), valid 30 days, in DIR (default
# examples/certs). Never use them in production, never commit them (.gitignore keeps them out).
# Usage: scripts/make-cert.sh [DIR] [NAME]
set -eu
dir=${1:-examples/certs}
name=${2:-localhost}
mkdir -p "$dir"
umask 077
openssl req -x509 -nodes -days 30 -subj "/CN=$name" -addext "subjectAltName=DNS:$name" \
    -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$dir/$name.ecdsa.key" -out "$dir/$name.ecdsa.crt" 2>/dev/null
openssl req -x509 -nodes -days 30 -subj "/CN=$name" -addext "subjectAltName=DNS:$name" \
    -newkey rsa:2048 -keyout "$dir/$name.rsa.key" -out "$dir/$name.rsa.crt" 2>/dev/null
chmod 644 "$dir/$name.ecdsa.crt" "$dir/$name.rsa.crt"
echo "make-cert: $dir/$name.{ecdsa,rsa}.{crt,key}"
