#!/usr/bin/env bash
# Instructions per Controller::tick, counted by callgrind (deterministic, unlike a clock on
# this shared machine). For each scenario it runs the bench twice, with N1 and N2 ticks, and
# divides the difference of the instructions spent inside `tick` by N2 - N1, so start-up and
# the path to the scenario's state cancel out. Trivial in-memory pins: the core's own cost.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "bench-tick: valgrind is required (apt-get install valgrind)" >&2; exit 1; }
cargo build -q --release -p needle-core --example tick_bench
bin=target/release/examples/tick_bench
n1=1000
n2=11000
out=$(mktemp -d)
printf '%-10s %12s\n' scenario "instr/tick"
for scenario in running idle homing faulted; do
  for n in $n1 $n2; do
    valgrind --tool=callgrind --toggle-collect='needle_core::controller::Controller<*>::tick' \
      --callgrind-out-file="$out/$scenario.$n" "$bin" "$scenario" "$n" >"$out/$scenario.$n.log" 2>&1
    grep -q 'allocations=0' "$out/$scenario.$n.log" || { cat "$out/$scenario.$n.log"; exit 1; }
  done
  a=$(grep -E '^(summary|totals):' "$out/$scenario.$n1" | head -1 | awk '{print $2}')
  b=$(grep -E '^(summary|totals):' "$out/$scenario.$n2" | head -1 | awk '{print $2}')
  printf '%-10s %12d\n' "$scenario" $(( (b - a) / (n2 - n1) ))
done
rm -rf "$out"
