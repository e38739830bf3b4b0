#!/usr/bin/env bash
# Train the demo in containers: build the images (offline), bring the compose file up detached, show the client's
# lines as they come (not the per-step protocol lines), wait for the client's container to exit, take everything
# down; exit with the client's code. Works with `docker compose` (v2) and docker-compose 1.29.
# Detached, not `up --exit-code-from client`: that stops every container as soon as any one exits, so a host killed
# from the status page (its kill button kills the host's container and starts it again) would end the whole run.
set -euo pipefail
cd "$(dirname "$0")/.."
# LOCKSTEP_COMPOSE_FILE: another file (lockstep compose --out); COMPOSE_PROJECT_NAME (read by compose itself): another
# project, so that runs on one engine do not meet; LOCKSTEP_IMAGE, LOCKSTEP_NATS_IMAGE, LOCKSTEP_UI_PORT: read at `up`.
file=${LOCKSTEP_COMPOSE_FILE:-infra/compose/demo.yaml}
[ -f "$file" ] || { echo "compose demo: no compose file $file" >&2; exit 2; }
if docker compose version >/dev/null 2>&1; then compose=(docker compose -f "$file"); else compose=(docker-compose -f "$file"); fi
[ "${SKIP_IMAGES:-0}" = 1 ] || scripts/images.sh
down() { "${compose[@]}" down -v >/dev/null 2>&1 || true; }
down
trap down EXIT
port=${LOCKSTEP_UI_PORT:-$(sed -n 's|^# Status page: http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$file")}
echo "compose demo: status page at http://127.0.0.1:${port:-7373}/ (the ui service, while the run lasts)"
"${compose[@]}" up -d --no-color >/dev/null 2>&1 || { "${compose[@]}" up -d --no-color; exit 1; }
client=$("${compose[@]}" ps -q client)
# the client's lines until its container stops (the follower is stopped with the run in any case)
"${compose[@]}" logs -f --no-color client 2>&1 |
  grep --line-buffered -E '^client[-_0-9 ]*\|' | grep --line-buffered -v '"type":"step.committed"' | sed -u -E 's/^client[-_0-9 ]*\| ?//' &
follower=$!
set +e
code=$(timeout "${COMPOSE_TIMEOUT:-600}" docker wait "$client")
[ -n "$code" ] || code=124
set -e
# the ui service closes the run's record once every process said it exited (20 s after the client's summary at most)
if grep -q -- '--runs-dir' "$file"; then
  for _ in $(seq 1 50); do
    "${compose[@]}" logs --no-color ui 2>&1 | grep -q 'run record closed' && break
    sleep 0.5
  done
fi
kill "$follower" 2>/dev/null || true
wait "$follower" 2>/dev/null || true
down
trap - EXIT
echo "compose demo: client exited with code $code"
exit "$code"
