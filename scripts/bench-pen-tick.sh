#!/usr/bin/env bash
# Instructions per pen tick with the link (callgrind, deterministic): `step` in
# crates/needle-pen/examples/pen_tick_bench.rs is one pass of the firmware's main loop
# (bytes in, Pen::tick with the controller's tick and a telemetry frame, bytes out) and
# `Controller::tick` is the core's share of it; the difference is the link's cost. Two run
# lengths, N1 and N2 ticks, so start-up cancels out. Running state, needled's traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "bench-pen-tick: valgrind is required (apt-get install valgrind)" >&2; exit 1; }
cargo build -q --release -p needle-pen --example pen_tick_bench
bin=target/release/examples/pen_tick_bench
n1=1000
n2=11000
out=$(mktemp -d)
printf '%-16s %10s %10s %10s\n' telemetry_every "pen/tick" "core/tick" "link/tick"
for every in 1 10; do
  for fn in step core; do
    pattern='pen_tick_bench::step'
    [ "$fn" = core ] && pattern='needle_core::controller::Controller<*>::tick'
    for n in $n1 $n2; do
      valgrind --tool=callgrind --toggle-collect="$pattern" \
        --callgrind-out-file="$out/$fn.$every.$n" "$bin" "$n" "$every" >"$out/$fn.$every.$n.log" 2>&1
      grep -q 'allocations=0' "$out/$fn.$every.$n.log" || { cat "$out/$fn.$every.$n.log"; exit 1; }
    done
  done
  total() { grep -E '^(summary|totals):' "$out/$1" | head -1 | awk '{print $2}'; }
  pen=$(( ($(total step.$every.$n2) - $(total step.$every.$n1)) / (n2 - n1) ))
  core=$(( ($(total core.$every.$n2) - $(total core.$every.$n1)) / (n2 - n1) ))
  printf '%-16s %10d %10d %10d\n' "$every" "$pen" "$core" $(( pen - core ))
done
grep -h 'telemetry_frame_bytes\|bytes_out' "$out"/step.*."$n2".log
rm -rf "$out"
