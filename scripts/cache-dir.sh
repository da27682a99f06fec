#!/usr/bin/env bash
# Usage: scripts/cache-dir.sh
#
# Prints the cache folder the scripts share, creating it: DERIVER_LIVE_CACHE, else
# ~/.cache/deriver-live (shared by clones on one machine), else .cache in the clone (a home that
# cannot be written).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${DERIVER_LIVE_CACHE:-${HOME:-}/.cache/deriver-live}
if ! { mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ]; }; then
  cache=$PWD/.cache
  mkdir -p "$cache"
fi
echo "$cache"
