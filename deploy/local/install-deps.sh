#!/usr/bin/env bash
# Installs every Debian package RollerTrace needs to build, run and test.
# Idempotent: packages already present are skipped, so a second run is quick.
set -euo pipefail

packages=(
  cmake g++ make pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  librocksdb-dev libpaho-mqttpp-dev libpaho-mqtt-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libspdlog-dev libssl-dev nlohmann-json3-dev libyaml-cpp-dev libabsl-dev
  mosquitto mosquitto-clients
  prometheus prometheus-alertmanager curl python3
  libjs-chart.js chromium fonts-dejavu-core openssl
  libcpp-httplib-dev libsimdjson-dev libjemalloc-dev
  nats-server libnats-dev python3-yaml
  python3-paho-mqtt bc  # the shared peers (bench/ingest_compare.sh --peers): Python + SQLite subscriber
)
# Node.js and npm drive Chromium in the console's browser tests. A machine may
# have them from elsewhere (NodeSource's nodejs bundles npm and conflicts with
# Debian's): only what is missing comes from Debian.
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
# kubectl checks the cluster manifests (deploy/k8s); another kubectl (Google's
# packages) owns /usr/bin/kubectl and conflicts with Debian's.
command -v kubectl >/dev/null 2>&1 || packages+=(kubernetes-client)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
