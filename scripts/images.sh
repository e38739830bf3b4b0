#!/usr/bin/env bash
# Build every image the compose file and the container tests use, without
# pulling anything (no registry is reachable on these machines):
#   lockstep-node:20      this machine's node and the libraries ldd lists, via `docker import`
#   lockstep-nats:2.9.10  Debian's nats-server on top of it (plus a Node TCP health check)
#   lockstep:dev          the checkout (with node_modules) on top of it
# With a registry, `BASE=node:20-bookworm-slim scripts/images.sh` builds on the official image instead.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v docker >/dev/null || { echo "images: docker is not installed (Debian: apt-get install -y docker.io)" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "images: the Docker engine is not running (start it: dockerd > /tmp/dockerd.log 2>&1 &)" >&2; exit 2; }
[ -d node_modules ] || { echo "images: run npm ci first" >&2; exit 2; }
BASE="${BASE:-lockstep-node:20}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [ "$BASE" = "lockstep-node:20" ]; then
  node_bin="$(command -v node)"
  root="$work/node-root"
  mkdir -p "$root/usr/bin" "$root/tmp" "$root/etc"
  cp "$node_bin" "$root/usr/bin/node"
  # the dynamic loader and every library node links against, at the same paths
  for lib in $(ldd "$node_bin" | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  chmod 1777 "$root/tmp"
  echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
  echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
  tar -C "$root" -c . | docker import -c 'ENV PATH=/usr/bin' -c 'CMD ["/usr/bin/node"]' - lockstep-node:20 >/dev/null
  echo "images: lockstep-node:20 ($(node --version), from $node_bin)"
fi

nats_bin="$(command -v nats-server || echo /usr/sbin/nats-server)"
[ -x "$nats_bin" ] || { echo "images: nats-server not found (Debian: apt-get install -y nats-server)" >&2; exit 2; }
mkdir -p "$work/nats"
cp "$nats_bin" "$work/nats/nats-server"
cp infra/docker/healthcheck.js "$work/nats/"
docker build -q --build-arg BASE="$BASE" -f infra/docker/nats.Dockerfile -t lockstep-nats:2.9.10 "$work/nats" >/dev/null
echo "images: lockstep-nats:2.9.10 ($("$nats_bin" --version))"

docker build -q --build-arg BASE="$BASE" -f infra/docker/Dockerfile -t lockstep:dev . >/dev/null
echo "images: lockstep:dev"
