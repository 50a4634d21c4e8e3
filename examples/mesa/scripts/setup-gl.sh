#!/bin/sh
# Runs inside the test-gl image (chroot): record what the GL stack offers so
# jobs can check their expectations against the image they run in.
set -eu
mkdir -p /etc/mesa-ci
{
  echo "GALLIUM_DRIVER=${GALLIUM_DRIVER:-llvmpipe}"
  echo "export GALLIUM_DRIVER"
} > /etc/mesa-ci/env
ls /usr/lib/*/dri/ | sort > /etc/mesa-ci/dri-drivers.txt
test -s /etc/mesa-ci/dri-drivers.txt
