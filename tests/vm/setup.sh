#!/usr/bin/env bash
# Prepares the cgroup-v2 test VM once: qemu and cpio from apt (when root and missing), Debian's kernel
# and a static busybox fetched with `apt-get download` and unpacked into the cache dir (nothing is
# installed into /boot), the kernel's ELF image, and an initramfs that mounts this machine's / over
# 9p. Generated files live in $RH_HOST_VM_DIR (default ~/.cache/rh-host-vm), never in the repo.
set -euo pipefail
VM_DIR=${RH_HOST_VM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rh-host-vm}
export DEBIAN_FRONTEND=noninteractive

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v cpio >/dev/null || missing+=(cpio)
if ((${#missing[@]})); then
    if [ "$(id -u)" != 0 ]; then
        echo "setup.sh: install ${missing[*]} (apt-get install ${missing[*]}), or run this as root" >&2
        exit 2
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$VM_DIR/debs" "$VM_DIR/unpacked"
if ! compgen -G "$VM_DIR/unpacked/boot/vmlinuz-*" >/dev/null || [ ! -x "$VM_DIR/unpacked/bin/busybox" ]; then
    kernel=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    if [ -z "$kernel" ]; then
        apt-get update -qq
        kernel=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    fi
    # APT::Sandbox::User=root: the _apt user may not write into a cache dir under /root
    (cd "$VM_DIR/debs" && apt-get download -qq -o APT::Sandbox::User=root "$kernel" busybox-static)
    for deb in "$VM_DIR"/debs/*.deb; do dpkg-deb -x "$deb" "$VM_DIR/unpacked"; done
fi
bzimage=$(ls "$VM_DIR"/unpacked/boot/vmlinuz-* | sort -V | tail -1)
kver=${bzimage##*/vmlinuz-}

# qemu boots the uncompressed ELF inside the bzImage directly (PVH): seconds faster under emulation
if [ ! -s "$VM_DIR/vmlinux" ]; then
    python3 - "$bzimage" "$VM_DIR/vmlinux.part" <<'PY'
import lzma
import sys

image = open(sys.argv[1], "rb").read()
start = image.find(b"\xfd7zXZ\x00")  # Debian compresses its x86 kernels with xz
if start < 0:
    sys.exit(f"setup.sh: no xz stream in {sys.argv[1]}")
elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(image[start:])
if elf[:4] != b"\x7fELF":
    sys.exit("setup.sh: the kernel's payload is not an ELF image")
open(sys.argv[2], "wb").write(elf)
PY
    mv "$VM_DIR/vmlinux.part" "$VM_DIR/vmlinux"
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,modules,host,overlay,root}
cp "$VM_DIR/unpacked/bin/busybox" "$stage/bin/busybox"
modules="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p overlay"
for module in $modules; do
    found=$(find "$VM_DIR/unpacked/lib/modules/$kver" -name "$module.ko" | head -1)
    [ -n "$found" ] || { echo "setup.sh: kernel $kver has no module $module" >&2; exit 1; }
    cp "$found" "$stage/modules/"
done
echo "$modules" >"$stage/modules/load-order"
cp "$(dirname "$0")/initramfs-init.sh" "$stage/init"
chmod +x "$stage/init"
(cd "$stage" && find . | cpio -o -H newc --quiet) | gzip -1 >"$VM_DIR/initrd.img.part"
mv "$VM_DIR/initrd.img.part" "$VM_DIR/initrd.img"
echo "$kver" >"$VM_DIR/kernel-version"
echo "setup.sh: kernel $kver ready in $VM_DIR" >&2
