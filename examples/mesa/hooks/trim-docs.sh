#!/bin/sh
# mmdebstrap customize hook: $1 is the root directory being built.
# Test images never need documentation; dpkg is told to skip it for later
# installs too, so children stay small.
set -eu
root="$1"
mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
cat > "$root/etc/dpkg/dpkg.cfg.d/01-rootstock-nodoc" <<'CFG'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
CFG
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
rm -rf "$root/usr/share/man" "$root/usr/share/info"
