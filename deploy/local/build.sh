#!/usr/bin/env bash
# Configures and builds RollerTrace into build/ (Release). Generated protobuf
# code lives only there.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=${ROLLERTRACE_BUILD_DIR:-$root/build}
jobs=${ROLLERTRACE_JOBS:-$(nproc)}
echo "build: configuring in $build_dir"
mkdir -p "$build_dir"
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >"$build_dir/configure.log" 2>&1 || {
  cat "$build_dir/configure.log"; exit 1; }
echo "build: compiling with $jobs jobs (a first build takes several minutes)"
cmake --build "$build_dir" -j "$jobs"
