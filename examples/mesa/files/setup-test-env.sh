#!/bin/sh
# Entry point of the test images: prepares the environment every farm shares,
# then runs the job's command (or a shell).
set -eu
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-runtime}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 0700 "$XDG_RUNTIME_DIR"
if [ -f /etc/mesa-ci/env ]; then . /etc/mesa-ci/env; fi
if [ "$#" -eq 0 ]; then exec /bin/sh; fi
exec "$@"
