#!/usr/bin/env bash
# Installs rh-host with its test tools and runs lint and the whole test suite. Without arguments it
# then runs the modules that need a cgroup-v2-only machine inside the test VM (tests/vm/, ~10 min
# under software emulation; RH_SKIP_VM_TESTS=1 skips them). Exits non-zero if either part failed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
.venv/bin/ruff check .
status=0
.venv/bin/python -m pytest -q -p no:cacheprovider "$@" || status=$?
if [ $# -eq 0 ] && [ -z "${RH_SKIP_VM_TESTS:-}" ]; then
    if [ "$(id -u)" = 0 ] || command -v qemu-system-x86_64 >/dev/null; then
        echo "== cgroup v2: tests/vm/test-cgroup-v2.sh (in a qemu VM; RH_SKIP_VM_TESTS=1 skips it)"
        tests/vm/test-cgroup-v2.sh || status=$?
    else
        echo "== cgroup v2 tests NOT run: qemu-system-x86_64 is missing and installing it needs root" >&2
    fi
fi
exit "$status"
