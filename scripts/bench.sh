#!/usr/bin/env bash
# Every benchmark in BENCHMARKS.md, printing its figures as they come; the raw results (one JSON
# line per benchmark, after "RESULT") are kept in target/bench/.
#
#   bash scripts/bench.sh                      # all sections, 3 runs each (about 12 minutes)
#   BENCH_RUNS=5 BENCH_SECONDS=30 bash scripts/bench.sh
#   BENCH_ONLY="2 3" bash scripts/bench.sh     # some sections only
#
# BENCH_RUNS (3): runs per figure, medians reported. BENCH_SECONDS (20): length of each
# control-loop / API phase. BENCH_PRESSES (1000): E-stop presses per run. BENCH_PHASES
# (idle,status,sse,idle+hog): the phases of sections 3 and 4. BENCH_NON_RT=1 also runs sections
# 2b, 3 and 4 without real-time priority for the control thread and cyclictest.
# The floor is cyclictest (Debian's rt-tests) and the CPU hog stress-ng; both are installed
# with apt-get when missing. Load is only ever sent to 127.0.0.1, bounded in time and requests.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${BENCH_RUNS:-3}"
seconds="${BENCH_SECONDS:-20}"
presses="${BENCH_PRESSES:-1000}"
phases="${BENCH_PHASES:-idle,status,sse,idle+hog}"
only="${BENCH_ONLY:-1 2 3 4 5}"
out=target/bench
mkdir -p "$out"
want() { [[ " $only " == *" $1 "* ]]; }

echo "== machine"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), cores: $(nproc), kernel: $(uname -r)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); rustc: $(rustc --version)"

if want 1; then
  echo "== 1. instructions per Controller::tick (callgrind)"
  bash scripts/bench-tick.sh | tee "$out/tick.txt"
fi

if want 2 || want 3 || want 4; then
  echo "== cyclictest (rt-tests) and stress-ng"
  if ! command -v cyclictest >/dev/null 2>&1 || ! command -v stress-ng >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y rt-tests stress-ng
  fi
  echo "cyclictest: $(cyclictest --help 2>&1 | head -1); $(stress-ng --version)"
  echo "== building needled and needle-bench (release)"
  cargo build -q --release -p needled -p needle-bench
fi

if want 2; then
  echo "== 2a. core: ticks from a fault input to PWM 0 (virtual time, judged by the rig's truth)"
  cargo test -q -p needle-sim --test closed_loop -- same_tick 2>&1 | grep -E '^test |test result'
  echo "== 2b. E-stop to motor off on the control clock (sim timestamps), beside cyclictest, $presses presses x $runs runs"
  target/release/estop-reaction --presses "$presses" --runs "$runs" | tee "$out/estop.txt"
  echo "== 2b beside a CPU hog (stress-ng --cpu $(nproc))"
  target/release/estop-reaction --presses "$presses" --runs "$runs" --hog true | tee "$out/estop-hog.txt"
  if [ "${BENCH_NON_RT:-0}" = 1 ]; then
    echo "== 2b without real-time priority"
    target/release/estop-reaction --presses "$presses" --runs "$runs" --realtime false | tee "$out/estop-nonrt.txt"
  fi
fi

if want 3 || want 4; then
  echo "== 3 and 4. control-loop lateness beside cyclictest; API load; SSE fan-out; a CPU hog"
  target/release/service-bench --runs "$runs" --seconds "$seconds" --phases "$phases" | tee "$out/service.txt"
  if [ "${BENCH_NON_RT:-0}" = 1 ]; then
    echo "== 3 and 4 without real-time priority (control.realtime_priority = false, cyclictest likewise)"
    target/release/service-bench --runs "$runs" --seconds "$seconds" --phases "$phases" --realtime false | tee "$out/service-nonrt.txt"
  fi
fi

if want 5; then
  echo "== 5. rate and depth accuracy on the sim (hil-tests)"
  if [ -f hil-tests/src/bin/hil-report.rs ]; then
    cargo run -q --release -p hil-tests --bin hil-report | tee "$out/hil.txt"
  else
    echo "skipped: hil-tests has no hil-report binary yet"
  fi
fi
echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
