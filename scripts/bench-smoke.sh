#!/usr/bin/env bash
# Runs every `npm run bench:*` on a tiny shape and checks that each one exits by itself, with
# status 0, and that its last line is a JSON summary. Timing is not checked here (benchmarks
# report figures; they do not pass or fail on them). PostgreSQL phases use TEST_DATABASE_URL when
# set, else the embedded server the tests use.
set -uo pipefail
cd "$(dirname "$0")/.."
LIMIT=${BENCH_SMOKE_LIMIT:-300}
failed=0
# run "VAR=value ..." bench:name [-- args]
run() {
  local vars=$1 name=$2
  shift 2
  local out
  out=$(mktemp)
  local start=$SECONDS
  # shellcheck disable=SC2086 # the variables are words on purpose
  if env $vars timeout --kill-after=10 "$LIMIT" npm run --silent "$name" "$@" >"$out" 2>&1; then
    if tail -n 1 "$out" | node -e 'JSON.parse(require("fs").readFileSync(0, "utf8"))' 2>/dev/null; then
      echo "bench smoke: $name $* exited 0 with a JSON summary ($((SECONDS - start)) s)"
    else
      echo "bench smoke: $name $* exited 0 but its last line is not JSON:"; tail -n 5 "$out"; failed=1
    fi
  else
    echo "bench smoke: $name failed or did not exit within ${LIMIT} s:"; tail -n 20 "$out"; failed=1
  fi
  rm -f "$out"
}
run "TASKS=2000 UNITS=50" bench:scheduler
run "TASKS=2000 UNITS=50" bench:scheduler -- --store postgres
run "SESSIONS=200 QUERIES=500" bench:status
run "SUBSCRIBERS=50 LATENCY_ROUNDS=15 SUBSCRIBERS_CROSS=20 IDLE_ROUNDS=20 MESSAGE_ROUNDS=20" bench:live
run "PHASE_MS=500 GARBAGE_CLIENTS=4" bench:hostile
run "INGEST_SECONDS=1 INGEST_CONNECTIONS=4" bench:ingest
run "SIZES=2000 QUERIES=5 ACTIVE=10" bench:history
run "SESSIONS=2 MESSAGES=20 RPM=600 LATENCY_MS=20" bench:llm
run "WAITING=200 CLAIMS=20" bench:claims
run "WAITING=100 CLAIMS=20" bench:claims -- --store postgres
run "SIZES=2000 QUERIES=20 ROUNDS=2" bench:honcho
run "SUBSCRIBERS=50" bench:memory
run "" bench -- --only claims-sqlite --runs 2
run "" bench -- --from bench/results.json
exit $failed
