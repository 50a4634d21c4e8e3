#!/usr/bin/env bash
# Installs what rootstock's demo and tests need on Debian 12 (as root): the peer tools
# from Debian's archive and the npm dependencies. Idempotent and quiet when done before.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(ca-certificates openssl git tar zstd pigz gzip cpio time python3 libarchive-tools attr libcap2-bin
  mmdebstrap tar-split skopeo podman buildah umoci docker-registry crun fuse-overlayfs
  erofs-utils ostree casync hyperfine)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian service listens on every interface; tests start their own on 127.0.0.1.
if systemctl is-active --quiet docker-registry 2>/dev/null; then systemctl disable --now docker-registry >/dev/null 2>&1 || true; fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

# Compile once: bin/rootstock.js runs dist/ while it is newer than every source file
# (much faster to start than transpiling), and the sources through tsx otherwise.
npm run --silent build
