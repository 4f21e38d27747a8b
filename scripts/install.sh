#!/usr/bin/env bash
# Installs rh-host into ./.venv on Debian/Ubuntu: system packages (when root), then the Python package.
#   scripts/install.sh          runtime only (what `rh-host run` / `rh-host serve` need)
#   scripts/install.sh --test   also test tools, guest toolchains (C, Zig, AssemblyScript), servers
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

# System packages. The sandbox interpreter is Debian's /usr/bin/python3: it must be readable by the
# unprivileged sandbox uid, which a pyenv build under /root is not.
runtime_pkgs=(python3 python3-venv python3-dev bubblewrap util-linux python3-seccomp)
test_pkgs=(clang lld wasi-libc libclang-rt-dev-wasm32 libjsmn-dev postgresql redis-server nodejs npm)

missing_pkgs() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

want=("${runtime_pkgs[@]}")
[ "$with_tests" = 1 ] && want+=("${test_pkgs[@]}")
mapfile -t need < <(missing_pkgs "${want[@]}")
# nodejs from another source already provides npm
if [ "${#need[@]}" -gt 0 ] && command -v npm >/dev/null 2>&1; then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | grep -vx -e npm -e nodejs || true)
fi
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "install: apt-get install ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "install: missing system packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

PY=/usr/bin/python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "$with_tests" = 1 ]; then
  .venv/bin/python -m pip install -q -e '.[test]'
  if [ -f sdk/assemblyscript/package.json ]; then
    (cd sdk/assemblyscript && npm ci --silent --no-audit --no-fund >/dev/null 2>&1 || npm install --silent --no-audit --no-fund >/dev/null)
  fi
else
  .venv/bin/python -m pip install -q -e .
fi
echo "install: ready (.venv/bin/rh-host)" >&2
