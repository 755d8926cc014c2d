#!/usr/bin/env bash
# Side-by-side benchmark (issue 4 §5, issue 13 §5): meshgate (1 shard),
# nginx (1 worker), HAProxy (nbthread 1) and Caddy (GOMAXPROCS=1),
# configured alike as mTLS terminators (HTTP/1.1 and HTTP/2 by ALPN) in
# front of the same `meshbench upstream`s, measured with `meshbench` in one
# run, interleaved. Prints one markdown table on stdout (progress on stderr).
#
# Supersedes scripts/bench-first.sh (ApacheBench: HTTP/1.0, no open loop, no
# percentiles, no 1 MiB scenario, nginx as both origin and peer).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/bench-peers.sh [options]

Runs, against meshgate, nginx, HAProxy and Caddy (each an mTLS terminator
pinned alone on CPU 0), round-robin within each scenario, R rounds:
  ka   keep-alive, 16-byte responses          -c 64
  hs   new full mTLS handshake per request    --new-conn --no-resume -c 8
  big  1 MiB responses, keep-alive            -c 8
  lat  fixed rate, latency                    --rate 2000 -c 16  (+ "direct":
       the same load straight at the upstream, plain HTTP)
  h2   HTTP/2 multiplexed, 16-byte responses  --h2 -c 64 --streams 16
       (HTTP/1.1 to the upstream)
  grpc gRPC-shaped unary calls over HTTP/2    --h2 -c 16 --streams 16, POST
       application/grpc, a 5+16-byte message; the upstream speaks h2c
       (meshbench upstream --h2c) and answers a message and grpc-status
and prints one markdown table. Load client (meshbench, 1 thread) and the
upstreams (meshbench upstream, 1 thread each) share CPU 1.

Options:
  --rounds R         rounds per scenario (default 3)
  --duration D       length of each measured run: 500ms, 10s, 1m (default 10s)
  --warmup D         unmeasured warm-up per proxy before the scenarios (default 2s)
  --scenarios LIST   comma-separated subset of ka,hs,big,lat,h2,grpc (default all)
  --proxies LIST     comma-separated subset of nginx,haproxy,caddy,meshgate (default all)
  --rate R           request rate of the lat scenario (default 2000)
  --body-size N      small response body size (default 16)
  --out DIR          keep configs, logs, per-run JSON and HDR files in DIR
  --no-build         use the existing target/release binaries
  --baseline BIN     also run this meshgate binary (another commit's build) as
                     proxy "meshgate-base", same config, in the same rounds
  --authz-rules N    give proxy "meshgate" (not meshgate-base) N authorization
                     rules on the route every small request takes: N/2 deny
                     rules that do not match, then N/2 allow rules of which
                     only the last matches the client (the worst case)
  --plot FILE        write the latency percentile curves (SVG, `meshbench
                     plot`) of the fixed-rate scenario: the last round of
                     each proxy and of "direct"
  -h, --help         this text

Needs: Debian/Ubuntu (apt-get), 2+ CPUs, cargo. Installs nginx-light,
haproxy, caddy, bc and openssl when missing (sudo when not root). Loopback only;
every process it starts is stopped on exit.
EOF
}

cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=3; DURATION=10s; WARMUP=2s; SCENARIOS=ka,hs,big,lat,h2,grpc; PROXIES=nginx,haproxy,caddy,meshgate
RATE=2000; BODY=16; BIG=1048576; OUT=""; BUILD=1; PLOT=""; BASELINE=""; AUTHZ_RULES=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --proxies) PROXIES=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --body-size) BODY=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --baseline) BASELINE=$2; shift 2 ;;
    --authz-rules) AUTHZ_RULES=$2; shift 2 ;;
    --plot) PLOT=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '%s\n' "$*" >&2; }
die() { log "bench-peers: $*"; exit 1; }

secs_of() { # 500ms | 10s | 2m | 10 -> whole seconds, rounded up
  case "$1" in
    *ms) echo $(( (${1%ms} + 999) / 1000 )) ;;
    *s) echo "${1%s}" ;;
    *m) echo $(( ${1%m} * 60 )) ;;
    *) echo "$1" ;;
  esac
}
DUR_S=$(secs_of "$DURATION"); [[ "$DUR_S" =~ ^[0-9]+$ ]] || die "bad --duration $DURATION"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "bad --rounds $ROUNDS"
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (proxy on CPU 0, client+upstream on CPU 1)"

