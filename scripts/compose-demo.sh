#!/usr/bin/env bash
# Train the demo in containers: build the images (offline), then the command the compose file's header gives,
# `up --exit-code-from client`, showing the client's lines as they come (not the per-step protocol lines);
# take everything down; exit with the client's code. Works with `docker compose` (v2) and docker-compose 1.29.
set -euo pipefail
cd "$(dirname "$0")/.."
# LOCKSTEP_COMPOSE_FILE: another file (lockstep compose --out); COMPOSE_PROJECT_NAME (read by compose itself): another
# project, so that runs on one engine do not meet; LOCKSTEP_IMAGE, LOCKSTEP_NATS_IMAGE, LOCKSTEP_UI_PORT: read at `up`.
file=${LOCKSTEP_COMPOSE_FILE:-infra/compose/demo.yaml}
[ -f "$file" ] || { echo "compose demo: no compose file $file" >&2; exit 2; }
if docker compose version >/dev/null 2>&1; then compose=(docker compose -f "$file"); else compose=(docker-compose -f "$file"); fi
[ "${SKIP_IMAGES:-0}" = 1 ] || scripts/images.sh
"${compose[@]}" down -v >/dev/null 2>&1 || true
port=${LOCKSTEP_UI_PORT:-$(sed -n 's|^# Status page: http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$file")}
echo "compose demo: status page at http://127.0.0.1:${port:-7373}/ (the ui service, while the run lasts)"
set +e
timeout "${COMPOSE_TIMEOUT:-600}" "${compose[@]}" up --no-color --exit-code-from client 2>&1 |
  grep --line-buffered -E '^client[-_0-9 ]*\|' | grep --line-buffered -v '"type":"step.committed"' | sed -u -E 's/^client[-_0-9 ]*\| ?//'
code=${PIPESTATUS[0]}
set -e
"${compose[@]}" down -v >/dev/null 2>&1 || true
echo "compose demo: client exited with code $code"
exit "$code"
