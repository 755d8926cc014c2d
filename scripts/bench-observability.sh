#!/usr/bin/env bash
# What observability costs: gateway CPU per keep-alive request with nothing
# on (no admin listener, no access log, no tracing) against everything on
# (the admin listener scraped every second, a JSON access log of every
# request to a file, 1 % of requests traced and their spans posted as OTLP
# protobuf to a collector on loopback). Each round runs the two gateways
# at the same time, pinned to the same core and each driven by its own
# meshbench, so the noise of this shared machine falls on both alike (run
# one after the other, an A/A test of two identical gateways differed by
# ±20 % a round). The gateway's CPU is read from /proc (all its threads:
# shard, control, admin, access-log writer, span exporter). Then how long a
# /metrics scrape of a config with 1,000 endpoints takes. Loopback only;
# stops what it started.
#
# Usage: scripts/bench-observability.sh [ROUNDS] [SECONDS]
# RATE=N drives N requests a second (each gateway) instead of closed loop.
# ON="scrape log trace" (the default) picks what "on" turns on, to measure
# one alone (ON=none: an A/A test). BIG=0 skips the 1,000-endpoint scrape.
# ON_ENV="NAME=VALUE ..." sets environment variables of the "on" gateway
# only (e.g. ON=none ON_ENV=MIMALLOC_PURGE_DELAY=-1: what an allocator
# setting is worth).
# PERF=FILE records the last round's "on" gateway with `perf record -g`
# (PERF_CG="--call-graph dwarf" for call graphs), and the "off" one into
# FILE.off, to compare the two.
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

# One gateway, observability on or off: writes its config, starts it
# (pinned to core 0) and, when on, its scraper; prints "PID PORT SCRAPER".
start_gateway() { # on|off round
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
  local env=()
  [ "$mode" = on ] && [ -n "${ON_ENV:-}" ] && env=(env $ON_ENV)
  taskset -c 0 "${env[@]}" "$BIN/meshgate" run --config "$conf" --log-level warn > "$W/gateway-$mode-$2.log" 2>&1 &
  local gw=$!
  wait_port "$port" meshgate "$gw"
  local scraper=0
  if [ "$mode" = on ] && has scrape; then
    wait_port "$admin" admin "$gw"
    ( while :; do curl -s -o /dev/null "http://127.0.0.1:$admin/metrics"; sleep 1; done ) > /dev/null 2>&1 &
    scraper=$!
  fi
  echo "$gw $port $scraper"
}

# One round: both gateways run at the same time on the same core, each
# driven closed loop by its own meshbench for SECS, so whatever else this
# shared machine does falls on both alike; prints "on_req on_ticks off_req
# off_ticks".
round() { # round
  local on off
  on=$(start_gateway on "$1"); off=$(start_gateway off "$1")
  read -r on_gw on_port on_scraper <<< "$on"
  read -r off_gw off_port off_scraper <<< "$off"
  pids+=("$on_gw" "$off_gw"); [ "$on_scraper" = 0 ] || pids+=("$on_scraper")
  local perf="" perf_off=""
  if [ -n "${PERF:-}" ] && [ "$1" = "$ROUNDS" ]; then
    perf record ${PERF_CG:--g} -o "$PERF" -p "$on_gw" -- sleep "$SECS" > /dev/null 2>&1 &
    perf=$!
    perf record ${PERF_CG:--g} -o "$PERF.off" -p "$off_gw" -- sleep "$SECS" > /dev/null 2>&1 &
    perf_off=$!
  fi
  local on_before off_before
  on_before=$(cpu_ticks "$on_gw"); off_before=$(cpu_ticks "$off_gw")
  taskset -c 1 "$BIN/meshbench" "http://127.0.0.1:$on_port/" -c 16 -d "${SECS}s" --threads 1 -q $LOAD \
    --json "$W/on-$1.json" > /dev/null 2>&1 &
  local on_bench=$!
  taskset -c 1 "$BIN/meshbench" "http://127.0.0.1:$off_port/" -c 16 -d "${SECS}s" --threads 1 -q $LOAD \
    --json "$W/off-$1.json" > /dev/null 2>&1 &
  local off_bench=$!
  wait "$on_bench" "$off_bench" || true
  local on_after off_after
  on_after=$(cpu_ticks "$on_gw"); off_after=$(cpu_ticks "$off_gw")
  [ -n "$perf" ] && wait "$perf" "$perf_off"
  [ "$on_scraper" = 0 ] || kill "$on_scraper" 2>/dev/null
  # Not this shell's children (started in a command substitution): poll
  # until they are gone, so the access log is flushed and closed.
  kill "$on_gw" "$off_gw"
  while kill -0 "$on_gw" 2>/dev/null || kill -0 "$off_gw" 2>/dev/null; do sleep 0.05; done
  local mode n errors out=""
  for mode in on off; do
    n=$(field requests "$W/$mode-$1.json"); errors=$(field errors "$W/$mode-$1.json")
    [ "${errors:-1}" = 0 ] || die "$mode round $1: $errors errors (see $W)"
    if [ "$mode" = on ] && has log; then
      local lines; lines=$(wc -l < "$W/access-$1.log")
      [ "$lines" -ge "$n" ] || die "on round $1: $lines log lines for $n requests"
    fi
    if [ "$mode" = on ]; then out="$n $(( on_after - on_before ))"; else out="$out $n $(( off_after - off_before ))"; fi
  done
  echo "$out"
}

echo "on: $ON"
echo
echo "| round | off: req | off: CPU s | off: req/CPU-s | on: req | on: CPU s | on: req/CPU-s | on/off |"
echo "|---|---|---|---|---|---|---|---|"
tot_off_n=0; tot_off_t=0; tot_on_n=0; tot_on_t=0; ratios=()
for r in $(seq "$ROUNDS"); do
  read -r on_n on_t off_n off_t < <(round "$r")
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
# The median of the rounds' ratios (each round measures both at once).
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
