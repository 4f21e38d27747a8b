#!/bin/bash
# PID 1 of the test VM, from this machine's own / (see initramfs-init.sh): mounts a cgroup2-only
# /sys/fs/cgroup with memory, pids and cpu enabled at its root, brings up loopback, runs the command
# vmrun left in the scratch dir as root in the directory it was called from, writes its exit status
# next to it and powers the VM off. /tmp is the host's, through the overlay (writes stay in guest RAM):
# a checkout under /tmp (a CI clone) must stay visible.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
scratch=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^rh.scratch=//p')
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
echo "+memory +pids +cpu" >/sys/fs/cgroup/cgroup.subtree_control
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
ip link set lo up
hostname rh-host-vm
# shellcheck source=/dev/null
. "$scratch/env"
cd "$(cat "$scratch/cwd")" || cd /
bash "$scratch/cmd" </dev/null
echo $? >"$scratch/rc.part" && mv "$scratch/rc.part" "$scratch/rc"
sync
echo o >/proc/sysrq-trigger
sleep 10 2>/dev/null
