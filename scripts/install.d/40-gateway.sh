#!/usr/bin/env bash
# Jupyter Enterprise Gateway 3.3.0 in its own venv (.venv-gateway/): it pins jupyter_server 1 /
# jupyter_client 6, which cannot live beside the project's jupyter_server 2. Used by
# tests/gateway/. Idempotent: skips when the pinned version is already there.
# K2LAB_SKIP_GATEWAY=1 skips it.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ "${K2LAB_SKIP_GATEWAY:-}" == 1 ]] && { echo "install: gateway skipped"; exit 0; }
venv=.venv-gateway
want=3.3.0
if [[ -x "$venv/bin/python" ]] &&
  "$venv/bin/python" -c "import enterprise_gateway as e, sys; sys.exit(e.__version__ != '$want')" 2>/dev/null; then
  echo "install: enterprise gateway $want ok ($venv)"
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q "jupyter_enterprise_gateway==$want"
"$venv/bin/python" -c "import enterprise_gateway as e; assert e.__version__ == '$want', e.__version__"
echo "install: enterprise gateway $want installed ($venv)"