# --- packages ------------------------------------------------------------------
export PATH="$PATH:/usr/sbin:/sbin"
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
case ",$PROXIES," in *,caddy,*) command -v caddy >/dev/null || need+=(caddy) ;; esac
command -v openssl >/dev/null || need+=(openssl)
command -v bc >/dev/null || need+=(bc)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >&2
fi

# --- build -----------------------------------------------------------------------
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
if [ "$BUILD" = 1 ]; then
  log "building meshgate and meshbench (release)"
  cargo build --release -p meshbench -p meshgate-control >&2
fi
MESHGATE="$BIN/meshgate"; MESHBENCH="$BIN/meshbench"
[ -x "$MESHGATE" ] && [ -x "$MESHBENCH" ] || die "missing $MESHGATE or $MESHBENCH"

# --- work dir and cleanup ------------------------------------------------------
if [ -n "$OUT" ]; then mkdir -p "$OUT"; W=$(cd "$OUT" && pwd); else W=$(mktemp -d /tmp/bench-peers.XXXXXX); fi
chmod 755 "$W"   # nginx workers may run as an unprivileged user
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.3
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  [ -z "$OUT" ] && rm -rf "$W"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=scripts/lib/bench-common.sh
. "$ROOT/scripts/lib/bench-common.sh"

# --- certificates: ECDSA P-256 CA, server (localhost, 127.0.0.1), SPIFFE client --
cd "$W"
make_bench_pki

# --- upstreams: meshbench upstream, 1 thread each, on CPU 1 ----------------------
start_upstream() { # name body-size [extra args] -> sets UP_PORT
  taskset -c 1 "$MESHBENCH" upstream --listen 127.0.0.1:0 --threads 1 --body-size "$2" --tag "$1" "${@:3}" \
    > "upstream-$1.out" 2> "upstream-$1.err" &
  pids+=($!)
  for _ in $(seq 100); do
    UP_PORT=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' "upstream-$1.out" | head -1)
    [ -n "$UP_PORT" ] && return 0
    sleep 0.1
  done
  die "upstream $1 did not start: $(cat "upstream-$1.err")"
}
start_upstream small "$BODY"; UP_SMALL=$UP_PORT
start_upstream big "$BIG"; UP_BIG=$UP_PORT
start_upstream grpc "$BODY" --h2c; UP_GRPC=$UP_PORT
# One gRPC message: uncompressed, 4-byte big-endian length, then the bytes.
printf '\000\000\000\000\020' > grpc-msg.bin; head -c 16 /dev/zero | tr '\0' 'x' >> grpc-msg.bin

# --- proxies, each on CPU 0 --------------------------------------------------------
declare -A PORT PROC
IFS=, read -r -a proxy_list <<< "$PROXIES"
if [ -n "$BASELINE" ]; then
  [ -x "$BASELINE" ] || die "--baseline $BASELINE is not an executable"
  proxy_list+=(meshgate-base)
fi
IFS=, read -r -a scenario_list <<< "$SCENARIOS"

