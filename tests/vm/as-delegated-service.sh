#!/bin/bash
# Inside the test VM, as root: run COMMAND... as uid 65534 in a cgroup delegated to it, the way
# systemd's Delegate=yes starts a service (the dir, its cgroup.procs, cgroup.subtree_control and
# cgroup.threads owned by the service's uid; the service started inside it). Example:
#   tests/vm/vmrun tests/vm/as-delegated-service.sh .venv/bin/rh-host doctor
set -euo pipefail
service=/sys/fs/cgroup/rh-service
mkdir -p "$service"
chown 65534:65534 "$service" "$service"/cgroup.procs "$service"/cgroup.subtree_control "$service"/cgroup.threads
echo $$ >"$service/cgroup.procs"
exec setpriv --reuid=65534 --regid=65534 --clear-groups env HOME=/tmp "$@"
