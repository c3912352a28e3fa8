#!/usr/bin/env bash
# The whole test suite beside a CPU hog: a busy loop on every core (stress-ng --cpu N when it
# is installed, plain shell loops otherwise) for as long as scripts/test.sh runs. The suite's
# checks judge what the software controls (ticks against the control thread's schedule, the
# sim's virtual time), so they must pass here too. Prints the suite's wall time.
#   bash scripts/test-under-load.sh            # hog every core
#   HOG_CPUS=1 bash scripts/test-under-load.sh # hog one
set -euo pipefail
cd "$(dirname "$0")/.."
cpus=${HOG_CPUS:-$(nproc)}
hogs=()
stop_hogs() {
  for p in "${hogs[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop_hogs EXIT
if command -v stress-ng >/dev/null 2>&1; then
  echo "== CPU hog: stress-ng --cpu $cpus"
  stress-ng --cpu "$cpus" --quiet &
  hogs+=($!)
else
  echo "== CPU hog: $cpus busy shell loops (stress-ng not installed)"
  for _ in $(seq "$cpus"); do
    (while :; do :; done) &
    hogs+=($!)
  done
fi
start=$(date +%s)
bash scripts/test.sh
echo "== suite passed beside the hog in $(( $(date +%s) - start )) s"
