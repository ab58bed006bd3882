#!/usr/bin/env bash
# Build + cache the guest kernel and initramfs under lab/cache/.
# Rebuilt only when the inputs (this script, guest/init, guest/wl.c, kernel package) change.
set -euo pipefail
LAB_DIR="${LAB_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
CACHE="$LAB_DIR/cache"
export DEBIAN_FRONTEND=noninteractive
say() { echo "lab image: $*"; }
mkdir -p "$CACHE"

# Tools: busybox-static, stress, cpio, a C compiler with static libc.
need=()
for p in busybox-static stress cpio gcc libc6-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  say "CHANGE: apt-get install ${need[*]}"
  if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
    say "CHANGE: apt-get update (package lists missing or stale)"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

# Kernel: newest linux-image-6.1.0-N-amd64 known to apt (downloaded, not installed).
kpkg=$(ls "$CACHE"/linux-image-6.1.0-*-amd64_*.deb 2>/dev/null | head -1 || true)
if [ -z "$kpkg" ]; then
  name=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' | awk '{print $1}' | sort -V | tail -1)
  if [ -z "$name" ]; then say "CHANGE: apt-get update"; apt-get update -qq
    name=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' | awk '{print $1}' | sort -V | tail -1); fi
  [ -n "$name" ] || { echo "lab image: no linux-image-6.1.0-*-amd64 in apt" >&2; exit 1; }
  say "downloading $name"
  (cd "$CACHE" && apt-get download -qq "$name" 2>&1 | grep -v 'couldn.t be accessed by user' >&2 || true)
  kpkg=$(ls "$CACHE"/linux-image-6.1.0-*-amd64_*.deb | head -1)
fi

stamp=$(cat "$0" "$LAB_DIR/guest/init" "$LAB_DIR/guest/wl.c" <(basename "$kpkg") | sha256sum | cut -c1-16)
if [ -s "$CACHE/vmlinuz" ] && [ -s "$CACHE/initramfs.gz" ] && [ "$(cat "$CACHE/stamp" 2>/dev/null)" = "$stamp" ]; then
  say "cached: $CACHE/vmlinuz $CACHE/initramfs.gz"
  exit 0
fi

work=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$kpkg" "$work/k"
kver=$(ls "$work/k/lib/modules" | head -1)
cp "$work/k/boot/vmlinuz-$kver" "$work/vmlinuz"

root="$work/root"
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,lib/modules,lib64,lib/x86_64-linux-gnu}
cp /bin/busybox "$root/bin/busybox"
file "$root/bin/busybox" 2>/dev/null | grep -q 'dynamically' && { echo "lab image: /bin/busybox is not static" >&2; exit 1; }
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_balloon; do
  f=$(find "$work/k/lib/modules/$kver" -name "$m.ko*" | head -1)
  [ -n "$f" ] || { say "note: $m not a module in $kver (built in?)"; continue; }
  case "$f" in
    *.ko.xz) xz -dc "$f" > "$root/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$f" > "$root/lib/modules/$m.ko" ;;
    *) cp "$f" "$root/lib/modules/$m.ko" ;;
  esac
done
gcc -static -O2 -Wall -pthread -o "$root/bin/wl" "$LAB_DIR/guest/wl.c"
# stress is dynamically linked: copy it with the libraries ldd names
cp /usr/bin/stress "$root/bin/stress"
for lib in $(ldd /usr/bin/stress | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"
done
install -m 0755 "$LAB_DIR/guest/init" "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$work/initramfs.gz"

mv "$work/vmlinuz" "$CACHE/vmlinuz"
mv "$work/initramfs.gz" "$CACHE/initramfs.gz"
echo "$kver" > "$CACHE/kernel-version"
echo "$stamp" > "$CACHE/stamp"
say "built $CACHE/vmlinuz ($kver) and $CACHE/initramfs.gz ($(du -h "$CACHE/initramfs.gz" | cut -f1))"
