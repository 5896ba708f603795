#!/usr/bin/env bash
# Enables the k2lab server extension in .venv for the editable install (a wheel install ships the
# same file through shared-data). Idempotent: copies only when the file differs.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=jupyter-config/server-config/k2lab.json
dest=.venv/etc/jupyter/jupyter_server_config.d/k2lab.json
mkdir -p "$(dirname "$dest")"
cmp -s "$src" "$dest" 2>/dev/null || cp "$src" "$dest"
