#!/usr/bin/env bash
# Decision and command latency over MQTT, idle and during a burst. Starts
# Mosquitto, ingestd and mqtt-bridge on free loopback ports, then runs
# bench/latency (N authorisation round trips over MQTT and over gRPC, and N
# unlock -> command round trips) once idle and twice while rollertrace-loadgen
# publishes a burst of D x M x E events at full speed.
# Usage: bench/latency.sh [N] [DEVICES] [MESSAGES] [EVENTS]   (default 400 100 200 50)
# SPARSE=K: K authorisations 1.05 s apart while idle (default 20).
# ROLLERTRACE_BULK_NICE=K runs ingestd and the bridge with --bulk-nice K (their default 10; 0 = off).
# ROLLERTRACE_BROKER_NICE=K: the broker's nice adjustment (deploy/mosquitto/run-mosquitto.sh; default 0).
# ROLLERTRACE_SERVICES_NICE=K starts ingestd and mqtt-bridge at nice K (their bulk threads still go to --bulk-nice).
# ROLLERTRACE_CLIENT_NICE=K runs the measuring roller (bench/latency) at nice K: below 0 it stands for
#   a roller with a processor of its own, not one that queues for this machine's cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ROLLERTRACE_BUILD_DIR:-$root/build}
N=${1:-400} D=${2:-100} M=${3:-200} E=${4:-50}
nice_arg=(); [ -n "${ROLLERTRACE_BULK_NICE:-}" ] && nice_arg=(--bulk-nice "$ROLLERTRACE_BULK_NICE")
work=$(mktemp -d /tmp/rollertrace-latency.XXXXXX)
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT
mqtt=$(free_port) grpc=$(free_port) m1=$(free_port) m2=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 1024\nmax_queued_messages 500000\nmax_packet_size 1048576\nset_tcp_nodelay true\n' "$mqtt" >"$work/m.conf"
"$root/deploy/mosquitto/run-mosquitto.sh" -c "$work/m.conf" >"$work/mosquitto.log" 2>&1 & pids+=($!)
svc_nice=(nice -n "${ROLLERTRACE_SERVICES_NICE:-0}")
ROLLERTRACE_PSEUDONYM_SECRET=bench-secret-0123456789 "${svc_nice[@]}" "$bin/services/ingest/ingestd" --listen "127.0.0.1:$grpc" \
  --metrics "127.0.0.1:$m1" --data-dir "$work/db" --insecure-no-auth "${nice_arg[@]}" >"$work/ingestd.log" 2>&1 & pids+=($!)
sleep 0.5
"${svc_nice[@]}" "$bin/services/bridge/mqtt-bridge" --mqtt "tcp://127.0.0.1:$mqtt" --ingestd "127.0.0.1:$grpc" --metrics "127.0.0.1:$m2" \
  "${nice_arg[@]}" >"$work/bridge.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -sf "127.0.0.1:$m2/metrics" | grep -q '^rollertrace_bridge_mqtt_connected 1' && break; sleep 0.1; done
lat() { nice -n "${ROLLERTRACE_CLIENT_NICE:-0}" "$bin/bench/latency" --mqtt "tcp://127.0.0.1:$mqtt" --ingestd "127.0.0.1:$grpc" -n "$N" "$@"; }
# The bridge's own share of what was measured since bridge-before.prom: its
# histogram now less then; prints the bucket that holds the 99th percentile and
# the one that holds them all (a slow hop inside the bridge or outside it).
bridge_share() {
  curl -s "127.0.0.1:$m2/metrics" >"$work/bridge-after.prom"
  # p99_of PATTERN: "P99_BUCKET ALL_BUCKET COUNT" of the histogram buckets matching PATTERN.
  p99_of() {
    awk -v q=0.99 -v pat="$1" '$0 ~ pat {
        match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5)
        if (FILENAME ~ /before/) base[le] = $2; else { n++; les[n] = le; cum[n] = $2 - base[le] } }
      END { total = cum[n]; p = ""; m = ""
            for (i = 1; i <= n; ++i) { if (p == "" && cum[i] >= q * total) p = les[i]; if (m == "" && cum[i] >= total) m = les[i] }
            printf "%s %s %d\n", p, m, total }' "$work/bridge-before.prom" "$work/bridge-after.prom"
  }
  read -r p m total < <(p99_of '^rollertrace_bridge_authorize_seconds_bucket')
  read -r qp qm _ < <(p99_of '^rollertrace_bridge_authorize_stage_seconds_bucket[{].*stage="queued"')
  read -r ip im _ < <(p99_of '^rollertrace_bridge_authorize_stage_seconds_bucket[{].*stage="ingestd"')
  printf 'in the bridge, request off MQTT to decision published: p99 <= %s s, all <= %s s (%d requests);' "$p" "$m" "$total"
  printf ' of it queued p99 <= %s, all <= %s; ingestd p99 <= %s, all <= %s\n' "$qp" "$qm" "$ip" "$im"
}
echo "== idle"
curl -s "127.0.0.1:$m2/metrics" >"$work/bridge-before.prom"
lat --roller LAT-IDLE --echo
bridge_share
# A clinic's authorisations come seconds apart, not back to back: after a
# quiet second an MQTT client's threads are asleep (docs/BENCHMARKS.md,
# eleventh session). SPARSE rounds, each 1.05 s after the last.
echo "== idle, each authorisation 1.05 s after the last"
curl -s "127.0.0.1:$m2/metrics" >"$work/bridge-before.prom"
"$bin/bench/latency" --mqtt "tcp://127.0.0.1:$mqtt" --ingestd "127.0.0.1:$grpc" -n "${SPARSE:-20}" --roller LAT-SPARSE \
  --no-commands --interval-ms 1050
bridge_share
stored_now() { curl -s "127.0.0.1:$m1/metrics" | awk '/^rollertrace_events_ingested_total/ {s += $2} END {printf "%d", s}'; }
"$bin/tools/loadgen/rollertrace-loadgen" --devices "$D" --register-with "127.0.0.1:$grpc" --register-only
# burst ROUND NICE: the decisions measured while the load generator publishes
# D x M x E new events at full speed, run at nice value NICE.
burst() {
  local round=$1 lg_nice=$2 before
  before=$(stored_now)
  curl -s "127.0.0.1:$m2/metrics" >"$work/bridge-before.prom"
  nice -n "$lg_nice" "$bin/tools/loadgen/rollertrace-loadgen" --mqtt "tcp://127.0.0.1:$mqtt" --devices "$D" \
    --messages "$M" --events "$E" --first-sequence $((1 + (round - 1) * M * E)) --format bin >"$work/loadgen.out" & lgpid=$!
  sleep 0.3
  lat --roller "LAT-BURST$round" --no-commands --echo
  wait $lgpid
  cat "$work/loadgen.out"
  echo "events stored by the end of the measurement: $(($(stored_now) - before))"
  curl -s "127.0.0.1:$m2/metrics" >"$work/bridge-after.prom"
  bridge_share
  # The next burst starts on an empty backlog.
  for _ in $(seq 600); do [ "$(stored_now)" -ge $((before + D * M * E)) ] && break; sleep 0.2; done
}
echo "== while $((D * M * E)) events are published at full speed and ingested; the publisher at nice 0 (it takes this machine's cores as the services do)"
burst 1 0
echo "== the same, the publisher at nice 19 (as devices on other machines would, it takes only cores nothing else wants)"
burst 2 19
