#!/usr/bin/env bash
# The serial link's figures (BENCHMARKS.md, "Pen MCU link"): command round trip over a pty
# against the pen firmware's host build, then bytes per frame and instructions per pen tick
# (scripts/bench-pen-tick.sh, callgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p needle-pen --bin needle-pen --example link_rtt
target/release/examples/link_rtt target/release/needle-pen "${1:-2000}"
bash scripts/bench-pen-tick.sh
