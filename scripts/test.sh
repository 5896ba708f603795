#!/usr/bin/env bash
# The whole test suite: install (idempotent), lint, type checks, tests, browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
status=0
step() {
  echo "=== $*"
  "$@" || { echo "FAILED: $*"; status=1; }
}
step ruff check k2lab tests benchmarks
step ruff format --check k2lab tests benchmarks
step mypy
# pytest-jupyter's event-loop fixtures and Playwright's sync API do not mix: browser tests run in
# their own invocation.
step pytest -q -m "not browser" tests
for t in scripts/test.d/*.sh; do
  [[ -e "$t" ]] || continue
  step bash "$t"
done
if [[ "${K2LAB_SKIP_BROWSER:-0}" != 1 ]]; then
  step pytest -q -m browser tests
fi
exit $status
