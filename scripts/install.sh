#!/usr/bin/env bash
# Installs everything k2lab needs into .venv/ at the repository root. Idempotent: a second run
# only checks. System packages (bubblewrap for the sandbox, chromium for browser tests) come from
# apt when we are root and they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}

need_apt=()
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)
if [[ "${K2LAB_SKIP_BROWSER:-0}" != 1 ]]; then
  [[ -x /usr/bin/chromium ]] || need_apt+=(chromium)
fi
if ((${#need_apt[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "install: apt-get install ${need_apt[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "install: missing ${need_apt[*]} (not root: the sandbox falls back to the 'process' level)" >&2
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
fi
# pip's own output is noisy here (filtered), but its failure must fail the install
.venv/bin/pip install -q -e ".[dev]" 2>&1 | { grep -v "^WARNING: Location" || true; }
if ((PIPESTATUS[0] != 0)); then
  echo "install: pip install -e . failed" >&2
  exit 1
fi
.venv/bin/python -c "import k2lab" || { echo "install: k2lab failed to install" >&2; exit 1; }

# install hooks of the parts (labextension build, sandbox kernelspec) run here, in order
for hook in scripts/install.d/*.sh; do
  [[ -e "$hook" ]] || continue
  bash "$hook"
done
echo "install: ok ($ROOT/.venv)"
