#!/usr/bin/env bash
# Runs every cargo-fuzz target under tests/fuzz for a short while (default
# 30 s each): the HTTP/1 request and response heads, chunked bodies, config
# text and the certificate identity walker. Installs cargo-fuzz when missing.
# Committed seed inputs live in seeds/<target>/; what a run finds goes to the
# ignored corpus/<target>/. The stable toolchain runs libFuzzer's nightly flags with RUSTC_BOOTSTRAP=1.
# Usage: scripts/fuzz.sh [seconds-per-target]
set -euo pipefail
cd "$(dirname "$0")/../tests/fuzz"
seconds="${1:-30}"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
# Parsers are safe Rust; libFuzzer's coverage guidance without a sanitizer
# builds much faster and still catches every panic.
targets=$(cargo fuzz list)
cargo fuzz build --sanitizer none
for t in $targets; do
  echo "== fuzz $t for ${seconds}s"
  mkdir -p "corpus/$t"
  cargo fuzz run --sanitizer none "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | tail -n 3
done
