#!/usr/bin/env bash
# Proof under faults (issue 5 §6): replays the fault scenarios against the
# release `meshgate` with `meshbench` and `meshbench upstream`, and prints
# one markdown table of what happened. Loopback only; every process it
# starts is stopped (by PID) on exit.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/chaos.sh [--duration SECS] [--only LIST] [--out DIR] [--no-build]

Scenarios (all through a 2-shard meshgate, plain HTTP, 8 connections):
  kill     3 upstreams, one SIGKILLed at 1/3 of the run and restarted at 2/3;
           retries on connect-failure/reset + outlier ejection + health checks.
           Reports failed requests and how long the restarted upstream took
           to get traffic again (health interval 500 ms, base ejection 1 s).
  slow     3 upstreams, one answering after 500 ms; least_request alone vs.
           least_request + per-try timeout 100 ms + 2 retries: p50/p99.
  flaky    3 upstreams, one failing 50% with 503; round robin (least_request
           would steer around it by itself), outlier ejection and retry on
           503: client-visible 5xx and the flaky one's share of tries.
  burst    rate limit 1000 rps; offered 3000 and 5000 rps: admitted rate vs. limit.
  breaker  upstream answering after 200 ms; max_requests 16; 64 connections
           in a closed loop, twice: 503 overloaded share, latency, gateway
           RSS at start and after each run (the receive-buffer rings, 16 MiB
           per shard, are touched as traffic arrives; growth must stop there).

Options:
  --duration SECS  length of each measured run (default 9)
  --only LIST      comma-separated subset (default kill,slow,flaky,burst,breaker)
  --out DIR        keep configs, logs and JSON reports in DIR
  --no-build       use the existing target/release binaries

Needs Debian/Ubuntu (installs bc and python3 when missing) and cargo.
EOF
}

cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=9; ONLY=kill,slow,flaky,burst,breaker; OUT=""; BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
# bc and python3 read the numbers; installed from the distribution when missing.
need=()
command -v bc >/dev/null || need+=(bc)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "chaos: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >&2
fi
if [ -z "$OUT" ]; then OUT=$(mktemp -d); fi
mkdir -p "$OUT"
if [ "$BUILD" = 1 ]; then
  cargo build --release --bin meshgate --bin meshctl --bin meshbench >&2
fi
MG=$ROOT/target/release/meshgate
CTL=$ROOT/target/release/meshctl
MB=$ROOT/target/release/meshbench

PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT

log() { echo "chaos: $*" >&2; }

# upstream NAME ARGS... : starts `meshbench upstream`, sets UP_<NAME>_ADDR/PID.
upstream() {
  local name=$1; shift
  local listen=${LISTEN:-127.0.0.1:0}
  "$MB" upstream --listen "$listen" --report-file "$OUT/$name.served" "$@" \
    >"$OUT/$name.out" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 100); do
    if grep -q '^listening ' "$OUT/$name.out" 2>/dev/null; then break; fi
    sleep 0.05
  done
  local addr
  addr=$(sed -n 's/^listening //p' "$OUT/$name.out" | head -1)
  [ -n "$addr" ] || { echo "upstream $name did not start" >&2; exit 1; }
  printf -v "UP_${name}_ADDR" '%s' "$addr"
  printf -v "UP_${name}_PID" '%s' "$pid"
}

served() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["served"])' "$1" 2>/dev/null || echo 0; }

# gateway NAME TOML : starts meshgate with a 2-shard config, sets GW_URL/GW_PID.
gateway() {
  local name=$1 body=$2
  cat >"$OUT/$name.toml" <<EOF
[dataplane]
shards = 2
[control]
socket = "$OUT/$name.sock"
[[listeners]]
name = "main"
address = "127.0.0.1:0"
$body
EOF
  "$MG" run --config "$OUT/$name.toml" >"$OUT/$name.gw.out" 2>"$OUT/$name.gw.log" &
  GW_PID=$!
  PIDS+=("$GW_PID")
  for _ in $(seq 100); do
    if grep -q '^listening main http ' "$OUT/$name.gw.out" 2>/dev/null; then break; fi
    sleep 0.05
  done
  GW_ADDR=$(sed -n 's/^listening main http \(.*\)$/http:\/\/\1/p' "$OUT/$name.gw.out" | head -1)
  [ -n "$GW_ADDR" ] || { cat "$OUT/$name.gw.log" >&2; echo "gateway $name did not start" >&2; exit 1; }
  GW_URL="$GW_ADDR/"
  GW_SOCK="$OUT/$name.sock"
}

stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# field FILE EXPR : a value from a meshbench JSON report.
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"; }

