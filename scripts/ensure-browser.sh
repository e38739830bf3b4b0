#!/usr/bin/env bash
# For the status page's browser tests: Debian's chromium (driven by playwright-core).
# As root on Debian it installs chromium when missing; elsewhere it says what is
# missing and returns 1; the browser tests then skip with one line, unless
# LOCKSTEP_REQUIRE_BROWSER=1. Never `npx playwright install`: it downloads a browser build.
set -uo pipefail
bin="${LOCKSTEP_CHROMIUM:-/usr/bin/chromium}"
[[ -x "$bin" ]] && exit 0
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "lockstep: installing chromium from Debian's packages..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2 || { echo "lockstep: could not install chromium" >&2; exit 1; }
  [[ -x "$bin" ]] && exit 0
fi
echo "lockstep: no chromium at $bin (Debian: sudo apt-get install -y chromium); the browser tests will skip" >&2
exit 1
