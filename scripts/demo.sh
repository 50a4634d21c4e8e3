#!/usr/bin/env bash
# The main job on the embedded default (the local store in ./.rootstock, no registry):
# build the Mesa-shaped example graph for x86_64 (Debian bookworm from Debian's archive,
# reproducible zstd:chunked layers, tags from content), show that a second plan has
# nothing to do, then hand test-gl out as a LAVA rootfs tarball and prove with the tree
# digest that the tarball and the image hold the same root filesystem.
set -euo pipefail
cd "$(dirname "$0")/.."
rootstock() { node bin/rootstock.js "$@"; }
graph=examples/mesa/images.yaml

rootstock build "$graph" --arch x86_64 --to store:
echo
rootstock plan "$graph" --arch x86_64 --to store:
echo
mkdir -p .cache
image=store:debian/x86_64_test-gl:latest
rootstock export "$image" --format tar.zst -o .cache/lava-rootfs.tar.zst --force
echo "tree digest of the image:      $(rootstock digest "$image")"
echo "tree digest of the tarball:    $(rootstock digest .cache/lava-rootfs.tar.zst)"
echo
rootstock -q store fsck
rootstock store du
