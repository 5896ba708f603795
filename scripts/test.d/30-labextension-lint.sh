#!/usr/bin/env bash
# Lint and type-check the labextension's TypeScript: prettier --check, eslint, tsc --noEmit.
# (scripts/install.sh has run: node_modules is installed by install.d/30-labextension.sh.)
set -euo pipefail
cd "$(dirname "$0")/../../labextension"
export PATH="$(cd .. && pwd)/.venv/bin:$PATH"
[[ -d node_modules ]] || CI=true jlpm install >/dev/null
jlpm run lint:check
jlpm run typecheck
echo "labextension lint + typecheck: ok"
