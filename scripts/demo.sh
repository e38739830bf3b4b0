#!/usr/bin/env bash
# The demo: trains the demo topology (2 pods x 4 hosts) for 100 steps with
# real nats-servers and processes. Extra arguments go to `lockstep train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
exec node orchestrator/bin/lockstep.js train --topology demo --steps 100 "$@"
