#!/usr/bin/env bash
# Builds the JupyterLab extension (labextension/ -> k2lab/labextension/) when it is missing or
# older than its sources, then links it where JupyterLab looks (.venv/share/jupyter/labextensions/
# k2lab), as `jupyter labextension develop` would. Users of the wheel get the prebuilt copy and
# need no Node; building from a clone needs Node >= 18 (jlpm, shipped with jupyterlab, is yarn).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
export PATH="$ROOT/.venv/bin:$PATH"
out=k2lab/labextension
ext=labextension

stale=0
if [[ ! -f $out/package.json ]]; then
  stale=1
elif [[ -n $(find $ext/src $ext/style $ext/schema $ext/package.json $ext/yarn.lock $ext/tsconfig.json \
  k2lab/trace/trace_view.css -newer $out/package.json -print -quit 2>/dev/null) ]]; then
  stale=1
fi

if ((stale)); then
  command -v node >/dev/null 2>&1 || {
    echo "labextension: Node.js is needed to build the extension from source" >&2
    exit 1
  }
  (
    cd $ext
    # CI=true: yarn must use the committed lockfile as is (YN0028 if it would change it)
    if [[ ! -d node_modules || yarn.lock -nt node_modules/.yarn-state.yml ]]; then
      CI=true jlpm install 2>&1 | grep -E "YN0001|YN0028|Error" >&2 || true
      [[ -d node_modules/@jupyterlab/builder ]] || { echo "labextension: jlpm install failed" >&2; exit 1; }
    fi
    jlpm build:prod >/tmp/k2lab-labextension-build.log 2>&1 || {
      tail -40 /tmp/k2lab-labextension-build.log >&2
      echo "labextension: build failed (log: /tmp/k2lab-labextension-build.log)" >&2
      exit 1
    }
  )
  echo "labextension: built $out"
fi

# the editable install: point JupyterLab's labextensions dir at the build output
# install.json travels inside the built folder (one shared-data entry in pyproject.toml): a
# second entry for it collides once an editable install has written it through the link below
cmp -s $ext/install.json $out/install.json || cp $ext/install.json $out/install.json

dest=.venv/share/jupyter/labextensions/k2lab
mkdir -p "$(dirname "$dest")"
if [[ ! -L $dest || $(readlink "$dest") != "$ROOT/$out" ]]; then
  rm -rf "$dest"
  ln -s "$ROOT/$out" "$dest"
fi
