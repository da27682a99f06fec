#!/usr/bin/env bash
# Usage: scripts/with-node.sh MAJOR COMMAND [ARGS...]
#
# Runs COMMAND in this clone with Node.js MAJOR first on PATH (scripts/node-bin.sh) and
# better-sqlite3's native module built for it (npm run build:sqlite, the step npm ci runs). The
# module of each Node ABI is built once and kept in the cache folder, so switching back and forth
# costs a file copy. MAJOR "system" restores the machine's own Node's build.
set -euo pipefail
cd "$(dirname "$0")/.."
major=$1
shift
cache=$(scripts/cache-dir.sh)
mkdir -p "$cache/better-sqlite3"
module=node_modules/better-sqlite3/build/Release/better_sqlite3.node

# The module npm ci built is for the machine's Node: keep it before replacing it.
system_abi=$(/usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin node -p process.versions.modules)
sqlite=$(node -p 'require("./node_modules/better-sqlite3/package.json").version')
[ -f "$cache/better-sqlite3/$sqlite-abi$system_abi.node" ] || cp "$module" "$cache/better-sqlite3/$sqlite-abi$system_abi.node"

[ "$major" = system ] || PATH=$(scripts/node-bin.sh "$major"):$PATH
export PATH
abi=$(node -p process.versions.modules)
built=$cache/better-sqlite3/$sqlite-abi$abi.node
if [ ! -f "$built" ]; then
  rm -f "$module"
  npm run -s build:sqlite >&2
  cp "$module" "$built"
fi
cp "$built" "$module"
echo "with-node: Node $(node --version), better-sqlite3 for ABI $abi" >&2
exec "$@"
