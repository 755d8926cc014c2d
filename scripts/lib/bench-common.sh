# Shared by the benchmark scripts (sourced, not run): loopback ports and a
# throw-away PKI. The caller defines `die MESSAGE`.

# A loopback port nobody listens on, below the ephemeral range.
free_port() {
  local p
  for _ in $(seq 200); do
    p=$(( 20000 + RANDOM % 12000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port"
}

# Waits up to 10 s for 127.0.0.1:PORT to accept; NAME is for the message,
# PID (optional) must stay alive meanwhile.
wait_port() { # port name [pid]
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    [ -z "${3:-}" ] || kill -0 "$3" 2>/dev/null || die "$2 exited at start${W:+ (logs in $W)}"
    sleep 0.1
  done
  die "$2 did not listen on 127.0.0.1:$1 within 10 s${W:+ (logs in $W)}"
}

# Writes, in the current folder, an ECDSA P-256 CA (ca.pem), a server
# certificate for localhost and 127.0.0.1 (server.pem, server.key), a client
# certificate with a SPIFFE URI SAN (client.pem, client.key), and
# haproxy.pem (server chain and key in one file).
make_bench_pki() {
  local o=(openssl)
  "${o[@]}" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
    -subj /CN=bench-ca -days 2 -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  "${o[@]}" req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
    -out server.csr -subj /CN=localhost 2>/dev/null
  "${o[@]}" x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
    -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n') 2>/dev/null
  "${o[@]}" req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key \
    -out client.csr -subj /CN=bench-client 2>/dev/null
  "${o[@]}" x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 \
    -extfile <(printf 'subjectAltName=URI:spiffe://meshgate.local/ns/default/sa/bench\nextendedKeyUsage=clientAuth\n') 2>/dev/null
  cat server.pem server.key > haproxy.pem
}
