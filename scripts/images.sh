#!/usr/bin/env bash
# Build every image the compose file and the container tests use, without pulling anything (no registry is
# reachable on these machines), with the same code a user of @lockstep/testcontainers runs (`npx lockstep-images`,
# buildImages() in infra/src/testcontainers/images.ts):
#   lockstep-node:20      this machine's node and the libraries ldd lists (FROM scratch)
#   lockstep-nats:2.9.10  Debian's nats-server on top of it (plus a Node TCP health check)
#   lockstep:dev          the CLI's bundle (orchestrator/dist) and pino on top of it
# The tags come from LOCKSTEP_IMAGE, LOCKSTEP_NATS_IMAGE and LOCKSTEP_NODE_IMAGE when set (checked; a bad one exits 2),
# so that people sharing one Docker engine each build their own: the compose command, the container tests and the
# testcontainers package read the same variables.
# It builds the package first (node infra/build.mjs, when stale). With a registry, `BASE=node:20-bookworm-slim
# scripts/images.sh` builds on the official image instead.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v docker >/dev/null || { echo "images: docker is not installed (Debian: apt-get install -y docker.io)" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "images: the Docker engine is not running (start it: dockerd > /tmp/dockerd.log 2>&1 &)" >&2; exit 2; }
[ -d node_modules ] || { echo "images: run npm ci first" >&2; exit 2; }
node infra/build.mjs --if-stale
args=()
[ -n "${BASE:-}" ] && args+=(--base "$BASE")
node infra/dist/package/bin/lockstep-images.js "${args[@]}" | sed 's/^lockstep-images:/images:/'
