#!/usr/bin/env bash
# The whole test suite: type-check every package, then run every package's
# tests (vitest, real nats-server, real processes). Ends with one line
# "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh || exit 1
# the container suite: Docker and the images (as root, installed and built here); without them those tests skip,
# or fail where LOCKSTEP_REQUIRE_DOCKER=1 (CI)
if ! bash scripts/ensure-docker.sh; then
  [[ "${LOCKSTEP_REQUIRE_DOCKER:-0}" == 1 ]] && { echo "lockstep: LOCKSTEP_REQUIRE_DOCKER=1 and no Docker engine or images" >&2; exit 1; }
fi
# the status page's browser tests: Debian's chromium (as root, installed here); without it those tests skip,
# or fail where LOCKSTEP_REQUIRE_BROWSER=1 (CI)
if ! bash scripts/ensure-browser.sh; then
  [[ "${LOCKSTEP_REQUIRE_BROWSER:-0}" == 1 ]] && { echo "lockstep: LOCKSTEP_REQUIRE_BROWSER=1 and no chromium" >&2; exit 1; }
fi
export TESTCONTAINERS_RYUK_DISABLED=true   # its reaper image cannot be pulled here; the tests stop their containers
export TURBO_TELEMETRY_DISABLED=1
# formatting and lint (biome): a machine file that reads a clock, a timer or the process fails here
echo "lockstep: biome ci (format and lint)" >&2
npx biome ci . >&2 || { echo "lockstep: formatting or lint failed (npm run format fixes formatting; see above)" >&2; exit 1; }
results=$(mktemp -d)
export LOCKSTEP_TEST_RESULTS="$results"
npx turbo run typecheck test --concurrency=1 --log-order=stream "$@"
status=$?
node scripts/test-summary.mjs "$results" || status=1
rm -rf "$results"
exit $status
