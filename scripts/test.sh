#!/usr/bin/env bash
# Installs rh-host with its test tools and runs lint and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
