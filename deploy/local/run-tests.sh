#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, then runs every
# unit and integration test through ctest. Integration tests start real
# Mosquitto, ingestd, mqtt-bridge and agents on free loopback ports.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=${ROLLERTRACE_BUILD_DIR:-$root/build}
bash "$root/deploy/local/install-deps.sh"
bash "$root/deploy/local/build.sh"
cd "$build_dir"
ctest --output-on-failure -j "$(nproc)" --timeout 600 "$@"