ROWS=()
row() { ROWS+=("| $1 | $2 | $3 |"); }

want() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

if want kill; then
  log "kill: 3 upstreams, one killed mid-load and restarted"
  upstream k0 --tag k0; upstream k1 --tag k1; upstream k2 --tag k2
  gateway kill "
[[routes]]
listener = \"main\"
cluster = \"backend\"
[routes.retry]
attempts = 2
on = [\"connect-failure\", \"reset\", \"503\"]
[[clusters]]
name = \"backend\"
endpoints = [\"$UP_k0_ADDR\", \"$UP_k1_ADDR\", \"$UP_k2_ADDR\"]
[clusters.health]
path = \"/healthz\"
interval_ms = 500
timeout_ms = 200
[clusters.outlier]
consecutive_failures = 3
base_ejection_ms = 1000"
  "$MB" -q -c 8 -d "${DURATION}s" "$GW_URL" --json "$OUT/kill.json" >"$OUT/kill.txt" &
  BENCH=$!; PIDS+=("$BENCH")
  sleep "$(echo "$DURATION / 3" | bc -l)"
  kill -9 "$UP_k1_PID"; wait "$UP_k1_PID" 2>/dev/null || true
  sleep "$(echo "$DURATION / 3" | bc -l)"
  rm -f "$OUT/k1.served"
  LISTEN=$UP_k1_ADDR upstream k1 --tag k1
  restarted=$(date +%s.%N)
  back=""
  while kill -0 "$BENCH" 2>/dev/null; do
    if [ "$(served "$OUT/k1.served")" -gt 0 ]; then back=$(date +%s.%N); break; fi
    sleep 0.05
  done
  wait "$BENCH" || true
  total=$(field "$OUT/kill.json" 'r["requests"]+r["errors"]')
  failed=$(field "$OUT/kill.json" 'r["errors"]+r["status"]["5xx"]')
  pct=$(echo "scale=4; 100 * $failed / $total" | bc -l)
  row "kill 1 of 3 mid-load (retries + outlier + health)" "$failed failed of $total requests (${pct}%)" \
      "restarted upstream served again after $( [ -n "$back" ] && printf '%.2f s' "$(echo "$back - $restarted" | bc -l)" || echo 'not within the run' )"
  stop_pid "$GW_PID"; stop_pid "$UP_k0_PID"; stop_pid "$UP_k1_PID"; stop_pid "$UP_k2_PID"
fi

if want slow; then
  log "slow: one of three upstreams answers after 500 ms"
  upstream s0 --tag s0; upstream s1 --tag s1; upstream s2 --tag s2 --delay-ms 500
  for mode in plain retry; do
    extra=""
    if [ "$mode" = retry ]; then
      extra="[routes.retry]
attempts = 2
on = [\"timeout\"]
per_try_timeout_ms = 100
backoff_base_ms = 1
backoff_max_ms = 5"
    fi
    gateway "slow-$mode" "
[[routes]]
listener = \"main\"
cluster = \"backend\"
$extra
[[clusters]]
name = \"backend\"
endpoints = [\"$UP_s0_ADDR\", \"$UP_s1_ADDR\", \"$UP_s2_ADDR\"]
lb = \"least_request\""
    "$MB" -q -c 8 --rate 400 -d "${DURATION}s" "$GW_URL" --json "$OUT/slow-$mode.json" >"$OUT/slow-$mode.txt" || true
    p50=$(field "$OUT/slow-$mode.json" 'r["latency_ms"]["p50"]')
    p99=$(field "$OUT/slow-$mode.json" 'r["latency_ms"]["p99"]')
    bad=$(field "$OUT/slow-$mode.json" 'r["errors"]+r["status"]["5xx"]')
    label="least_request alone"
    [ "$mode" = retry ] && label="least_request + per-try 100 ms, 2 retries"
    row "one upstream slow (500 ms), 400 req/s: $label" "p50 ${p50} ms, p99 ${p99} ms" "$bad failed"
    stop_pid "$GW_PID"
  done
  stop_pid "$UP_s0_PID"; stop_pid "$UP_s1_PID"; stop_pid "$UP_s2_PID"
fi

if want flaky; then
  log "flaky: one of three upstreams fails 50% with 503"
  upstream f0 --tag f0; upstream f1 --tag f1; upstream f2 --tag f2 --fail-rate 0.5
  gateway flaky "
[[routes]]
listener = \"main\"
cluster = \"backend\"
[routes.retry]
attempts = 2
on = [\"503\"]
[[clusters]]
name = \"backend\"
endpoints = [\"$UP_f0_ADDR\", \"$UP_f1_ADDR\", \"$UP_f2_ADDR\"]
lb = \"round_robin\"
[clusters.outlier]
consecutive_failures = 3
base_ejection_ms = 30000"
  "$MB" -q -c 8 -d "${DURATION}s" "$GW_URL" --json "$OUT/flaky.json" >"$OUT/flaky.txt" || true
  sleep 0.3
  total=$(field "$OUT/flaky.json" 'r["requests"]+r["errors"]')
  bad=$(field "$OUT/flaky.json" 'r["errors"]+r["status"]["5xx"]')
  s0=$(served "$OUT/f0.served"); s1=$(served "$OUT/f1.served"); s2=$(served "$OUT/f2.served")
  f2fail=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["failed_503"])' "$OUT/f2.served")
  share=$(echo "scale=3; 100 * ($s2 + $f2fail) / ($s0 + $s1 + $s2 + $f2fail)" | bc -l)
  counters=$("$CTL" --socket "$GW_SOCK" --json stats | python3 -c 'import json,sys; t=json.load(sys.stdin)["total"]; print("ejections %d, retries %d, retry overflows %d" % (t["outlier_ejections"], t["retries"], t["retry_overflows"]))')
  row "one upstream 50% 503 (outlier + retry on 503)" "$bad client-visible failures of $total" \
      "flaky upstream got ${share}% of tries ($counters)"
  stop_pid "$GW_PID"; stop_pid "$UP_f0_PID"; stop_pid "$UP_f1_PID"; stop_pid "$UP_f2_PID"
fi

if want burst; then
  log "burst: 5x over a 1000 rps limit"
  upstream b0
  gateway burst "
[[routes]]
listener = \"main\"
cluster = \"backend\"
[routes.rate_limit]
rps = 1000
burst = 100
[[clusters]]
name = \"backend\"
endpoints = [\"$UP_b0_ADDR\"]"
  for offered in 3000 5000; do
    # Let the bucket refill between the runs.
    sleep 1
    "$MB" -q -c 32 --rate "$offered" -d "${DURATION}s" "$GW_URL" --json "$OUT/burst-$offered.json" >"$OUT/burst-$offered.txt" || true
    ok=$(field "$OUT/burst-$offered.json" 'r["status"]["2xx"]')
    limited=$(field "$OUT/burst-$offered.json" 'r["status"]["4xx"]')
    dur=$(field "$OUT/burst-$offered.json" 'r["duration_s"]')
    rate=$(echo "scale=1; ($ok - 100) / $dur" | bc -l)
    row "$((offered / 1000))x over rate_limit rps=1000 burst=100 ($offered req/s offered)" "admitted ${rate}/s after the burst (${ok} in ${dur} s)" "$limited answered 429"
  done
  stop_pid "$GW_PID"; stop_pid "$UP_b0_PID"
fi

if want breaker; then
  log "breaker: slow upstream, max_requests 16, 64 connections"
  upstream c0 --delay-ms 200 --threads 2
  gateway breaker "
[[routes]]
listener = \"main\"
cluster = \"backend\"
[[clusters]]
name = \"backend\"
endpoints = [\"$UP_c0_ADDR\"]
[clusters.limits]
max_requests = 16"
  rss0=$(awk '/VmRSS/ {print $2}' "/proc/$GW_PID/status")
  "$MB" -q -c 64 -d "${DURATION}s" "$GW_URL" --json "$OUT/breaker0.json" >"$OUT/breaker0.txt" || true
  rss1=$(awk '/VmRSS/ {print $2}' "/proc/$GW_PID/status")
  # A second run: memory must not keep growing with the shed requests.
  "$MB" -q -c 64 -d "${DURATION}s" "$GW_URL" --json "$OUT/breaker.json" >"$OUT/breaker.txt" || true
  rss2=$(awk '/VmRSS/ {print $2}' "/proc/$GW_PID/status")
  ok=$(field "$OUT/breaker.json" 'r["status"]["2xx"]')
  shed=$(field "$OUT/breaker.json" 'r["status"]["5xx"]')
  p50=$(field "$OUT/breaker.json" 'r["latency_ms"]["p50"]')
  row "circuit breaker max_requests=16, 64 conns vs 200 ms upstream" "$ok served (≈16 in flight × 5/s), $shed shed with 503 overloaded; p50 ${p50} ms" "RSS ${rss0} → ${rss1} → ${rss2} KiB (start, after run 1, after run 2)"
  stop_pid "$GW_PID"; stop_pid "$UP_c0_PID"
fi

echo "| scenario | result | also |"
echo "|---|---|---|"
for r in "${ROWS[@]}"; do echo "$r"; done
log "details in $OUT"
