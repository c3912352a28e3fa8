#!/usr/bin/env bash
# Boots the VM test rig once (QEMU TCG; /dev/kvm here is a nested host QEMU cannot use) and
# runs `vm/guest/<script>` in the guest from the 9p share target/vm/share (the host's files
# the caller put there). Exits with the guest script's status; 125 if the guest died
# without reporting one (kernel panic, timeout).
#   scripts/vm-boot.sh <guest-script> [extra qemu args...]
# Environment: VM_TIMEOUT (s, default 300), VM_LOG (serial console copy).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$PWD/target/vm
ABI=$(cat "$OUT/current")
K=$OUT/$ABI
script=$1; shift
SHARE=$OUT/share
mkdir -p "$SHARE"
cp vm/guest/*.sh "$SHARE/"
log=${VM_LOG:-$OUT/console.log}
set +e
timeout --signal=KILL "${VM_TIMEOUT:-300}" qemu-system-x86_64 \
  -machine q35,accel=tcg -cpu max -smp 2 -m 768M \
  -kernel "$K/vmlinuz" -initrd "$K/initramfs.gz" \
  -append "console=ttyS0 rdinit=/init panic=-1 quiet loglevel=4 needle.run=$script" \
  -nographic -no-reboot -monitor none -serial stdio \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
  -virtfs local,path="$SHARE",mount_tag=share,security_model=none,id=share \
  -nic none "$@" < /dev/null 2>&1 | tee "$log"
qrc=${PIPESTATUS[0]}
set -e
if [ $((qrc % 2)) -eq 1 ] && [ "$qrc" -lt 256 ] && [ "$qrc" -ne 137 ]; then
  exit $(( (qrc - 1) / 2 ))
fi
echo "vm-boot: the guest reported no status (qemu exit $qrc)" >&2
exit 125
