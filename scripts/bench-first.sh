#!/usr/bin/env bash
# First performance figures: meshgate (1 shard) vs nginx (1 worker) as mTLS
# terminators in front of the same upstream, measured in one run with a
# third-party client that presents a client certificate (ApacheBench, `ab -E`).
# Reports requests/s and requests per proxy-CPU-second (utime+stime from
# /proc), for keep-alive requests and for a new full mTLS handshake per request.
#
# Usage: scripts/bench-first.sh [requests] [concurrency] [rounds]
# Loopback only. Pins the proxy under test to CPU 0, client and origin to CPU 1.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-50000}"; C="${2:-32}"; ROUNDS="${3:-3}"; NEWCONN_N="${NEWCONN_N:-3000}"

need=()
command -v ab >/dev/null || need+=(apache2-utils)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v openssl >/dev/null || need+=(openssl)
command -v bc >/dev/null || need+=(bc)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
export PATH="$PATH:/usr/sbin"

cargo build --release -p meshgate-control --bin meshgate >&2
MESHGATE="$PWD/target/release/meshgate"
W=$(mktemp -d /tmp/meshgate-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$W"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- certificates (ECDSA P-256, SPIFFE client) ---------------------------------
cd "$W"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -subj /CN=bench-ca -days 2 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
  -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth') 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -out client.csr -subj /CN=bench-client 2>/dev/null
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 \
  -extfile <(printf 'subjectAltName=URI:spiffe://meshgate.local/ns/default/sa/bench\nextendedKeyUsage=clientAuth') 2>/dev/null
cat client.pem client.key > client-bundle.pem

ORIGIN=$(free_port); NGINX_PROXY=$(free_port); MG=$(free_port)

# --- origin: nginx, 1 worker on CPU 1 ------------------------------------------
mkdir -p origin proxy
cat > origin/nginx.conf <<CONF
worker_processes 1; daemon off; pid $W/origin/nginx.pid; error_log $W/origin/error.log;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $W/origin; proxy_temp_path $W/origin;
  fastcgi_temp_path $W/origin; uwsgi_temp_path $W/origin; scgi_temp_path $W/origin;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN; location / { return 200 "hello from the origin\n"; } } }
CONF
taskset -c 1 nginx -c "$W/origin/nginx.conf" & pids+=($!)

# --- nginx as mTLS terminator, 1 worker on CPU 0 -------------------------------
cat > proxy/nginx.conf <<CONF
worker_processes 1; daemon off; pid $W/proxy/nginx.pid; error_log $W/proxy/error.log;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $W/proxy; proxy_temp_path $W/proxy;
  fastcgi_temp_path $W/proxy; uwsgi_temp_path $W/proxy; scgi_temp_path $W/proxy;
  keepalive_requests 1000000;
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 64; }
  server { listen 127.0.0.1:$NGINX_PROXY ssl;
    ssl_certificate $W/server.pem; ssl_certificate_key $W/server.key;
    ssl_client_certificate $W/ca.pem; ssl_verify_client on; ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$remote_addr; } } }
CONF
taskset -c 0 nginx -c "$W/proxy/nginx.conf" & pids+=($!)

# --- meshgate, 1 shard on CPU 0 -------------------------------------------------
cat > meshgate.toml <<CONF
[dataplane]
shards = 1
[[listeners]]
name = "bench"
address = "127.0.0.1:$MG"
[listeners.tls]
cert = "server.pem"
key = "server.key"
client_ca = "ca.pem"
[[routes]]
listener = "bench"
cluster = "origin"
[routes.match]
path_prefix = "/"
[[clusters]]
name = "origin"
endpoints = ["127.0.0.1:$ORIGIN"]
CONF
MESHGATE_LOG=warn taskset -c 0 "$MESHGATE" run --config meshgate.toml > meshgate.out & pids+=($!)
MG_PID=$!
sleep 1.5
NGINX_PID=$(cat proxy/nginx.pid)

cpu_ticks() { # utime+stime of a process and its children threads, in clock ticks
  local total=0
  for p in "$@"; do
    for t in /proc/$p/task/*/stat; do
      read -r -a f < <(sed 's/^.*) //' "$t")
      total=$((total + f[11] + f[12]))
    done
  done
  echo "$total"
}
worker_pids() { echo "$1 $(pgrep -P "$1" | tr '\n' ' ')"; }
HZ=$(getconf CLK_TCK)

run() { # name port mode -> "rps requests cpu_seconds"
  local name=$1 port=$2 mode=$3 pids_of before after out rps n
  if [ "$name" = nginx ]; then pids_of=$(worker_pids "$NGINX_PID"); else pids_of=$MG_PID; fi
  before=$(cpu_ticks $pids_of)
  if [ "$mode" = keepalive ]; then
    out=$(taskset -c 1 ab -q -k -n "$N" -c "$C" -E client-bundle.pem "https://127.0.0.1:$port/" 2>&1)
  else
    out=$(taskset -c 1 ab -q -n "$NEWCONN_N" -c 8 -E client-bundle.pem "https://127.0.0.1:$port/" 2>&1)
  fi
  after=$(cpu_ticks $pids_of)
  rps=$(echo "$out" | awk '/Requests per second/ {print $4}')
  n=$(echo "$out" | awk '/Complete requests/ {print $3}')
  local failed; failed=$(echo "$out" | awk '/Failed requests/ {print $3}')
  local non2xx; non2xx=$(echo "$out" | awk '/Non-2xx responses/ {print $3}')
  echo "$name $mode rps=$rps complete=$n failed=${failed:-?} non2xx=${non2xx:-0} cpu_s=$(echo "scale=3; ($after-$before)/$HZ" | bc)" >&2
  echo "$rps $n $(echo "scale=3; ($after-$before)/$HZ" | bc)"
}

declare -A sum_rps sum_req sum_cpu
for mode in keepalive newconn; do
  for name in nginx meshgate; do sum_rps[$name$mode]=0; sum_req[$name$mode]=0; sum_cpu[$name$mode]=0; done
done
for round in $(seq "$ROUNDS"); do
  for mode in keepalive newconn; do
    for name in nginx meshgate; do
      port=$NGINX_PROXY; [ "$name" = meshgate ] && port=$MG
      read -r rps n cpu < <(run "$name" "$port" "$mode")
      sum_rps[$name$mode]=$(echo "${sum_rps[$name$mode]} + $rps" | bc)
      sum_req[$name$mode]=$(echo "${sum_req[$name$mode]} + $n" | bc)
      sum_cpu[$name$mode]=$(echo "${sum_cpu[$name$mode]} + $cpu" | bc)
    done
  done
done

echo
echo "| scenario | proxy | req/s (mean of $ROUNDS) | proxy CPU s | requests per proxy-CPU-second | ratio to nginx |"
echo "|---|---|---|---|---|---|"
for mode in keepalive newconn; do
  base=$(echo "scale=1; ${sum_req[nginx$mode]} / ${sum_cpu[nginx$mode]}" | bc)
  for name in nginx meshgate; do
    per=$(echo "scale=1; ${sum_req[$name$mode]} / ${sum_cpu[$name$mode]}" | bc)
    echo "| $mode | $name | $(echo "scale=0; ${sum_rps[$name$mode]} / $ROUNDS" | bc) | ${sum_cpu[$name$mode]} | $per | $(echo "scale=2; $per / $base" | bc) |"
  done
done
