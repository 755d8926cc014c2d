#!/usr/bin/env bash
# meshbench vs wrk as load generators (issue 4 §4): plain HTTP keep-alive
# against `meshbench upstream --threads 1`, both clients with one thread and
# the same connections, interleaved for R rounds. The upstream runs alone on
# CPU 0, the client on CPU 1; client CPU time from /usr/bin/time. Prints a
# markdown table: req/s and requests per client-CPU-second of each run, and
# the medians. Loopback only; stops what it starts.
set -euo pipefail
ROUNDS=${1:-5}; DURATION=${2:-5}; CONNS=${3:-64}
cd "$(dirname "$0")/.."
need=()
command -v wrk >/dev/null || need+=(wrk)
[ -x /usr/bin/time ] || need+=(time)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >&2
fi
cargo build --release -p meshbench >&2
MB=$PWD/target/release/meshbench
W=$(mktemp -d)
taskset -c 0 "$MB" upstream --listen 127.0.0.1:0 --threads 1 >"$W/up.out" 2>&1 &
UP=$!
trap 'kill $UP 2>/dev/null || true; rm -rf "$W"' EXIT
for _ in $(seq 100); do grep -q '^listening ' "$W/up.out" && break; sleep 0.05; done
ADDR=$(sed -n 's/^listening //p' "$W/up.out")
URL="http://$ADDR/"
echo "| round | tool | requests | req/s | client CPU s | requests per client-CPU-s |"
echo "|---|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  for tool in meshbench wrk; do
    if [ "$tool" = meshbench ]; then
      /usr/bin/time -f '%U %S' -o "$W/time" taskset -c 1 "$MB" "$URL" -c "$CONNS" -d "${DURATION}s" --threads 1 -q --json "$W/mb.json" >/dev/null
      req=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests"])' "$W/mb.json")
    else
      /usr/bin/time -f '%U %S' -o "$W/time" taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" "$URL" >"$W/wrk.out"
      req=$(awk '/requests in/ {print $1}' "$W/wrk.out")
    fi
    cpu=$(awk '{print $1 + $2}' "$W/time")
    printf '| %s | %s | %s | %.0f | %.2f | %.0f |\n' "$r" "$tool" "$req" \
      "$(echo "$req / $DURATION" | bc -l)" "$cpu" "$(echo "$req / $cpu" | bc -l)"
    echo "$tool $(echo "$req / $cpu" | bc -l)" >>"$W/per-cpu"
  done
done
for tool in meshbench wrk; do
  printf '%s median requests per client-CPU-s: %.0f\n' "$tool" \
    "$(awk -v t="$tool" '$1 == t {print $2}' "$W/per-cpu" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')"
done
