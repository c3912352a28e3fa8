#!/usr/bin/env bash
# Builds the VM test rig under target/vm/ (see vm/README.md): Debian's current amd64 kernel,
# gpio-sim built out of tree from Debian's linux-source with this project's rig modules
# (vm/modules), and a busybox-static initramfs. Installs its host packages with apt.
# Cached: a second run with the same kernel ABI and the same vm/ sources does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/target/vm
mkdir -p "$OUT"
export DEBIAN_FRONTEND=noninteractive

need_pkgs=(qemu-system-x86 busybox-static build-essential xz-utils cpio kmod e2fsprogs)
missing=()
for p in "${need_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ! -f "$OUT/apt-updated" ] || [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q
  touch "$OUT/apt-updated"
fi

# The current kernel ABI, through the metapackage (old ABIs leave the archive).
IMG_PKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$IMG_PKG" ] || { echo "vm-build: cannot resolve linux-image-amd64's kernel" >&2; exit 1; }
ABI=${IMG_PKG#linux-image-}
VER=$(echo "$ABI" | cut -d. -f1,2)
HDR_PKG=linux-headers-$ABI
SRC_PKG=linux-source-$VER
for p in "$HDR_PKG" "$SRC_PKG"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== vm-build: apt-get install ${missing[*]}"
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  apt-get clean
fi

K=$OUT/$ABI
STAMP=$(cat scripts/vm-build.sh vm/modules/* vm/guest/init | sha256sum | cut -c1-16)
if [ -f "$K/stamp" ] && [ "$(cat "$K/stamp")" = "$STAMP" ]; then
  echo "== vm-build: cached $K (kernel $ABI)"
  exit 0
fi
echo "== vm-build: kernel $ABI into $K"
rm -rf "$K" && mkdir -p "$K/debs"
(cd "$K/debs" && apt-get download -q "$IMG_PKG" 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
dpkg-deb -x "$K"/debs/"$IMG_PKG"_*.deb "$K/kroot"
cp "$K/kroot/boot/vmlinuz-$ABI" "$K/vmlinuz"
rm -rf "$K/debs"

echo "== vm-build: gpio-sim (from $SRC_PKG) and the rig modules"
SRC_TAR=$(ls /usr/src/"$SRC_PKG".tar.*)
mkdir -p "$K/src"
tar -xf "$SRC_TAR" -C "$K/src" \
  "$SRC_PKG/drivers/gpio/gpio-sim.c" "$SRC_PKG/drivers/gpio/gpiolib.h" "$SRC_PKG/kernel/irq/irq_sim.c"
B=$K/modbuild
mkdir -p "$B"
cp vm/modules/Kbuild vm/modules/*.c "$B/"
cp "$K/src/$SRC_PKG/drivers/gpio/gpio-sim.c" "$B/gpio-sim-main.c"
cp "$K/src/$SRC_PKG/drivers/gpio/gpiolib.h" "$B/"
# irq_to_desc is not exported to modules: the one call becomes generic_handle_irq.
sed 's/handle_simple_irq(irq_to_desc(irqnum));/generic_handle_irq(irqnum);/' \
  "$K/src/$SRC_PKG/kernel/irq/irq_sim.c" > "$B/irq_sim.c"
grep -q 'generic_handle_irq(irqnum);' "$B/irq_sim.c" || { echo "vm-build: irq_sim.c patch did not apply" >&2; exit 1; }
make -s -C "/usr/src/$HDR_PKG" M="$B" modules 2>&1 | grep -v "Skipping BTF" || true
for m in gpio-sim needle_i2c_rig needle_pwm_rig; do
  [ -f "$B/$m.ko" ] || { echo "vm-build: $m.ko did not build" >&2; exit 1; }
done

echo "== vm-build: initramfs"
I=$K/initramfs
mkdir -p "$I"/{bin,sbin,dev,proc,sys,tmp,share,ledger,etc,lib/modules,lib64,lib/x86_64-linux-gnu}
cp /bin/busybox "$I/bin/busybox"
for app in $("$I/bin/busybox" --list); do [ "$app" = busybox ] || ln -sf busybox "$I/bin/$app"; done
ln -sf ../bin/busybox "$I/sbin/modprobe"
# Kernel modules the guest needs, with their dependencies, in load order.
MODDIR=$K/kroot/lib/modules/$ABI
[ -f "$MODDIR/modules.dep" ] || depmod -b "$K/kroot" "$ABI"
# virtio_net: the power-cut suite reaches needled in the guest through QEMU's user network.
wanted=(configfs virtio_pci virtio_blk virtio_net 9pnet_virtio 9p i2c-dev ext4 crc32c_generic)
declare -A seen=()
order=()
add_mod() { # path relative to MODDIR
  local rel=$1 dep
  [ -n "${seen[$rel]:-}" ] && return
  seen[$rel]=1
  for dep in $(awk -v m="$rel:" '$1==m {for (i=2;i<=NF;i++) print $i}' "$MODDIR/modules.dep"); do
    add_mod "$dep"
  done
  order+=("$rel")
}
for m in "${wanted[@]}"; do
  rel=$(awk -F: -v n="/$m.ko" '{ if (substr($1, length($1)-length(n)+1) == n) { print $1; exit } }' "$MODDIR/modules.dep")
  [ -n "$rel" ] || { echo "vm-build: module $m not in $ABI" >&2; exit 1; }
  add_mod "$rel"
done
: > "$I/lib/modules/load-order"
for rel in "${order[@]}"; do
  cp "$MODDIR/$rel" "$I/lib/modules/"
  basename "$rel" >> "$I/lib/modules/load-order"
done
cp "$B"/gpio-sim.ko "$B"/needle_i2c_rig.ko "$B"/needle_pwm_rig.ko "$I/lib/modules/"
# glibc for host binaries run from the 9p share.
for lib in ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libgcc_s.so.1 libpthread.so.0 libdl.so.2 librt.so.1; do
  [ -e "/lib/x86_64-linux-gnu/$lib" ] && cp -L "/lib/x86_64-linux-gnu/$lib" "$I/lib/x86_64-linux-gnu/"
done
ln -sf ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$I/lib64/ld-linux-x86-64.so.2"
cp vm/guest/init "$I/init"
chmod +x "$I/init"
(cd "$I" && find . | cpio -o -H newc --quiet | gzip -1) > "$K/initramfs.gz"
# What the guest boots is vmlinuz and initramfs.gz: the extracted kernel package, the
# sources and the module build are about 600 MB that a small CI disk needs back.
rm -rf "$K/kroot" "$K/src" "$B" "$I"
echo "$ABI" > "$OUT/current"
echo "$STAMP" > "$K/stamp"
echo "== vm-build: done: $K/vmlinuz, $K/initramfs.gz"
