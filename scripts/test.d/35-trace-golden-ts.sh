#!/usr/bin/env bash
# The labextension's fold (labextension/src/trace-renderer/fold.ts) follows RunView's rules: it is
# run with node against the golden traces of tests/trace/data/ (issue 9). Needs the compiled lib/
# (jlpm build:lib, or the build scripts/install.sh runs).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v node >/dev/null 2>&1 || { echo "trace golden ts: node missing, skipped"; exit 0; }
if [ ! -f labextension/lib/trace-renderer/fold.js ] \
  || [ labextension/src/trace-renderer/fold.ts -nt labextension/lib/trace-renderer/fold.js ]; then
  (cd labextension && PATH="$PWD/../.venv/bin:$PATH" flock /tmp/k2lab-build.lock jlpm build:lib)
fi
# lib/ is ES modules in a package without "type": "module": load it as such
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lib/trace-renderer" "$tmp/test"
cp labextension/lib/trace-renderer/fold.js "$tmp/lib/trace-renderer/fold.js"
echo '{"type": "module"}' > "$tmp/package.json"
sed "s#join(here, '..', '..', 'tests', 'trace', 'data')#'$PWD/tests/trace/data'#" \
  labextension/test/trace-golden.mjs > "$tmp/test/trace-golden.mjs"
node "$tmp/test/trace-golden.mjs"
