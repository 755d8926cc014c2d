#!/usr/bin/env bash
# What observability costs: keep-alive requests per gateway-CPU-second with
# nothing on (no admin listener, no access log) against everything built on
# (the admin listener scraped every second, a JSON access log to a file and
# 1 % of requests traced, their spans posted as OTLP protobuf to a
# collector on loopback),
# alternating in the same run; then how long a /metrics scrape of a config
# with 1,000 endpoints takes. The gateway's CPU is read from /proc (all its
# threads: shard, control, admin, access-log writer, span exporter).
# Loopback only; stops
# what it started.
#
# Usage: scripts/bench-observability.sh [ROUNDS] [SECONDS]
# RATE=N drives N requests a second instead of closed loop.
# ON="scrape log trace" (the default) picks what "on" turns on, to measure
# one alone; BIG=0 skips the 1,000-endpoint scrape; PERF=FILE records the last "on" gateway with `perf record -g`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench-common.sh
die() { echo "bench-observability: $*" >&2; exit 1; }
ROUNDS=${1:-3}; SECS=${2:-10}; ON=${ON:-scrape log trace}
has() { [[ " $ON " == *" $1 "* ]]; }
# RATE=N: open loop at N requests a second (both sides get the same load,
# so batching in the event loop is the same); unset: closed loop, as fast
# as it goes.
LOAD=""; [ -n "${RATE:-}" ] && LOAD="--rate $RATE"
BIN=target/release
[ -x "$BIN/meshgate" ] && [ -x "$BIN/meshbench" ] || cargo build --release -p meshgate-control -p meshbench >&2

W=$(mktemp -d /tmp/bench-observability.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
TICKS=$(getconf CLK_TCK)

UP=$(free_port)
taskset -c 1 "$BIN/meshbench" upstream --listen "127.0.0.1:$UP" --threads 1 > "$W/upstream.log" 2>&1 &
pids+=($!)
wait_port "$UP" upstream "${pids[-1]}"

# A collector that takes every post (what it costs is not the gateway's).
COL=$(free_port)
python3 -c 'import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()' "$COL" > "$W/collector.log" 2>&1 &
pids+=($!)
wait_port "$COL" collector "${pids[-1]}"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
field() { sed -n "s/^ *\"$1\": \([0-9.]*\).*/\1/p" "$2" | head -1; }

# One measurement: starts a gateway (observability on or off), drives it
# closed loop for SECS, prints "requests cpu_seconds".
run() { # on|off round
  local mode=$1 port admin conf="$W/$1-$2.toml"
  port=$(free_port)
  {
    echo "[dataplane]"; echo "shards = 1"
    if [ "$mode" = on ] && has scrape; then
      admin=$(free_port); echo "[admin]"; echo "address = \"127.0.0.1:$admin\""
    fi
    if [ "$mode" = on ] && has trace; then
      echo "[tracing]"; echo "sample_percent = 1.0"
      echo "otlp = { endpoint = \"http://127.0.0.1:$COL/v1/traces\" }"
    fi
    echo "[[listeners]]"; echo "name = \"l\""; echo "address = \"127.0.0.1:$port\""
    if [ "$mode" = on ] && has log; then
      echo "access_log = { path = \"$W/access-$2.log\", format = \"json\" }"
    fi
    echo "[[routes]]"; echo "listener = \"l\""; echo "cluster = \"c\""
    echo "[[clusters]]"; echo "name = \"c\""; echo "endpoints = [\"127.0.0.1:$UP\"]"
  } > "$conf"
  taskset -c 0 "$BIN/meshgate" run --config "$conf" --log-level warn > "$W/gateway-$mode-$2.log" 2>&1 &
  local gw=$!; pids+=($gw)
  wait_port "$port" meshgate "$gw"
  local scraper=""
  if [ "$mode" = on ] && has scrape; then
    wait_port "$admin" admin "$gw"
    ( while :; do curl -s -o /dev/null "http://127.0.0.1:$admin/metrics"; sleep 1; done ) &
    scraper=$!; pids+=($scraper)
  fi
  local before after perf=""
  if [ "$mode" = on ] && [ -n "${PERF:-}" ] && [ "$2" = "$ROUNDS" ]; then
    perf record ${PERF_CG:--g} -o "$PERF" -p "$gw" -- sleep "$SECS" > /dev/null 2>&1 &
    perf=$!
  fi
  before=$(cpu_ticks "$gw")
  taskset -c 1 "$BIN/meshbench" "http://127.0.0.1:$port/" -c 16 -d "${SECS}s" --threads 1 -q $LOAD \
    --json "$W/$mode-$2.json" > /dev/null 2>&1 || true
  after=$(cpu_ticks "$gw")
  [ -n "$perf" ] && wait "$perf"
  [ -n "$scraper" ] && kill "$scraper" 2>/dev/null
  kill "$gw"; wait "$gw" 2>/dev/null || true
  local n errors
  n=$(field requests "$W/$mode-$2.json"); errors=$(field errors "$W/$mode-$2.json")
  [ "${errors:-1}" = 0 ] || die "$mode round $2: $errors errors (see $W)"
  if [ "$mode" = on ] && has log; then
    local lines; lines=$(wc -l < "$W/access-$2.log")
    [ "$lines" -ge "$n" ] || die "on round $2: $lines log lines for $n requests"
  fi
  echo "$n $(( after - before ))"
}

echo "on: $ON"
echo
echo "| round | off: req | off: CPU s | off: req/CPU-s | on: req | on: CPU s | on: req/CPU-s | on/off |"
echo "|---|---|---|---|---|---|---|---|"
tot_off_n=0; tot_off_t=0; tot_on_n=0; tot_on_t=0; ratios=()
for r in $(seq "$ROUNDS"); do
  read -r on_n on_t < <(run on "$r")
  read -r off_n off_t < <(run off "$r")
  tot_off_n=$(( tot_off_n + off_n )); tot_off_t=$(( tot_off_t + off_t ))
  tot_on_n=$(( tot_on_n + on_n )); tot_on_t=$(( tot_on_t + on_t ))
  ratios+=("$(awk -v a="$off_n" -v b="$off_t" -v c="$on_n" -v d="$on_t" 'BEGIN { printf "%.4f", (c / d) / (a / b) }')")
  awk -v r="$r" -v a="$off_n" -v b="$off_t" -v c="$on_n" -v d="$on_t" -v k="$TICKS" 'BEGIN {
    x = a / (b / k); y = c / (d / k);
    printf "| %d | %d | %.2f | %.0f | %d | %.2f | %.0f | %.3f |\n", r, a, b / k, x, c, d / k, y, y / x }'
