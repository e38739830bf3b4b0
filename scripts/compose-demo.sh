#!/usr/bin/env bash
# Train the demo in containers: build the images (offline), bring infra/compose/demo.yaml up,
# wait for the client container, print its summary, take everything down; exit with the client's code.
# Works with `docker compose` (v2) and the standalone `docker-compose` 1.29.
set -euo pipefail
cd "$(dirname "$0")/.."
file=infra/compose/demo.yaml
if docker compose version >/dev/null 2>&1; then compose=(docker compose -f "$file"); else compose=(docker-compose -f "$file"); fi
[ "${SKIP_IMAGES:-0}" = 1 ] || scripts/images.sh
"${compose[@]}" down -v >/dev/null 2>&1 || true
"${compose[@]}" up -d
client="$("${compose[@]}" ps -q client)"
code="$(timeout "${COMPOSE_TIMEOUT:-600}" docker wait "$client" || echo 124)"
"${compose[@]}" logs --no-color client 2>&1 | grep -v '"type":"step.committed"' | tail -12
"${compose[@]}" down -v >/dev/null 2>&1 || true
echo "compose demo: client exited with code $code"
exit "$code"
