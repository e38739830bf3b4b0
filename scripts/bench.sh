#!/usr/bin/env bash
# Benchmarks: control plane and data plane on tiny and demo, against raw NATS measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
exec node orchestrator/bin/lockstep.js bench "$@"
