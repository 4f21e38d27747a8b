#!/bin/bash
# Inside the VM (tests/vm/vmrun tests/vm/smoke.sh): cgroup2 is the only cgroup hierarchy, its root
# offers memory, pids and cpu, and a child cgroup's memory.max OOM-kills, pids.max refuses forks
# and cgroup.kill ends a setsid daemon. Exit status 0 only when every check passes.
set -u
cg=/sys/fs/cgroup
failed=0
check() {
    local what=$1
    shift
    if "$@"; then echo "ok   $what"; else echo "FAIL $what"; failed=1; fi
}
check "/sys/fs/cgroup is cgroup2" test "$(stat -fc %T $cg)" = cgroup2fs
check "no cgroup v1 hierarchy is mounted" bash -c "! grep -q ' cgroup ' /proc/mounts"
check "/proc/self/cgroup has only the unified line" bash -c '[ "$(cut -d: -f1,2 /proc/self/cgroup)" = "0:" ]'
for controller in memory pids cpu; do
    check "$controller enabled at the root" grep -qw "$controller" $cg/cgroup.subtree_control
done
mkdir $cg/smoke
echo 32M >$cg/smoke/memory.max
echo 0 >$cg/smoke/memory.swap.max
echo 8 >$cg/smoke/pids.max
(sh -c "echo \$\$ >$cg/smoke/cgroup.procs; exec python3 -c 'b\"x\" * (128 << 20)'") 2>/dev/null
check "memory.max OOM-kills (SIGKILL status)" test $? = 137
check "memory.events counts the OOM kill" grep -q '^oom_kill 1$' $cg/smoke/memory.events
sh -c "echo \$\$ >$cg/smoke/cgroup.procs; for i in \$(seq 20); do sleep 5 & done; wait" 2>/dev/null
check "pids.max refuses forks beyond it" bash -c "grep -q '^max [1-9]' $cg/smoke/pids.events"
echo 64 >$cg/smoke/pids.max
daemon=$(sh -c "echo \$\$ >$cg/smoke/cgroup.procs; setsid sleep 300 </dev/null >/dev/null 2>&1 & echo \$!")
sleep 0.3
check "a setsid daemon sits in the cgroup" grep -qx "0::/smoke" /proc/"$daemon"/cgroup
echo 1 >$cg/smoke/cgroup.kill
for _ in $(seq 50); do grep -q '^populated 0' $cg/smoke/cgroup.events && break; sleep 0.1; done
check "cgroup.kill emptied it" grep -q '^populated 0' $cg/smoke/cgroup.events
check "the daemon is gone" test ! -e /proc/"$daemon"
rmdir $cg/smoke
exit $failed
