#!/usr/bin/env bash
# The live trace view's ES module (k2lab/notebook/static/trace_view.js, no build step) must at least
# parse and export a render function; the browser test exercises it for real.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v node >/dev/null 2>&1 || { echo "notebook widget js: node missing, skipped"; exit 0; }
node --input-type=module -e "
const m = await import('file://$PWD/k2lab/notebook/static/trace_view.js');
if (typeof m.default?.render !== 'function') { console.error('trace_view.js: no default.render'); process.exit(1); }
console.log('trace_view.js: ok');
"
