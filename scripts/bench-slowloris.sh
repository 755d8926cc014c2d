#!/usr/bin/env bash
# Slow clients against a well-behaved one: N connections (default 2000)
# dribble a request head at one byte per second (reconnecting whenever the
# gateway closes them), while meshbench sends requests at a fixed rate on
# the same listener. Prints the well-behaved client's latency without and
# with the slow crowd, and the gateway's RSS. Loopback only; stops what it
# started.
#
# Usage: scripts/bench-slowloris.sh [N] [RATE] [SECONDS] [--control]
#   --control  aim the slow crowd at a dummy server instead of the gateway
#              (same CPU, same load on the client's core): tells the
#              gateway's share of a latency change from the machine's.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/lib/bench-common.sh
die() { echo "bench-slowloris: $*" >&2; exit 1; }
N=${1:-2000}; RATE=${2:-500}; SECS=${3:-20}; CONTROL=${4:-}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $(( N * 2 + 200 )) ] || die "ulimit -n $(ulimit -n) is too low for $N connections"
BIN=target/release
[ -x "$BIN/meshgate" ] && [ -x "$BIN/meshbench" ] || cargo build --release -p meshgate-control -p meshbench >&2

W=$(mktemp -d /tmp/bench-slowloris.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

UP=$(free_port)
taskset -c 1 "$BIN/meshbench" upstream --listen "127.0.0.1:$UP" --threads 1 > "$W/upstream.log" 2>&1 &
pids+=($!)
wait_port "$UP" upstream "${pids[-1]}"
PORT=$(free_port)
cat > "$W/meshgate.toml" <<CONF
[dataplane]
shards = 1
[[listeners]]
name = "l"
address = "127.0.0.1:$PORT"
header_timeout_ms = 10000
[[routes]]
listener = "l"
cluster = "c"
[[clusters]]
name = "c"
endpoints = ["127.0.0.1:$UP"]
CONF
taskset -c 0 "$BIN/meshgate" run --config "$W/meshgate.toml" --log-level warn > "$W/gateway.log" 2>&1 &
GW=$!; pids+=($GW)
wait_port "$PORT" meshgate "$GW"
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$GW/status"; }

measure() { # label -> p50 p99 p99.9 errors
  taskset -c 1 "$BIN/meshbench" "http://127.0.0.1:$PORT/" --rate "$RATE" -c 16 -d "${SECS}s" --threads 1 -q \
    --json "$W/$1.json" > /dev/null 2>&1 || true
  local f="$W/$1.json"
  printf '%s %s %s %s\n' \
    "$(sed -n 's/^ *"p50": \([0-9.]*\).*/\1/p' "$f" | head -1)" \
    "$(sed -n 's/^ *"p99": \([0-9.]*\).*/\1/p' "$f" | head -1)" \
    "$(sed -n 's/^ *"p99_9": \([0-9.]*\).*/\1/p' "$f" | head -1)" \
    "$(sed -n 's/^ *"errors": \([0-9]*\).*/\1/p' "$f" | head -1)"
}

rss_idle=$(rss)
read -r b50 b99 b999 berr < <(measure alone)

# The slow crowd: each connection sends one byte of a head per second and
# reconnects when the gateway closes it (header_timeout_ms: 408).
cat > "$W/slowloris.py" <<'PY'
import asyncio, sys
port, n, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
head = b"GET / HTTP/1.1\r\nHost: slow\r\n" + b"X-Slow: " + b"a" * 4096
stats = {"opened": 0, "closed_by_gateway": 0}
async def one():
    loop = asyncio.get_running_loop()
    end = loop.time() + secs
    while loop.time() < end:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        stats["opened"] += 1
        try:
            for b in head:
                if loop.time() >= end:
                    break
                w.write(bytes([b]))
                await w.drain()
                try:
                    data = await asyncio.wait_for(r.read(1), 1.0)
                    if data or r.at_eof():
                        stats["closed_by_gateway"] += 1
                        break
                except asyncio.TimeoutError:
                    pass
        except (ConnectionError, OSError):
            stats["closed_by_gateway"] += 1
        finally:
            w.close()
async def main():
    await asyncio.gather(*(one() for _ in range(n)))
    print(stats["opened"], stats["closed_by_gateway"])
asyncio.run(main())
PY
TARGET=$PORT
if [ "$CONTROL" = --control ]; then
  # A server that accepts and reads forever (never closes): the crowd's
  # traffic, none of it reaching the gateway.
  TARGET=$(free_port)
  cat > "$W/dummy.py" <<'PY'
import asyncio, sys
async def sink(r, w):
    while await r.read(4096):
        pass
async def main():
    s = await asyncio.start_server(sink, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await s.serve_forever()
asyncio.run(main())
PY
  taskset -c 0 python3 "$W/dummy.py" "$TARGET" > "$W/dummy.log" 2>&1 &
  pids+=($!)
  wait_port "$TARGET" dummy "${pids[-1]}"
fi
taskset -c 1 nice -n 19 python3 "$W/slowloris.py" "$TARGET" "$N" $(( SECS + 15 )) > "$W/slowloris.out" 2>&1 &
SLOW=$!; pids+=($SLOW)
# Let the crowd connect, then measure the well-behaved client among it.
for _ in $(seq 100); do
  open=$(ss -tn state established "( dport = :$TARGET )" 2>/dev/null | tail -n +2 | wc -l)
  [ "$open" -ge $(( N * 9 / 10 )) ] && break
  sleep 0.1
done
rss_crowd_start=$(rss)
read -r s50 s99 s999 serr < <(measure crowd)
rss_crowd_end=$(rss)
wait "$SLOW" || true
read -r opened closed < "$W/slowloris.out" || { opened=?; closed=?; }

echo "| client | p50 ms | p99 ms | p99.9 ms | errors |"
echo "|---|---|---|---|---|"
echo "| fixed $RATE req/s, alone | $b50 | $b99 | $b999 | $berr |"
echo "| fixed $RATE req/s, with $N slow-head connections | $s50 | $s99 | $s999 | $serr |"
echo
echo "gateway RSS: ${rss_idle} KiB idle, ${rss_crowd_start} KiB with the crowd connected, ${rss_crowd_end} KiB after ${SECS} s of it"
echo "slow connections: $opened opened, $closed closed by the gateway (header_timeout_ms = 10000)"
