#!/usr/bin/env bash
# Installs the k2lab-sandbox kernelspec into the venv (the wheel ships it as shared-data; an
# editable install does not). Idempotent: copies only when the file differs.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=.venv/share/jupyter/kernels/k2lab-sandbox
mkdir -p "$dest"
for f in kernel/*; do
  cmp -s "$f" "$dest/$(basename "$f")" || cp "$f" "$dest/"
done
.venv/bin/python - <<'PY'
from jupyter_client.kernelspec import KernelSpecManager
spec = KernelSpecManager().get_kernel_spec("k2lab-sandbox")
assert "k2lab.sandbox.launch" in spec.argv, spec.argv
PY
echo "install: kernelspec k2lab-sandbox ok ($dest)"