start_nginx() {
  local port; port=$(free_port); mkdir -p nginx
  cat > nginx/nginx.conf <<CONF
worker_processes 1;
daemon off;
master_process on;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $W/nginx; proxy_temp_path $W/nginx; fastcgi_temp_path $W/nginx;
  uwsgi_temp_path $W/nginx; scgi_temp_path $W/nginx;
  keepalive_requests 1000000; keepalive_timeout 60s;
  # 1024 idle: the h2 scenario has 64 x 16 requests in flight.
  upstream small { server 127.0.0.1:$UP_SMALL; keepalive 1024; keepalive_requests 1000000; }
  upstream big   { server 127.0.0.1:$UP_BIG;   keepalive 64; keepalive_requests 1000000; }
  upstream grpc  { server 127.0.0.1:$UP_GRPC;  keepalive 64; keepalive_requests 1000000; }
  http2_max_requests 1000000;
  server {
    listen 127.0.0.1:$port ssl http2;
    ssl_certificate $W/server.pem; ssl_certificate_key $W/server.key;
    ssl_client_certificate $W/ca.pem; ssl_verify_client on;
    ssl_protocols TLSv1.3; ssl_ecdh_curve X25519:prime256v1; ssl_session_tickets on;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$http_host;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_set_header X-Request-Id \$request_id;
    proxy_set_header X-Forwarded-Client-Cert "Hash=\$ssl_client_fingerprint;Subject=\"\$ssl_client_s_dn\"";
    proxy_max_temp_file_size 0;
    location /big { proxy_pass http://big; }
    location /bench.Svc/ { grpc_pass grpc://grpc; }
    location /    { proxy_pass http://small; }
  }
}
CONF
  nginx -t -q -c "$W/nginx/nginx.conf" 2>nginx/check.err || die "nginx config: $(cat nginx/check.err)"
  taskset -c 0 nginx -c "$W/nginx/nginx.conf" 2>>nginx/error.log &
  pids+=($!); PROC[nginx]=$!; PORT[nginx]=$port
}

start_haproxy() {
  local port; port=$(free_port); mkdir -p haproxy
  cat > haproxy/haproxy.cfg <<CONF
global
  nbthread 1
  maxconn 8000
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 15s
  timeout http-request 10s
  timeout http-keep-alive 60s
  option http-keep-alive
  option forwardfor
  # reuse idle upstream connections for every request, as meshgate's pool
  # and nginx's keepalive do (the default "safe" opens a new one for the
  # first request of each client connection)
  http-reuse always
frontend mtls
  bind 127.0.0.1:$port ssl crt $W/haproxy.pem ca-file $W/ca.pem verify required ssl-min-ver TLSv1.3 curves X25519:P-256 alpn h2,http/1.1
  http-request set-header X-Forwarded-Proto https
  http-request set-header X-Request-Id %[uuid]
  http-request set-header X-Forwarded-Client-Cert "Hash=%[ssl_c_sha1,hex];Subject=\"%[ssl_c_s_dn]\""
  use_backend big if { path_beg /big }
  use_backend grpc if { path_beg /bench.Svc/ }
  default_backend small
backend small
  server s1 127.0.0.1:$UP_SMALL
backend big
  server b1 127.0.0.1:$UP_BIG
backend grpc
  server g1 127.0.0.1:$UP_GRPC proto h2
CONF
  haproxy -c -q -f haproxy/haproxy.cfg >haproxy/check.err 2>&1 || die "haproxy config: $(cat haproxy/check.err)"
  taskset -c 0 haproxy -db -f "$W/haproxy/haproxy.cfg" > haproxy/out.log 2>&1 &
  pids+=($!); PROC[haproxy]=$!; PORT[haproxy]=$port
}

start_caddy() {
  local port; port=$(free_port); mkdir -p caddy
  cat > caddy/Caddyfile <<CONF
{
  admin off
  auto_https off
  storage file_system $W/caddy
  log {
    output discard
  }
  servers {
    protocols h1 h2
    # Clients reach it by IP address (no SNI); with client_auth on, Caddy
    # would otherwise answer 421 to a Host that does not match the SNI.
    strict_sni_host insecure_off
  }
}
https://localhost:$port {
  bind 127.0.0.1
  tls $W/server.pem $W/server.key {
    protocols tls1.3
    curves x25519 secp256r1
    client_auth {
      mode require_and_verify
      trusted_ca_cert_file $W/ca.pem
    }
  }
  reverse_proxy /big* 127.0.0.1:$UP_BIG
  reverse_proxy /bench.Svc/* h2c://127.0.0.1:$UP_GRPC
  reverse_proxy 127.0.0.1:$UP_SMALL {
    header_up X-Forwarded-Client-Cert "Hash={http.request.tls.client.fingerprint}"
    transport http {
      keepalive_idle_conns_per_host 1024
    }
  }
}
CONF
  caddy validate --adapter caddyfile --config caddy/Caddyfile >caddy/check.err 2>&1 \
    || die "caddy config: $(tail -5 caddy/check.err)"
  HOME=$W/caddy XDG_DATA_HOME=$W/caddy XDG_CONFIG_HOME=$W/caddy GOMAXPROCS=1 \
    taskset -c 0 caddy run --adapter caddyfile --config "$W/caddy/Caddyfile" > caddy/out.log 2>&1 &
  pids+=($!); PROC[caddy]=$!; PORT[caddy]=$port
}

authz_rules() { # N -> TOML tables for the small route (the client's ID matches the last allow rule)
  local n=$1 half i
  half=$(( n / 2 ))
  for i in $(seq 1 "$half"); do
    printf '[[routes.authz.deny]]\nspiffe_id = ["spiffe://meshgate.local/ns/blocked-%s/sa/*"]\n' "$i"
  done
  for i in $(seq 1 $(( n - half - 1 ))); do
    printf '[[routes.authz.allow]]\nspiffe_id = ["spiffe://meshgate.local/ns/team-%s/**"]\nmethods = ["GET"]\n' "$i"
  done
  [ "$n" -gt 0 ] && printf '[[routes.authz.allow]]\nspiffe_id = ["spiffe://meshgate.local/ns/default/sa/*"]\nmethods = ["GET"]\n'
  return 0
}

start_meshgate() { # [name binary]: the baseline runs under its own name
  local name=${1:-meshgate} bin=${2:-$MESHGATE} rules=""
  [ "$name" = meshgate ] && rules=$(authz_rules "$AUTHZ_RULES")
  local port; port=$(free_port); mkdir -p "$name"
  # groups: meshgate's default puts x25519mlkem768 first; OpenSSL 3.0 (the
  # peers) has no ML-KEM, so all three are held to x25519/P-256.
  cat > "$name/meshgate.toml" <<CONF
[dataplane]
shards = 1

[[listeners]]
name = "bench"
address = "127.0.0.1:$port"
[listeners.tls]
cert = "$W/server.pem"
key = "$W/server.key"
client_ca = "$W/ca.pem"
client_auth = "require"
min_version = "1.3"
session_tickets = true
groups = ["x25519", "secp256r1"]
alpn = ["h2", "http/1.1"]

[[routes]]
listener = "bench"
cluster = "grpc"
[routes.match]
path_prefix = "/bench.Svc/"

[[routes]]
listener = "bench"
cluster = "big"
[routes.match]
path_prefix = "/big"

[[routes]]
listener = "bench"
cluster = "small"
[routes.match]
path_prefix = "/"
$rules

[[clusters]]
name = "small"
endpoints = ["127.0.0.1:$UP_SMALL"]
[clusters.pool]
max_idle_per_endpoint = 1024

[[clusters]]
name = "big"
endpoints = ["127.0.0.1:$UP_BIG"]
[clusters.pool]
max_idle_per_endpoint = 64

[[clusters]]
name = "grpc"
protocol = "h2c"
endpoints = ["127.0.0.1:$UP_GRPC"]
CONF
  taskset -c 0 "$bin" run --config "$W/$name/meshgate.toml" --log-level warn \
    > "$name/out.log" 2>&1 &
  pids+=($!); PROC[$name]=$!; PORT[$name]=$port
}

for p in "${proxy_list[@]}"; do
  case "$p" in
    nginx|haproxy|caddy|meshgate) "start_$p" ;;
    meshgate-base) start_meshgate meshgate-base "$BASELINE" ;;
    *) die "unknown proxy $p" ;;
  esac
done
for p in "${proxy_list[@]}"; do wait_port "${PORT[$p]}" "$p" "${PROC[$p]}"; done

proc_pids() { # the processes whose CPU counts for proxy $1
  if [ "$1" = nginx ]; then echo "${PROC[nginx]} $(pgrep -P "${PROC[nginx]}" | tr '\n' ' ')"; else echo "${PROC[$1]}"; fi
}
cpu_ticks() { # utime+stime of whole processes (all threads, live and exited), clock ticks
  local total=0 p line f
  for p in "$@"; do
    read -r line < "/proc/$p/stat" || continue
    read -r -a f <<< "${line##*) }"
    total=$(( total + f[11] + f[12] ))
  done
  echo "$total"
}
rss_kib() {
  local total=0 p v
  for p in "$@"; do v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0); total=$((total + ${v:-0})); done
  echo "$total"
}
HZ=$(getconf CLK_TCK)

log ""
log "upstreams: 127.0.0.1:$UP_SMALL ($BODY B) and 127.0.0.1:$UP_BIG ($BIG B), meshbench upstream --threads 1 on CPU 1"
for p in "${proxy_list[@]}"; do
  log "$p: https://127.0.0.1:${PORT[$p]}/  pids $(proc_pids "$p")  affinity $(taskset -pc "${PROC[$p]}" | sed 's/.*: //')"
done
log "NOTE: the load client (meshbench, 1 thread) runs on CPU 1 together with the upstreams;"
log "      on 2 cores there is no better split. Throughput columns are bounded by CPU 1;"
log "      compare proxies on requests per proxy-CPU-second."

# --- sanity: mTLS enforced, TLS 1.3 only, responses OK -------------------------------
# Every client sends SNI "localhost" (the server certificate's name): Caddy
# picks its TLS policy, client authentication included, by SNI.
TLS_ARGS=(--cacert "$W/ca.pem" --cert "$W/client.pem" --key "$W/client.key" --sni localhost)
field() { # json-file key -> number (first occurrence of "key": N)
  sed -n "s/^ *\"$2\": \\([-0-9.eE+]*\\),\\{0,1\\}\$/\\1/p" "$1" | head -1
}
probe() { # proxy label extra-args... -> "2xx errors" (PROBE_PATH: the path, default /)
  local p=$1 label=$2; shift 2
  timeout 30 taskset -c 1 "$MESHBENCH" "https://127.0.0.1:${PORT[$p]}${PROBE_PATH:-/}" -n 1 -c 1 -q --cacert "$W/ca.pem" --sni localhost \
    --json "probe-$p-$label.json" "$@" >/dev/null 2>&1 || true
  echo "$(field "probe-$p-$label.json" 2xx) $(field "probe-$p-$label.json" errors)"
}
for p in "${proxy_list[@]}"; do
  read -r ok err < <(probe "$p" mtls --cert "$W/client.pem" --key "$W/client.key" --tls13)
  [ "$ok" = 1 ] && [ "$err" = 0 ] || die "$p: an mTLS request failed (2xx=$ok errors=$err; logs in $W)"
  read -r ok _ < <(probe "$p" nocert --tls13)
  [ "$ok" = 0 ] || die "$p: served a client without a certificate"
  read -r ok _ < <(probe "$p" tls12 --cert "$W/client.pem" --key "$W/client.key" --tls12)
  [ "$ok" = 0 ] || die "$p: accepted TLS 1.2"
  read -r ok err < <(probe "$p" h2 --cert "$W/client.pem" --key "$W/client.key" --tls13 --h2)
  [ "$ok" = 1 ] && [ "$err" = 0 ] || die "$p: an HTTP/2 request failed (2xx=$ok errors=$err; logs in $W)"
  read -r ok err < <(PROBE_PATH=/bench.Svc/Call probe "$p" grpc --cert "$W/client.pem" --key "$W/client.key" \
    --tls13 --h2 --method POST -H content-type:application/grpc -H te:trailers --body-file "$W/grpc-msg.bin")
  [ "$ok" = 1 ] && [ "$err" = 0 ] || die "$p: a gRPC call failed (2xx=$ok errors=$err; logs in $W)"
  neg=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:${PORT[$p]}" -servername localhost -CAfile ca.pem -cert client.pem \
        -key client.key 2>/dev/null | sed -n 's/^New, \(.*\)$/\1/p; s/^Server Temp Key: \(.*\)$/\1/p' | paste -sd' ')
  log "$p: mTLS ok, no-cert refused, TLS 1.2 refused; openssl s_client negotiates: ${neg:-?}"
done

# --- runs ------------------------------------------------------------------------
RESULTS="$W/runs.tsv"
printf 'scenario\tproxy\tround\trequests\tduration_s\trps\thandshakes_s\tmib_s\tp50\tp99\tp99_9\terrors\tfailed\tcpu_s\trss_kib\n' > "$RESULTS"

scenario_args() { # scenario -> path and meshbench args
  case "$1" in
    ka)  echo "/ -c 64" ;;
    hs)  echo "/ --new-conn --no-resume -c 8" ;;
    big) echo "/big -c 8" ;;
    lat) echo "/ --rate $RATE -c 16" ;;
    h2)  echo "/ --h2 -c 64 --streams 16" ;;
    grpc) echo "/bench.Svc/Call --h2 -c 16 --streams 16 --method POST -H content-type:application/grpc -H te:trailers --body-file $W/grpc-msg.bin" ;;
    *) die "unknown scenario $1" ;;
  esac
}

one_run() { # scenario proxy round duration [record]
  local sc=$1 p=$2 round=$3 dur=$4 record=${5:-1} path args url pids_of before after json tls=()
  read -r path args <<< "$(scenario_args "$sc")"
  if [ "$p" = direct ]; then
    url="http://127.0.0.1:$UP_SMALL$path"; pids_of=""
  else
    url="https://127.0.0.1:${PORT[$p]}$path"; pids_of=$(proc_pids "$p"); tls=("${TLS_ARGS[@]}" --tls13)
  fi
  json="$W/run-$sc-$p-$round.json"
  before=$(cpu_ticks $pids_of)
  # shellcheck disable=SC2086
  timeout $(( $(secs_of "$dur") + 60 )) taskset -c 1 "$MESHBENCH" "$url" $args -d "$dur" --threads 1 -q \
    "${tls[@]}" --json "$json" --hdr-out "$W/run-$sc-$p-$round.hdr" > "$W/run-$sc-$p-$round.out" 2>&1 \
    || die "meshbench failed for $sc/$p: $(tail -3 "$W/run-$sc-$p-$round.out")"
  sleep 0.3   # let the proxy finish closing connections before reading its CPU
  after=$(cpu_ticks $pids_of)
  [ "$record" = 1 ] || return 0
  local req durs rps opened mib p50 p99 p999 errors s4 s5 cpu rss hs
  req=$(field "$json" requests); durs=$(field "$json" duration_s); rps=$(field "$json" rps)
  opened=$(field "$json" connections_opened); mib=$(field "$json" throughput_mib_s)
  p50=$(field "$json" p50); p99=$(field "$json" p99); p999=$(field "$json" p99_9)
  errors=$(field "$json" errors); s4=$(field "$json" 4xx); s5=$(field "$json" 5xx)
  hs=$(echo "scale=1; $opened / $durs" | bc)
  cpu=$(echo "scale=2; ($after - $before) / $HZ" | bc)
  rss=0; [ -n "$pids_of" ] && rss=$(rss_kib $pids_of)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sc" "$p" "$round" "$req" "$durs" "$rps" \
    "$hs" "$mib" "$p50" "$p99" "$p999" "$errors" "$((errors + s4 + s5))" "$cpu" "$rss" >> "$RESULTS"
  log "$(printf '  %-4s %-9s round %s: %9.0f req/s %8.2f MiB/s  p99 %7.3f ms  cpu %6.2f s  errors %s' \
    "$sc" "$p" "$round" "$rps" "$mib" "$p99" "$cpu" "$((errors + s4 + s5))")"
}

if [ "$(secs_of "$WARMUP")" -gt 0 ]; then
  log "warm-up ($WARMUP per proxy, not measured)"
  for p in "${proxy_list[@]}"; do one_run ka "$p" 0 "$WARMUP" 0; one_run big "$p" 0 1s 0; done
fi

for sc in "${scenario_list[@]}"; do
  targets=("${proxy_list[@]}"); [ "$sc" = lat ] && targets+=(direct)
  n=${#targets[@]}
  log "scenario $sc: $(scenario_args "$sc") -d $DURATION, $ROUNDS rounds over: ${targets[*]}"
  for round in $(seq "$ROUNDS"); do
    for i in $(seq 0 $((n - 1))); do   # rotate the order each round
      one_run "$sc" "${targets[$(( (i + round - 1) % n ))]}" "$round" "$DURATION"
    done
  done
done

# --- table -----------------------------------------------------------------------
echo
echo "| scenario | proxy | rps | handshakes/s | MiB/s | p50 ms | p99 ms | p99.9 ms | proxy CPU s | requests per proxy-CPU-s | RSS MiB | ratio to nginx (per CPU-s) | ratio to best peer | failed |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
awk -F'\t' -v scen="$SCENARIOS" -v rounds="$ROUNDS" -v rate="$RATE" -v body="$BODY" '
function median(s,   a, n, i, j, t) {
  n = split(s, a, " ")
  for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
NR == 1 { next }
{
  k = $1 SUBSEP $2; seen[k] = 1
  n[k]++; rps[k] += $6; hs[k] += $7; mib[k] += $8; req[k] += $4; cpu[k] += $14; fail[k] += $13
  if ($15 > rss[k]) rss[k] = $15
  p50[k] = p50[k] " " $9; p99[k] = p99[k] " " $10; p999[k] = p999[k] " " $11
}
END {
  label["ka"] = "keep-alive, " body " B"; label["hs"] = "new mTLS conn per request"
  label["big"] = "1 MiB responses"; label["lat"] = "fixed rate " rate "/s"
  label["h2"] = "HTTP/2 64 conns x 16 streams, " body " B"; label["grpc"] = "gRPC unary over HTTP/2, 16 x 16 streams"
  np = split("nginx haproxy caddy meshgate meshgate-base direct", order, " ")
  ns = split(scen, sl, ",")
  for (s = 1; s <= ns; s++) {
    sc = sl[s]
    for (i = 1; i <= np; i++) { k = sc SUBSEP order[i]; per[k] = (cpu[k] > 0) ? req[k] / cpu[k] : 0 }
    base = per[sc SUBSEP "nginx"]; best = base
    if (per[sc SUBSEP "haproxy"] > best) best = per[sc SUBSEP "haproxy"]
    if (per[sc SUBSEP "caddy"] > best) best = per[sc SUBSEP "caddy"]
    for (i = 1; i <= np; i++) {
      p = order[i]; k = sc SUBSEP p
      if (!(k in seen)) continue
      direct = (p == "direct")
      printf "| %s | %s | %.0f | %s | %.1f | %.3f | %.3f | %.3f | %s | %s | %s | %s | %s | %d |\n", \
        label[sc], p, rps[k] / n[k], (sc == "hs" ? sprintf("%.0f", hs[k] / n[k]) : "—"), mib[k] / n[k], \
        median(p50[k]), median(p99[k]), median(p999[k]), \
        (direct ? "—" : sprintf("%.2f", cpu[k])), (direct || per[k] == 0 ? "—" : sprintf("%.0f", per[k])), \
        (direct ? "—" : sprintf("%.1f", rss[k] / 1024)), \
        (direct || base == 0 || per[k] == 0 ? "—" : sprintf("%.2f", per[k] / base)), \
        (direct || best == 0 || per[k] == 0 ? "—" : sprintf("%.2f", per[k] / best)), fail[k]
    }
    m = sc SUBSEP "meshgate"
    if (sc == "lat" && (m in seen) && ((sc SUBSEP "direct") in seen)) {
      lat_note = sprintf("p99 at %s/s: meshgate %.3f ms vs direct %.3f ms: +%.3f ms (target <= +0.15 ms)", rate, median(p99[m]), median(p99[sc SUBSEP "direct"]), median(p99[m]) - median(p99[sc SUBSEP "direct"]))
    }
    mb = sc SUBSEP "meshgate-base"
    if ((m in seen) && (mb in seen) && per[mb] > 0) {
      notes = notes sprintf("%s: meshgate %.3fx meshgate-base per proxy-CPU-second\n", label[sc], per[m] / per[mb])
    }
    if (sc != "lat" && (m in seen) && best > 0 && per[m] > 0) {
      tgt = (sc == "ka" || sc == "h2" || sc == "grpc") ? 1.5 : (sc == "hs") ? 2.5 : 2.0
      notes = notes sprintf("%s: meshgate %.2fx the best of the peers per proxy-CPU-second (target >= %.1fx)\n", label[sc], per[m] / best, tgt)
    }
  }
  printf "\nTargets (issue 4 §5):\n%s%s\n", notes, lat_note
  printf "rps, handshakes/s, MiB/s: mean of %d rounds; p50/p99/p99.9: median of rounds; proxy CPU s: sum over rounds (utime+stime from /proc);\n", rounds
  printf "requests per proxy-CPU-s: all requests / that sum; RSS: largest VmRSS at the end of a run (nginx: master + worker); failed: transport errors + 4xx/5xx.\n"
  printf "The load client and the upstreams share CPU 1; each proxy runs alone on CPU 0.\n"
}' "$RESULTS"
if [ -n "$PLOT" ]; then
  curves=()
  for p in "${proxy_list[@]}" direct; do
    f="$W/run-lat-$p-$ROUNDS.json"
    [ -f "$f" ] && curves+=("$p=$f")
  done
  if [ ${#curves[@]} -gt 0 ]; then
    "$MESHBENCH" plot "${curves[@]}" --title "Latency at $RATE req/s (round $ROUNDS)" -o "$PLOT" \
      && log "latency plot written to $PLOT"
  else
    log "--plot: no fixed-rate (lat) runs to plot"
  fi
fi
[ -n "$OUT" ] && log "configs, logs and per-run JSON/HDR files kept in $W"
exit 0
