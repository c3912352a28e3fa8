#!/usr/bin/env bash
# The VM tests (vm/README.md): builds the rig (scripts/vm-build.sh), the guest's test
# binaries, and boots the guest once per suite.
#   scripts/vm-test.sh [suite...]     suites: linux-backend needled pi-jig powercut (default: all)
# powercut boots the guest many times from the host-side test vm_powercut
# (NEEDLE_POWERCUT_CYCLES, default 6; NEEDLE_POWERCUT_SEED replays one).
# Under CI=true a missing piece (no apt, no QEMU, a module that does not build) fails;
# elsewhere the VM tests are skipped with the reason printed. NEEDLE_VM=0 skips them
# outside CI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/target/vm
ci=${CI:-}

skip() {
  if [ "$ci" = true ]; then
    echo "vm-test: FAILED: $1 (CI=true requires the VM tests)" >&2
    exit 1
  fi
  echo "vm-test: SKIPPED: $1"
  exit 0
}

[ "${NEEDLE_VM:-1}" = 0 ] && skip "NEEDLE_VM=0"
[ "$(uname -m)" = x86_64 ] || skip "the rig boots an amd64 kernel; this is $(uname -m)"
command -v apt-get >/dev/null || skip "no apt-get to fetch the Debian kernel and QEMU"
if [ "$(id -u)" != 0 ] && ! command -v qemu-system-x86_64 >/dev/null; then
  skip "not root and no qemu-system-x86_64 installed"
fi

start=$(date +%s)
if ! bash scripts/vm-build.sh; then
  skip "scripts/vm-build.sh failed (see above)"
fi
built=$(date +%s)

# --all-features: the same build as the CI's nextest run, so nothing is compiled twice.
echo "== vm-test: guest binaries (needled --all-features, which includes linux)"
bins=$OUT/share/bin
mkdir -p "$bins"
artifacts=$(cargo test -p needled --all-features --test vm_linux --test vm_needled --test vm_powercut --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])')
artifacts+=$'\n'$(cargo test -p hil-tests --all-features --test vm_pi_jig --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])')
cargo build -q -p needled --all-features --bin needled
for t in vm_linux vm_needled vm_pi_jig; do
  exe=$(echo "$artifacts" | awk -v t="$t" '$1==t {print $2}')
  [ -n "$exe" ] || { echo "vm-test: the $t test binary did not build" >&2; exit 1; }
  cp "$exe" "$bins/$t"
done
cp target/debug/needled "$bins/needled"
# The power-cut campaign's test runs on the host (it copies needled into the share itself).
powercut=$(echo "$artifacts" | awk '$1=="vm_powercut" {print $2}')
[ -n "$powercut" ] || { echo "vm-test: the vm_powercut test binary did not build" >&2; exit 1; }

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(linux-backend needled pi-jig powercut)
failed=0
for s in "${suites[@]}"; do
  t0=$(date +%s)
  set +e
  if [ "$s" = powercut ]; then
    # The host side of the campaign boots and cuts the guest itself (one console per boot).
    echo "== vm-test: powercut (the host-side test boots the guest ${NEEDLE_POWERCUT_CYCLES:-6} times and more)"
    rm -f "$OUT"/powercut/console-*.log
    NEEDLE_VM_POWERCUT=1 "$powercut" --test-threads=1 --nocapture
    rc=$?
    consoles=("$OUT"/powercut/console-*.log)
    shown="target/vm/powercut/console-*.log"
  else
    echo "== vm-test: $s (booting the guest)"
    VM_LOG=$OUT/console-$s.log VM_TIMEOUT=${VM_TIMEOUT:-180} bash scripts/vm-boot.sh "$s.sh"
    rc=$?
    consoles=("$OUT/console-$s.log")
    shown="target/vm/console-$s.log"
  fi
  set -e
  echo "== vm-test: $s: exit $rc in $(( $(date +%s) - t0 )) s (console: $shown)"
  # A kernel oops or warning in the guest fails the suite even when the tests passed.
  if grep -E 'Oops|BUG:|WARNING:|Call Trace' "${consoles[@]}"; then
    echo "vm-test: $s: the guest kernel complained (above)" >&2
    rc=1
  fi
  [ "$rc" -eq 0 ] || failed=1
done
echo "== vm-test: rig build $(( built - start )) s, total $(( $(date +%s) - start )) s"
exit $failed
