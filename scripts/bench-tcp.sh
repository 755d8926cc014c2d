#!/usr/bin/env bash
# TCP relay benchmark: meshgate (a `protocol = "tcp"` listener) and HAProxy
# (`mode tcp`), both terminating mTLS (TLS 1.3, client certificate
# required) in front of the same `meshbench upstream --tcp-echo`, measured
# with `meshbench tls://` (blocks echoed and checked byte for byte), in one
# run, interleaved. Prints one markdown table on stdout.
#
# Usage: scripts/bench-tcp.sh [ROUNDS] [DURATION] [CONNS] [BLOCK]
#   defaults: 3 rounds, 10s, 16 connections, 16384-byte blocks.
# Each proxy runs alone on CPU 0; meshbench and the echo upstream share
# CPU 1. Needs 2+ CPUs; installs haproxy, openssl and util-linux (taskset)
# when missing (sudo when not root). Loopback only; everything it starts is
# stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${1:-3}; DURATION=${2:-10s}; CONNS=${3:-16}; BLOCK=${4:-16384}
log() { printf '%s\n' "$*" >&2; }
die() { log "bench-tcp: $*"; exit 1; }
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "bad ROUNDS $ROUNDS"

need=()
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v openssl >/dev/null || need+=(openssl)
command -v taskset >/dev/null || need+=(util-linux)
command -v bc >/dev/null || need+=(bc)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
export PATH="$PATH:/usr/sbin:/sbin"
log "building meshgate and meshbench (release)"
cargo build --release -p meshbench -p meshgate-control >&2
BIN=$PWD/target/release

W=$(mktemp -d /tmp/bench-tcp.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=scripts/lib/bench-common.sh
. "$ROOT/scripts/lib/bench-common.sh"

cd "$W"
make_bench_pki

taskset -c 1 "$BIN/meshbench" upstream --tcp-echo --listen 127.0.0.1:0 > echo.out 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q '^listening' echo.out 2>/dev/null && break; sleep 0.1; done
ECHO=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' echo.out | head -1)
[ -n "$ECHO" ] || die "echo upstream did not start"

declare -A PORT PROC
PORT[meshgate]=$(free_port)
cat > meshgate.toml <<CONF
[dataplane]
shards = 1
[[listeners]]
name = "tcp"
address = "127.0.0.1:${PORT[meshgate]}"
protocol = "tcp"
[listeners.tls]
cert = "$W/server.pem"
key = "$W/server.key"
client_ca = "$W/ca.pem"
client_auth = "require"
min_version = "1.3"
groups = ["x25519", "secp256r1"]
[[routes]]
listener = "tcp"
cluster = "echo"
[[clusters]]
name = "echo"
endpoints = ["127.0.0.1:$ECHO"]
CONF
taskset -c 0 "$BIN/meshgate" run --config "$W/meshgate.toml" --log-level warn > meshgate.log 2>&1 &
pids+=($!); PROC[meshgate]=$!

PORT[haproxy]=$(free_port)
cat > haproxy.cfg <<CONF
global
  nbthread 1
  maxconn 8000
defaults
  mode tcp
  timeout connect 1s
  timeout client 60s
  timeout server 60s
frontend tls
  bind 127.0.0.1:${PORT[haproxy]} ssl crt $W/haproxy.pem ca-file $W/ca.pem verify required ssl-min-ver TLSv1.3 curves X25519:P-256
  default_backend echo
backend echo
  server e1 127.0.0.1:$ECHO
CONF
taskset -c 0 haproxy -f haproxy.cfg > haproxy.log 2>&1 &
pids+=($!); PROC[haproxy]=$!
wait_port "${PORT[meshgate]}" meshgate
wait_port "${PORT[haproxy]}" haproxy

cpu_ticks() { local line f; read -r line < "/proc/$1/stat"; read -r -a f <<< "${line##*) }"; echo $(( f[11] + f[12] )); }
HZ=$(getconf CLK_TCK)
json() { sed -n "s/^ *\"$2\": \([0-9.e+-]*\),\?$/\1/p" "$1" | head -1; }
declare -A EXCH BYTES CPU P50 P99
proxies=(meshgate haproxy)
for p in "${proxies[@]}"; do EXCH[$p]=0; BYTES[$p]=0; CPU[$p]=0; P50[$p]=""; P99[$p]=""; done
log "tcp relay: $ROUNDS rounds x $DURATION, -c $CONNS, $BLOCK-byte blocks, TLS 1.3 mTLS"
for r in $(seq "$ROUNDS"); do
  order=("${proxies[@]}"); [ $((r % 2)) = 0 ] && order=(haproxy meshgate)
  for p in "${order[@]}"; do
    before=$(cpu_ticks "${PROC[$p]}")
    taskset -c 1 "$BIN/meshbench" "tls://localhost:${PORT[$p]}" --cacert ca.pem --cert client.pem \
      --key client.key --tls13 -c "$CONNS" -d "$DURATION" --body-size "$BLOCK" -q \
      --json "run-$p-$r.json" > /dev/null
    after=$(cpu_ticks "${PROC[$p]}")
    errs=$(json "run-$p-$r.json" errors)
    [ "$errs" = 0 ] || die "$p round $r: $errs errors (see $W)"
    n=$(json "run-$p-$r.json" requests); b=$(json "run-$p-$r.json" bytes)
    EXCH[$p]=$(( EXCH[$p] + n )); BYTES[$p]=$(( BYTES[$p] + b )); CPU[$p]=$(( CPU[$p] + after - before ))
    P50[$p]+="$(json "run-$p-$r.json" p50) "; P99[$p]+="$(json "run-$p-$r.json" p99) "
    log "  $p round $r: $n exchanges, cpu $(echo "scale=2; ($after - $before) / $HZ" | bc) s"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs=$(echo "${DURATION%s} * $ROUNDS" | bc)
echo "| proxy | exchanges/s | MiB/s echoed | p50 ms | p99 ms | proxy CPU s | MiB echoed per proxy-CPU-s | ratio to HAProxy |"
echo "|---|---|---|---|---|---|---|---|"
base=$(echo "scale=6; ${BYTES[haproxy]} / 1048576 / (${CPU[haproxy]} / $HZ)" | bc)
for p in "${proxies[@]}"; do
  cpu=$(echo "scale=2; ${CPU[$p]} / $HZ" | bc)
  per=$(echo "scale=1; ${BYTES[$p]} / 1048576 / $cpu" | bc)
  printf '| %s | %.0f | %.1f | %s | %s | %s | %s | %.2f |\n' "$p" \
    "$(echo "${EXCH[$p]} / $secs" | bc -l)" "$(echo "${BYTES[$p]} / 1048576 / $secs" | bc -l)" \
    "$(echo "${P50[$p]}" | median)" "$(echo "${P99[$p]}" | median)" "$cpu" "$per" \
    "$(echo "$per / $base" | bc -l)"
done
echo
echo "rounds: $ROUNDS x $DURATION, -c $CONNS, blocks of $BLOCK bytes echoed (each byte crosses the proxy twice); p50/p99: median of rounds; proxy CPU: utime+stime from /proc."
