#!/usr/bin/env bash
# For the container tests: a running Docker engine and lockstep's images.
# As root on Debian it installs docker.io and docker-compose when missing and
# starts dockerd when it is not running; then it builds the images without a
# registry (scripts/images.sh). Elsewhere it says what is missing and returns 1;
# the container tests then skip with one line, unless LOCKSTEP_REQUIRE_DOCKER=1.
set -uo pipefail
cd "$(dirname "$0")/.."
root=0; [[ $(id -u) -eq 0 ]] && root=1

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1; then
  if (( root )) && command -v apt-get >/dev/null 2>&1; then
    echo "lockstep: installing docker.io and docker-compose from Debian's packages..." >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose >&2 || { echo "lockstep: could not install Docker" >&2; exit 1; }
  else
    echo "lockstep: no Docker engine (Debian: sudo apt-get install -y docker.io docker-compose); the container tests will skip" >&2
    exit 1
  fi
fi

if ! docker info >/dev/null 2>&1; then
  if (( root )); then
    echo "lockstep: starting dockerd (log: /tmp/lockstep-dockerd.log)..." >&2
    nohup dockerd > /tmp/lockstep-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "lockstep: dockerd did not come up within 60 s; see /tmp/lockstep-dockerd.log" >&2; exit 1; }
  else
    echo "lockstep: the Docker engine is not running (start it: sudo dockerd &); the container tests will skip" >&2
    exit 1
  fi
fi

bash scripts/images.sh >&2
