#!/usr/bin/env bash
# JupyterLab settings overrides in the venv prefix: no "Jupyter news" toast and no update check
# (nothing in a fresh lab should call the network or cover the panel in screenshots).
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=.venv/share/jupyter/lab/settings/overrides.json
mkdir -p "$(dirname "$dest")"
.venv/bin/python - "$dest" <<'PY'
import json, sys
from pathlib import Path

path = Path(sys.argv[1])
data = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
data.setdefault("@jupyterlab/apputils-extension:notification", {}).update(
    {"fetchNews": "false", "checkForUpdates": False}
)
path.write_text(json.dumps(data, indent=2) + "\n")
PY
