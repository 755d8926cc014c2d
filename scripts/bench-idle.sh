#!/usr/bin/env bash
# Memory of idle mTLS keep-alive connections: starts meshgate (1 shard,
# mTLS listener) in front of `meshbench upstream`, opens N TLS 1.3
# connections with a client certificate (Python's ssl module), sends one
# request on each, leaves them idle, and prints the gateway's VmRSS before
# and with all N idle. Loopback only; stops what it starts.
# Usage: scripts/bench-idle.sh [N]   (default 3000; needs `ulimit -n` > N)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${1:-3000}
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "bad N $N" >&2; exit 2; }
command -v python3 >/dev/null && command -v openssl >/dev/null \
  || { echo "bench-idle: needs python3 and openssl" >&2; exit 1; }
cargo build --release -p meshbench -p meshgate-control >&2
BIN=$PWD/target/release
W=$(mktemp -d /tmp/bench-idle.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
die() { echo "bench-idle: $*" >&2; exit 1; }
# shellcheck source=scripts/lib/bench-common.sh
. "$ROOT/scripts/lib/bench-common.sh"
cd "$W"
make_bench_pki

"$BIN/meshbench" upstream --listen 127.0.0.1:0 --body-size 16 > up.out 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q '^listening' up.out && break; sleep 0.1; done
UP=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' up.out)
cat > gw.toml <<CONF
[dataplane]
shards = 1
[[listeners]]
name = "idle"
address = "127.0.0.1:0"
idle_timeout_ms = 600000
[listeners.tls]
cert = "$W/server.pem"
key = "$W/server.key"
client_ca = "$W/ca.pem"
[[routes]]
listener = "idle"
cluster = "up"
[[clusters]]
name = "up"
endpoints = ["127.0.0.1:$UP"]
CONF
"$BIN/meshgate" run --config gw.toml --log-level warn > gw.out 2>&1 &
GW=$!; pids+=($GW)
for _ in $(seq 50); do grep -q 'listening' gw.out && break; sleep 0.1; done
PORT=$(grep -o '127\.0\.0\.1:[0-9]*' gw.out | head -1 | cut -d: -f2)
[ -n "$PORT" ] || { echo "bench-idle: gateway did not start: $(cat gw.out)" >&2; exit 1; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$GW/status"; }
before=$(rss)
cat > idle.py <<'PY'
import socket, ssl, sys, time
port, n, d = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=f"{d}/ca.pem")
ctx.load_cert_chain(f"{d}/client.pem", f"{d}/client.key")
conns = []
for _ in range(n):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    s.sendall(b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    conns.append(s)
print("open", flush=True)
time.sleep(600)
PY
python3 idle.py "$PORT" "$N" "$W" > py.out 2>&1 &
pids+=($!)
for _ in $(seq 600); do grep -q open py.out && break; sleep 0.2; done
grep -q open py.out || { echo "bench-idle: client failed: $(cat py.out)" >&2; exit 1; }
sleep 1
with=$(rss)
echo "meshgate VmRSS: ${before} KiB before, ${with} KiB with $N idle mTLS connections: $(( (with - before) / N )) KiB per connection"
