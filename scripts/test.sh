#!/usr/bin/env bash
# The whole test suite: type-check every package, then run every package's
# tests (vitest, real nats-server, real processes). Ends with one line
# "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh || exit 1
export TURBO_TELEMETRY_DISABLED=1
results=$(mktemp -d)
export LOCKSTEP_TEST_RESULTS="$results"
npx turbo run typecheck test --concurrency=1 --log-order=stream "$@"
status=$?
node scripts/test-summary.mjs "$results" || status=1
rm -rf "$results"
exit $status
