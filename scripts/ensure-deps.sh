#!/usr/bin/env bash
# Installs what lockstep needs and is missing: npm packages, and Debian's
# nats-server when run as root. Otherwise says exactly what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

need_major=20; need_minor=6
if ! command -v node >/dev/null 2>&1; then
  echo "lockstep: Node.js >= ${need_major}.${need_minor} is required (not found). Debian: apt-get install -y nodejs npm, or install Node 20 from nodejs.org." >&2
  exit 1
fi
ver=$(node -p 'process.versions.node')
major=${ver%%.*}; rest=${ver#*.}; minor=${rest%%.*}
if (( major < need_major || (major == need_major && minor < need_minor) )); then
  echo "lockstep: Node.js >= ${need_major}.${need_minor} is required; found ${ver}." >&2
  exit 1
fi

# npm packages: install when node_modules is missing or older than the lock file.
if [[ ! -d node_modules || ! -e node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "lockstep: installing npm packages (npm ci)..." >&2
  npm ci --no-audit --no-fund >&2
fi

find_nats() {
  command -v nats-server 2>/dev/null && return 0
  for p in /usr/sbin/nats-server /usr/local/bin/nats-server /usr/bin/nats-server; do
    [[ -x "$p" ]] && { echo "$p"; return 0; }
  done
  return 1
}
if ! find_nats >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "lockstep: installing nats-server from Debian's packages..." >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >&2
    # Debian's package starts a system service on 4222; lockstep starts its own servers on free ports.
    (command -v systemctl >/dev/null 2>&1 && systemctl disable --now nats-server >/dev/null 2>&1) || true
  else
    echo "lockstep: nats-server (2.9 or newer) is required and was not found." >&2
    echo "  Debian/Ubuntu: sudo apt-get install -y nats-server" >&2
    echo "  elsewhere: put the nats-server binary on PATH" >&2
    exit 1
  fi
fi

# the CLI's bundle (orchestrator/dist, which every role process runs): built when missing or older than the sources
node orchestrator/build.mjs --if-stale
