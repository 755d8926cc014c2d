#!/usr/bin/env bash
# Audits meshgate's TLS listener with testssl.sh (Debian's `testssl.sh`
# package, a tool made by others): protocols, cipher suites, server
# preferences, forward secrecy, and every vulnerability check it has.
#
# Usage: scripts/testssl.sh [--quick] [OUT]
#   --quick  protocols, cipher categories and vulnerabilities only (what
#            the test suite runs)
#   OUT      where the report goes (default bench/testssl.txt)
#
# Starts a release (else debug) meshgate on a loopback port with a TLS
# listener (a throw-away PKI, client CA set, client_auth = "optional":
# Debian's testssl.sh 3.0 cannot present a client certificate, and the TLS
# stack is the same one an mTLS listener runs) in front of a demo upstream.
# Exits non-zero when testssl finds a vulnerability or the gateway offers
# anything below TLS 1.2 or a non-AEAD suite. Loopback only; stops what it
# started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/lib/bench-common.sh
die() { echo "testssl: $*" >&2; exit 1; }

QUICK=0; OUT=bench/testssl.txt
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) OUT=$1; shift ;;
  esac
done
command -v testssl >/dev/null || die "testssl.sh is not installed (apt-get install testssl.sh)"
BIN=target/release
[ -x "$BIN/meshgate" ] || BIN=target/debug
[ -x "$BIN/meshgate" ] || die "build meshgate first (cargo build -p meshgate-control)"

W=$(mktemp -d /tmp/testssl.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
cd "$W"
make_bench_pki

UP=$(free_port)
"$ROOT/$BIN/meshbench" upstream --listen "127.0.0.1:$UP" --threads 1 > upstream.log 2>&1 &
pids+=($!)
wait_port "$UP" upstream "${pids[-1]}"
PORT=$(free_port)
cat > meshgate.toml <<CONF
[dataplane]
shards = 1
[[listeners]]
name = "public"
address = "127.0.0.1:$PORT"
[listeners.tls]
cert = "$W/server.pem"
key = "$W/server.key"
client_ca = "$W/ca.pem"
client_auth = "optional"
[[routes]]
listener = "public"
cluster = "c"
[[clusters]]
name = "c"
endpoints = ["127.0.0.1:$UP"]
CONF
"$ROOT/$BIN/meshgate" run --config meshgate.toml --log-level warn > gateway.log 2>&1 &
pids+=($!)
wait_port "$PORT" meshgate "${pids[-1]}"

args=(--quiet --color 0 --warnings off --nodns none --openssl-timeout 10)
if [ "$QUICK" = 1 ]; then
  args+=(--protocols --std --vulnerable)
fi
# testssl's exit status counts findings of every severity; the verdict
# below reads its own summary lines instead.
testssl "${args[@]}" "127.0.0.1:$PORT" > "$W/report.txt" 2>&1 || true
case "$OUT" in /*) ;; *) OUT="$ROOT/$OUT" ;; esac
mkdir -p "$(dirname "$OUT")"
{
  echo "# $(testssl --version 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' | grep -Eo 'testssl +[0-9][^ ]*' | head -1) (Debian's testssl.sh) against $("$ROOT/$BIN/meshgate" --version 2>/dev/null | head -1)"
  echo "# command: scripts/testssl.sh$([ "$QUICK" = 1 ] && echo ' --quick') (TLS listener with a client CA, client_auth = optional, ECDSA P-256 certificate)"
  echo
  grep -v "GOST support" "$W/report.txt" | sed -e "s/127\.0\.0\.1:$PORT/127.0.0.1:PORT/g" -e "s/port $PORT/port PORT/g"
} > "$OUT"

fail=0
report="$W/report.txt"
for old in "SSLv2" "SSLv3" "TLS 1 " "TLS 1.1"; do
  if grep -E "^ *$old +offered" "$report" | grep -vq "not offered"; then
    echo "testssl: $old is offered" >&2; fail=1
  fi
done
if grep -E "(NULL ciphers|Anonymous NULL|Export ciphers|LOW: 64 Bit|Triple DES|Obsoleted CBC).*offered" "$report" | grep -vq "not offered"; then
  echo "testssl: a weak or non-AEAD cipher category is offered:" >&2
  grep -E "(NULL ciphers|Anonymous NULL|Export ciphers|LOW: 64 Bit|Triple DES|Obsoleted CBC)" "$report" >&2
  fail=1
fi
if grep -E "VULNERABLE" "$report" | grep -vq "not vulnerable"; then
  echo "testssl: a vulnerability was reported:" >&2
  grep -E "VULNERABLE" "$report" | grep -v "not vulnerable" >&2
  fail=1
fi
grep -Eq "TLS 1\.3 +offered" "$report" || { echo "testssl: TLS 1.3 not seen offered (did the scan run?)" >&2; tail -20 "$report" >&2; fail=1; }
echo "report written to $OUT"
exit "$fail"
