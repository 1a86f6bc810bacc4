#!/usr/bin/env bash
# Decision and command latency over MQTT, idle and during a burst. Starts
# Mosquitto, ingestd and mqtt-bridge on free loopback ports, then runs
# bench/latency (N authorisation round trips over MQTT and over gRPC, and N
# unlock -> command round trips) once idle and once while rollertrace-loadgen
# publishes a burst of D x M x E events at full speed.
# Usage: bench/latency.sh [N] [DEVICES] [MESSAGES] [EVENTS]   (default 400 100 200 50)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ROLLERTRACE_BUILD_DIR:-$root/build}
N=${1:-400} D=${2:-100} M=${3:-200} E=${4:-50}
work=$(mktemp -d /tmp/rollertrace-latency.XXXXXX)
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mqtt=$(free_port) grpc=$(free_port) m1=$(free_port) m2=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 1024\nmax_queued_messages 500000\nmax_packet_size 1048576\nset_tcp_nodelay true\n' "$mqtt" >"$work/m.conf"
mosquitto -c "$work/m.conf" >"$work/mosquitto.log" 2>&1 & pids+=($!)
ROLLERTRACE_PSEUDONYM_SECRET=bench-secret-0123456789 "$bin/services/ingest/ingestd" --listen "127.0.0.1:$grpc" \
  --metrics "127.0.0.1:$m1" --data-dir "$work/db" --insecure-no-auth >"$work/ingestd.log" 2>&1 & pids+=($!)
sleep 0.5
"$bin/services/bridge/mqtt-bridge" --mqtt "tcp://127.0.0.1:$mqtt" --ingestd "127.0.0.1:$grpc" --metrics "127.0.0.1:$m2" \
  >"$work/bridge.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -sf "127.0.0.1:$m2/metrics" | grep -q '^rollertrace_bridge_mqtt_connected 1' && break; sleep 0.1; done
lat() { "$bin/bench/latency" --mqtt "tcp://127.0.0.1:$mqtt" --ingestd "127.0.0.1:$grpc" -n "$N" "$@"; }
echo "== idle"
lat --roller LAT-IDLE --echo
echo "== while $((D * M * E)) events are published at full speed and ingested"
"$bin/tools/loadgen/rollertrace-loadgen" --devices "$D" --register-with "127.0.0.1:$grpc" --register-only
"$bin/tools/loadgen/rollertrace-loadgen" --mqtt "tcp://127.0.0.1:$mqtt" --devices "$D" --messages "$M" --events "$E" \
  --format bin >"$work/loadgen.out" & lgpid=$!
sleep 0.3
lat --roller LAT-BURST --no-commands --echo
wait $lgpid
cat "$work/loadgen.out"
stored=$(curl -s "127.0.0.1:$m1/metrics" | awk '/^rollertrace_events_ingested_total/ {s += $2} END {printf "%d", s}')
echo "events stored by the end of the measurement: $stored"
