#!/usr/bin/env bash
# Installs rh-host and runs the sample plugins over the bundled sample batch: the main job, end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/rh-host run sample_plugins/batches/openai_sample.jsonl \
  --plugin sample_plugins/python/stats_summary \
  --plugin sample_plugins/python/error_collector \
  --plugin sample_plugins/python/jsonl_exporter \
  --metadata '{"project": "demo"}' "$@"
