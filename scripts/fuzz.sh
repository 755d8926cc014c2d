#!/usr/bin/env bash
# Runs every cargo-fuzz target under tests/fuzz for a fixed number of inputs
# (about 20-30 s each on this machine): the HTTP/1 request and response
# heads, chunked bodies, config text, control-socket requests, the
# certificate identity walker, path normalisation with authorization rule
# matching, and the TLS record layer after a real
# handshake (tls_records: one handshake per input, so fewer inputs).
# Installs cargo-fuzz when missing.
#
# Runs are deterministic: a fixed seed and a fixed input count, so CI does
# not pass or fail by luck; explore longer by hand with
#   scripts/fuzz.sh --explore SECONDS
# Committed seed inputs live in seeds/<target>/ (regressions included); what
# a run finds goes to the ignored corpus/<target>/. The stable toolchain runs
# libFuzzer's nightly flags with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/../tests/fuzz"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
explore=""
if [ "${1:-}" = "--explore" ]; then explore="${2:-60}"; fi

# Inputs per target, sized for ~20-30 s each here.
declare -A runs=(
  [chunked_body]=8000000 [config_toml]=800000 [control_request]=500000
  [http_request]=8000000 [http_response]=8000000 [peer_identity]=12000000
  [tls_records]=20000 [path_and_authz]=4000000
)
# Parsers are safe Rust; libFuzzer's coverage guidance without a sanitizer
# builds much faster and still catches every panic.
targets=$(cargo fuzz list)
cargo fuzz build --sanitizer none
for t in $targets; do
  mkdir -p "corpus/$t"
  if [ -n "$explore" ]; then
    echo "== fuzz $t for ${explore}s (exploring)"
    limit=(-max_total_time="$explore")
  else
    echo "== fuzz $t: ${runs[$t]:-1000000} inputs, seed 1"
    limit=(-runs="${runs[$t]:-1000000}" -seed=1)
    # A fresh corpus every time, so the run depends only on the seeds.
    rm -rf "corpus/$t" && mkdir -p "corpus/$t"
  fi
  cargo fuzz run --sanitizer none "$t" "corpus/$t" "seeds/$t" -- "${limit[@]}" -rss_limit_mb=2048 2>&1 | tail -n 3
done
