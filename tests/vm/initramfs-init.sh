#!/bin/busybox sh
# The VM's first init (inside the initramfs; setup.sh packs it): mounts this machine's / read-only
# over 9p under a RAM overlay (the guest may write anywhere; nothing reaches the host), the
# read-write scratch share, then hands over to rh.init (tests/vm/guest-init.sh) in that root.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/ttyS0 2>&1
for module in $(cat /modules/load-order); do insmod "/modules/$module.ko"; done
param() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p"; }
fail() { echo "rh-host vm: $*"; echo o >/proc/sysrq-trigger; sleep 5; }
scratch=$(param rh.scratch)
next=$(param rh.init)
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /host || fail "cannot mount the host's / over 9p"
mount -t tmpfs -o mode=0755 tmpfs /overlay
mkdir -p /overlay/upper /overlay/work
mount -t overlay -o lowerdir=/host,upperdir=/overlay/upper,workdir=/overlay/work overlay /root || fail "cannot mount the overlay"
mkdir -p "/root$scratch"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 scratch "/root$scratch" || fail "cannot mount the scratch share"
for fs in dev proc sys; do mount --move "/$fs" "/root/$fs"; done
exec switch_root /root "$next"
