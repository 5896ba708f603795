#!/usr/bin/env bash
# Installs k2lab into .venv/ and starts the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/k2lab demo "$@"
