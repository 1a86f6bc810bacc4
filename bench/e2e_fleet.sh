#!/usr/bin/env bash
# End-to-end events/s: roller-fleet -> Mosquitto -> mqtt-bridge -> ingestd ->
# RocksDB, until every event is acknowledged back to its device. All on
# loopback, on ports picked free.
# Usage: bench/e2e_fleet.sh [ROLLERS] [DAYS] [--no-authorize]
#   --no-authorize: rollers do not ask before sessions (transport only)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ROLLERTRACE_BUILD_DIR:-$root/build}
rollers=${1:-100}
days=${2:-28}
extra=${3:-}
work=$(mktemp -d /tmp/rollertrace-e2e-bench.XXXXXX)
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mqtt=$(free_port) grpc=$(free_port) m1=$(free_port) m2=$(free_port)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 1024\nmax_queued_messages 100000\n' "$mqtt" >"$work/m.conf"
"$root/deploy/mosquitto/run-mosquitto.sh" -c "$work/m.conf" >"$work/mosquitto.log" 2>&1 & pids+=($!)
ROLLERTRACE_PSEUDONYM_SECRET=bench-secret-0123456789 "$bin/services/ingest/ingestd" --listen "127.0.0.1:$grpc" \
  --metrics "127.0.0.1:$m1" --data-dir "$work/db" --insecure-no-auth >"$work/ingestd.log" 2>&1 & pids+=($!)
"$bin/services/bridge/mqtt-bridge" --mqtt "tcp://127.0.0.1:$mqtt" --ingestd "127.0.0.1:$grpc" --metrics "127.0.0.1:$m2" \
  >"$work/bridge.log" 2>&1 & pids+=($!)
sleep 1.5
start=$(date +%s.%N)
"$bin/edge/agent/roller-fleet" --rollers "$rollers" --sterilisers 4 --days "$days" --rate 0 --mqtt "tcp://127.0.0.1:$mqtt" \
  --register-with "127.0.0.1:$grpc" --spool-dir "$work/spool" --metrics "" $extra 2>"$work/fleet.log"
end=$(date +%s.%N)
events=$(grep -o '[0-9]* recorded' "$work/fleet.log" | tail -1 | cut -d' ' -f1)
awk -v e="$events" -v s="$start" -v t="$end" -v r="$rollers" 'BEGIN {
  printf "e2e: %d rollers + 4 sterilisers, %d events recorded, spooled, sent, stored and acked in %.2f s = %.0f events/s\n", r, e, t - s, e / (t - s) }'
tail -1 "$work/fleet.log"