done
awk -v a="$tot_off_n" -v b="$tot_off_t" -v c="$tot_on_n" -v d="$tot_on_t" -v k="$TICKS" 'BEGIN {
  x = a / (b / k); y = c / (d / k);
  printf "| all | %d | %.2f | %.0f | %d | %.2f | %.0f | %.3f |\n", a, b / k, x, c, d / k, y, y / x
  printf "\nCPU per request: %.2f us off, %.2f us on (%+.1f %%)\n", 1e6 / x, 1e6 / y, (x / y - 1) * 100 }'
# The median of the rounds' ratios: rounds are paired (on, then off, a few
# seconds apart), so a neighbour's load on this shared machine shifts both.
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ r[NR] = $1 } END {
  m = (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
  printf "median of the rounds: on/off %.3f, CPU per request %+.1f %%\n", m, (1 / m - 1) * 100 }'

[ "${BIG:-1}" = 1 ] || exit 0
# A scrape of 100 clusters x 10 endpoints (nothing listens there; no
# request is sent to them, only their series are exported).
ADMIN=$(free_port); PORT=$(free_port)
{
  echo "[dataplane]"; echo "shards = 2"
  echo "[admin]"; echo "address = \"127.0.0.1:$ADMIN\""
  echo "[[listeners]]"; echo "name = \"l\""; echo "address = \"127.0.0.1:$PORT\""
  for c in $(seq 0 99); do
    echo "[[routes]]"; echo "listener = \"l\""; echo "cluster = \"c$c\""
    echo "[routes.match]"; echo "path_prefix = \"/c$c/\""
  done
  for c in $(seq 0 99); do
    echo "[[clusters]]"; echo "name = \"c$c\""
    printf 'endpoints = ['
    for e in $(seq 0 9); do printf '"127.0.%d.%d:9"%s' "$(( c / 25 + 10 ))" "$(( (c % 25) * 10 + e + 1 ))" "$([ "$e" -lt 9 ] && echo , )"; done
    echo "]"
  done
} > "$W/big.toml"
"$BIN/meshgate" check --config "$W/big.toml" > /dev/null || die "the 1,000-endpoint config does not validate"
"$BIN/meshgate" run --config "$W/big.toml" --log-level warn > "$W/gateway-big.log" 2>&1 &
BIG=$!; pids+=($BIG)
wait_port "$ADMIN" admin "$BIG"
# Traffic on every route, so every per-name family has series.
for c in $(seq 0 99); do curl -s -o /dev/null "http://127.0.0.1:$PORT/c$c/x" || true; done
sleep 1.5
times=()
for _ in $(seq 20); do
  times+=("$(curl -s -o "$W/big.metrics" -w '%{time_total}' "http://127.0.0.1:$ADMIN/metrics")")
done
series=$(grep -vc '^#' "$W/big.metrics")
printf '%s\n' "${times[@]}" | sort -n | awk -v s="$series" '{ t[NR] = $1 } END {
  printf "\n/metrics with 100 clusters x 10 endpoints (100 routes): %d series, %d bytes; 20 scrapes: median %.1f ms, max %.1f ms\n",
    s, 0, t[int((NR + 1) / 2)] * 1000, t[NR] * 1000 }' | sed "s/, 0 bytes/, $(wc -c < "$W/big.metrics") bytes/"
