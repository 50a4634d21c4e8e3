#!/bin/sh
# Runs inside the test-vk image (chroot): fail the build if no Vulkan driver
# registered an ICD, and keep the list for the jobs.
set -eu
mkdir -p /etc/mesa-ci
ls /usr/share/vulkan/icd.d/ | sort > /etc/mesa-ci/vulkan-icds.txt
grep -q lvp_icd /etc/mesa-ci/vulkan-icds.txt
