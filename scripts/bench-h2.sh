#!/usr/bin/env bash
# HTTP/2 vs HTTP/1.1 through one gateway shard: requests per gateway
# CPU-second for keep-alive HTTP/1.1, HTTP/2 with one stream per
# connection, and HTTP/2 multiplexed, over mTLS to the same origin.
# Usage: scripts/bench-h2.sh [SECONDS]   (release build of meshgate and meshbench)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
bin=target/release
dir=$(mktemp -d)
trap 'kill $gw $up 2>/dev/null || true; rm -rf "$dir"' EXIT
# Certificates and a config from quickstart (which exits at the timeout).
timeout 3 $bin/meshgate quickstart --dir "$dir" --listen 127.0.0.1:0 >/dev/null 2>&1 || true
$bin/meshbench upstream --listen 127.0.0.1:0 --body-size 64 > "$dir/up.out" &
up=$!
until grep -q listening "$dir/up.out" 2>/dev/null; do sleep 0.1; done
upaddr=$(awk '/listening/ {print $2}' "$dir/up.out")
sed -i -e 's/^shards = .*/shards = 1/' -e '/^access_log/d' -e '/^\[admin\]/,/^$/d' \
  -e "s/^endpoints = .*/endpoints = [\"$upaddr\"]/" \
  -e 's/^client_auth = "require"/client_auth = "require"\nalpn = ["h2", "http\/1.1"]/' "$dir/meshgate.toml"
$bin/meshgate run --config "$dir/meshgate.toml" > "$dir/gw.out" 2>"$dir/gw.err" &
gw=$!
until grep -q "^listening" "$dir/gw.out" 2>/dev/null; do sleep 0.1; done
addr=$(awk '/^listening/ {print $4}' "$dir/gw.out")
tls=(--cacert "$dir/ca.pem" --cert "$dir/client.pem" --key "$dir/client.key")
cpu() { awk '{print $14 + $15}' "/proc/$gw/stat"; }
tck=$(getconf CLK_TCK)
run() {
  local name=$1; shift
  local before after out
  before=$(cpu)
  out=$($bin/meshbench "https://$addr/bench" "${tls[@]}" -d "${secs}s" "$@" 2>&1)
  after=$(cpu)
  echo "== $name"
  echo "$out" | tail -n 12 | sed 's/^/    /'
  echo "    gateway CPU: $(( (after - before) * 1000 / tck )) ms"
}
run "http/1.1 16 conns" -c 16
run "h2 16 conns x 1 stream" -c 16 --h2
run "h2 4 conns x 16 streams" -c 4 --h2 --streams 16
