#!/usr/bin/env bash
# `npm test` runs this first (pretest): the browser tests drive Debian's chromium. When it is
# missing and we are root, install it from Debian's packages; otherwise say what to do and go on
# (the browser tests then fail, loudly, naming the missing binary).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "pretest: /usr/bin/chromium is missing and this is not root: run 'sudo apt-get install chromium'" >&2
  exit 0
fi
echo "pretest: installing Debian's chromium for the browser tests (apt-get, once)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
