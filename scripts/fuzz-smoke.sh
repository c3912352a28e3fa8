#!/usr/bin/env bash
# Fuzz smoke run: every cargo-fuzz target in fuzz/ for N seconds (default 20; or FUZZ_SECONDS)
# from its committed seeds, failing on the first crash, panic, failed property, leak or timeout.
#
#   bash scripts/fuzz-smoke.sh        # CI: 20 s per target
#   bash scripts/fuzz-smoke.sh 600    # on demand: 10 minutes per target
#
# libFuzzer writes the new inputs it finds into the first corpus directory, so that is
# fuzz/corpus/<target>/ (gitignored) and the committed fuzz/seeds/<target>/ is only read. A crash
# leaves its input in fuzz/artifacts/<target>/ (gitignored) and the command to replay it in the
# output: add the input to fuzz/seeds/<target>/ and a regression test in the crate it belongs to.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-${FUZZ_SECONDS:-20}}"
targets=(config_parse tag_parse chip_answer atecc_response protocol_command api_bodies link_decoder)

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz-smoke: cargo-fuzz needs a nightly toolchain (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

echo "== cargo +nightly fuzz build (address sanitizer, debug assertions)"
cargo +nightly fuzz build
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "== fuzz $t for ${seconds}s (seeds: fuzz/seeds/$t)"
  # grep hides libFuzzer's progress lines; the status that counts is cargo fuzz's.
  set +e
  cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
    grep -vE '^(#[0-9]+\s+(NEW|REDUCE|pulse|INITED)|"|###### )'
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then
    echo "fuzz-smoke: $t failed (exit $status); its input is in fuzz/artifacts/$t/" >&2
    exit "$status"
  fi
done
echo "fuzz-smoke: ${#targets[@]} targets, ${seconds}s each: no crash"
