#!/usr/bin/env bash
# The main job on the embedded default (the local store in ./.rootstock, no registry):
# build a real Debian root filesystem with mmdebstrap, import it as a zstd:chunked
# image, and show what the store now holds.
set -euo pipefail
cd "$(dirname "$0")/.."
rootstock() { node bin/rootstock.js "$@"; }

cache=.cache
mkdir -p "$cache"
rootfs="$cache/debian-bookworm-essential.tar"
if [ ! -s "$rootfs" ]; then
  echo "demo: building a Debian bookworm root filesystem with mmdebstrap (once, ~1 minute)" >&2
  SOURCE_DATE_EPOCH=1700000000 mmdebstrap --quiet --mode=root --format=tar --variant=essential \
    bookworm "$rootfs.partial"
  mv "$rootfs.partial" "$rootfs"
fi

rootstock import "$rootfs" store:debian/bookworm:essential
echo
rootstock inspect store:debian/bookworm:essential
echo
rootstock -q store fsck
rootstock store du
