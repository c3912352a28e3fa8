#!/bin/sh
# One boot of the power-cut campaign (crates/needled/tests/vm_powercut.rs, which boots the
# guest with the ledger's disk as /dev/vda, cache=none, and kills QEMU at random moments).
# Mounts the disk as ext4 with the defaults (data=ordered; the kernel replays the journal a
# cut left), copies the ledger as the cut left it to the share for the host's checks, then
# runs needled (sim backend) on it, reachable from the host through QEMU's user network.
export RUST_BACKTRACE=1
P=/share/powercut
ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up || { echo "powercut: no eth0"; exit 3; }
mount -t ext4 /dev/vda /ledger || { echo "powercut: mount /dev/vda failed"; exit 4; }
grep " /ledger " /proc/mounts && ls -l /ledger
# "recovery complete" when the kernel replayed the journal a cut left.
dmesg | grep "EXT4-fs (vda)"
echo "powercut: vda write cache: $(cat /sys/block/vda/queue/write_cache)"
mkdir -p "$P/pre"
for f in needled.db needled.db-wal; do
  [ -f "/ledger/$f" ] && cp "/ledger/$f" "$P/pre/$f"
done
# The host waits for the API; this file says the copy above is complete.
echo done > "$P/pre/copied"
echo "powercut: starting needled at $(cut -d' ' -f1 /proc/uptime) s"
/share/powercut/needled --config "$P/needled.toml" --data-dir /ledger --bind 0.0.0.0:8080
echo "powercut: needled exited with $?"
exit 5
