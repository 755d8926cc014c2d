#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (Debian packages) when missing, builds the binaries, runs every unit,
# property and end-to-end test, then the io_uring runtime tests under
# valgrind. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# --- set-up: system packages -------------------------------------------------
need=()
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v valgrind >/dev/null || need+=(valgrind)
command -v sha256sum >/dev/null || need+=(coreutils)
command -v testssl >/dev/null || need+=(testssl.sh)
command -v promtool >/dev/null || need+=(prometheus)  # promtool and a server for the metrics tests
command -v python3 >/dev/null || need+=(python3)
command -v tmux >/dev/null || need+=(tmux)  # meshctl top in a real terminal
command -v chromium >/dev/null || need+=(chromium)  # the traffic map, drawn by a real browser
python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  log "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
export PATH="$PATH:/usr/sbin:/sbin"

# --- set-up: Python packages, in a local venv ----------------------------------
# The tracing tests decode what meshgate exports with the official
# opentelemetry-proto package; the HTTP/2 flood tests craft their frames
# with the h2 package; the gRPC tests call through the gateway with grpcio.
if ! target/venv/bin/python -c 'import opentelemetry.proto.collector.trace.v1.trace_service_pb2, h2, grpc' 2>/dev/null; then
  log "python venv: target/venv (opentelemetry-proto, h2, grpcio)"
  mkdir -p target
  python3 -m venv target/venv
  target/venv/bin/pip install --quiet --disable-pip-version-check opentelemetry-proto h2 grpcio
fi

# --- build -------------------------------------------------------------------
log "build"
cargo build --workspace --bins

# --- tests -------------------------------------------------------------------
log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

# --- the runtime's tests under valgrind ----------------------------------------
# Catches reads of freed buffers that the kernel still owned. The runtime
# tests run one at a time; tests named threads_* need a second thread, which
# valgrind (it holds its lock across io_uring_enter) would never run.
log "runtime tests under valgrind"
bin=$(cargo test -p meshgate-dataplane --lib --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "no dataplane test binary found"; exit 1; }
valgrind --error-exitcode=99 --quiet "$bin" runtime:: --skip threads_ --test-threads=1

# --- a TLS audit by a tool made by others -------------------------------------
log "testssl.sh (protocols, cipher categories, vulnerabilities)"
scripts/testssl.sh --quick target/testssl-quick.txt

# --- fuzz targets, briefly ------------------------------------------------------
log "fuzz targets (fixed seed and input counts)"
scripts/fuzz.sh

log "all tests passed"
