#!/usr/bin/env bash
# Runs the test modules that need a cgroup-v2-only machine inside the test VM, as root: the v2
# backend's own tests, the doctor's probe, and the isolation, process-backend and hostile modules.
# Extra arguments go to pytest. Exit status: pytest's (124: timeout, 125: the VM gave none).
set -euo pipefail
cd "$(dirname "$0")/../.."
modules=(
    tests/sandbox/linux/test_vm_guest.py
    tests/sandbox/linux/test_cgroups_v2.py
    tests/sandbox/test_probe.py
    tests/sandbox/test_factory.py
    tests/sandbox/python/test_process.py
    tests/sandbox/python/test_hostile.py
)
exec tests/vm/vmrun -t "${RH_VM_TIMEOUT_S:-1800}" .venv/bin/python -m pytest -q -p no:cacheprovider "${modules[@]}" "$@"
