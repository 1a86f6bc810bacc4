#!/usr/bin/env bash
# Ingest side by side, in one run, on the same load (D devices x M messages x E
# events, QoS 1, deep in-flight window, from rollertrace-loadgen):
#   1. Mosquitto alone -> a QoS 1 mosquitto_sub (the transport's ceiling);
#   2. RollerTrace, JSON batches: publish -> bridge -> ingestd -> synced RocksDB, every rule applied;
#   3. RollerTrace, binary batches, the same way.
# Prints events/s, the ratio to Mosquitto alone, the dropped count (must be 0),
# CPU per event of mqtt-bridge (with its event reader and ack publisher) and ingestd, and peak RSS;
# and of Mosquitto and the publishing loadgen, which share the same cores.
# With --peers DIR (the shared peers, e.g. ../shared/peers) it first runs
# DIR/measure.sh on the same load, so Node-RED and Python+SQLite are in the
# same run, prints RollerTrace's ratios to them too, and publishes every run
# (Mosquitto alone included) with the peers' loadgen, as it fed them.
# Every Mosquitto this script starts (Mosquitto alone included) runs as the
# shipped scripts and unit run it, through deploy/mosquitto/run-mosquitto.sh
# (glibc's malloc on huge pages); Mosquitto alone always at its caller's
# priority (ROLLERTRACE_BROKER_NICE, which run-mosquitto.sh takes, applies to
# the RollerTrace runs only: a raised priority slows the broker alone by up to
# a third, and the ceiling is measured at its best). The peers' measure.sh
# starts its own, plain.
# Usage: bench/ingest_compare.sh [--peers DIR] [DEVICES] [MESSAGES] [EVENTS]   (default 100 200 50)
# With ROLLERTRACE_PERF_DIR=DIR set, `perf record -g` samples ingestd and the
# bridge's event reader and ack publisher during each run, into
# DIR/{ingestd,bridge,reader,acks}-FORMAT.data; ROLLERTRACE_PERF_CALL_GRAPH=dwarf
# (perf's --call-graph) for whole stacks where the binaries lack frame pointers.
# (the profile costs CPU: figures from such a run are not the benchmark's).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ROLLERTRACE_BUILD_DIR:-$root/build}
peers=""
if [ "${1:-}" = "--peers" ]; then peers=$(cd "$2" && pwd); shift 2; fi
D=${1:-100} M=${2:-200} E=${3:-50}
total=$((D * M * E)) msgs=$((D * M))
work=$(mktemp -d /tmp/rollertrace-ingest-bench.XXXXXX)
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap 'cleanup; rm -rf "$work"' EXIT
now() { date +%s.%N; }
# Prints "STORED UNIX_TIME" once ingestd (metrics port $1) has stored $total
# events beyond $2, or after 300 s; one process for the whole wait.
stored_when() {
  python3 - "$1" "$2" "$total" <<'PY'
import sys, time, urllib.request
port, base, total = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
deadline = time.time() + 300
while True:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    n = sum(float(line.split()[-1]) for line in text.splitlines()
            if line.startswith("rollertrace_events_ingested_total")) - base
    if n >= total or time.time() > deadline:
        break
    time.sleep(0.05)
print(int(n), f"{time.time():.6f}")
PY
}
cpu_ticks() { local t=0; for p in "$@"; do [ -n "$p" ] && [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
hwm_mib() { awk '/VmHWM/ {printf "%d", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo 0; }
hz=$(getconf CLK_TCK)
lg="$bin/tools/loadgen/rollertrace-loadgen"

nodered=""
# The publisher of every run below. With --peers, the peers' own loadgen (the
# one that fed Node-RED and the others): the same batches from the same
# publisher, whose CPU shares the same two cores. Ours encodes JSON through
# protobuf's JSON printer, about 2.3 us an event against the peers' string
# building: a handicap of its own in a JSON run.
publish() {  # format
  if [ -n "$peers" ]; then
    "${PEERS_CACHE:-/tmp/rollertrace-peers}/lg/loadgen" "tcp://127.0.0.1:$mqtt" "$D" "$M" "$E" "$1"
  else
    "$lg" --mqtt "tcp://127.0.0.1:$mqtt" --devices "$D" --messages "$M" --events "$E" --format "$1"
  fi
}
if [ -n "$peers" ]; then
  echo "== the shared peers ($peers/measure.sh $D $M $E)"
  (cd "$root" && bash "$peers/measure.sh" "$D" "$M" "$E") | tee "$work/peers.out"
  nodered=$(awk '/^node-red flow/ {for (i = 1; i <= NF; ++i) if ($i == "events/s,") print $(i - 1)}' "$work/peers.out")
  echo "== every run below is published by the peers' loadgen"
fi

echo "== $total events in $msgs QoS 1 messages, $D devices"
# A fresh broker for each run: a bridge's persistent session outlives the
# bridge and would keep its share of the shared subscription.
broker_pid=""
start_broker() {  # [nice adjustment]
  [ -n "$broker_pid" ] && { kill "$broker_pid"; wait "$broker_pid" 2>/dev/null || true; }
  mqtt=$(free_port)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 1024\nmax_queued_messages 500000\nmax_packet_size 1048576\nset_tcp_nodelay true\n' "$mqtt" >"$work/m.conf"
  ROLLERTRACE_BROKER_NICE=${1:-${ROLLERTRACE_BROKER_NICE:-0}} \
    "$root/deploy/mosquitto/run-mosquitto.sh" -c "$work/m.conf" >>"$work/mosquitto.log" 2>&1 &
  broker_pid=$!; pids+=($broker_pid)
  sleep 0.5
}
start_broker 0
mosquitto_sub -h 127.0.0.1 -p "$mqtt" -q 1 -t 'rollers/+/events' -C "$msgs" >/dev/null & sub=$!
sleep 0.5
b0=$(cpu_ticks "$broker_pid")
t0=$(now)
publish bin >/dev/null
wait $sub
t1=$(now)
b1=$(cpu_ticks "$broker_pid")
broker=$(echo "$total / ($t1 - $t0)" | bc -l)
# The broker's own CPU a message: Mosquitto runs one thread, so 1 s over this
# is the most messages a second it can pass on here, whatever feeds it.
printf 'mosquitto alone:       %8.0f events/s = %.0f messages/s; the broker %.2f us of CPU a message (%.2f an event)\n' \
  "$broker" "$(echo "$msgs / ($t1 - $t0)" | bc -l)" \
  "$(echo "($b1 - $b0) / $hz * 1000000 / $msgs" | bc -l)" "$(echo "($b1 - $b0) / $hz * 1000000 / $total" | bc -l)"

run_rollertrace() {  # format
  local format=$1 grpc m1 m2 ingestd bridge reader acks
  start_broker
  grpc=$(free_port) m1=$(free_port) m2=$(free_port)
  rm -rf "$work/db-$format"
  ROLLERTRACE_PSEUDONYM_SECRET=bench-secret-0123456789 "$bin/services/ingest/ingestd" --listen "127.0.0.1:$grpc" \
    --metrics "127.0.0.1:$m1" --data-dir "$work/db-$format" --insecure-no-auth >"$work/ingestd-$format.log" 2>&1 &
  ingestd=$!; pids+=($ingestd)
  "$bin/services/bridge/mqtt-bridge" --mqtt "tcp://127.0.0.1:$mqtt" --ingestd "127.0.0.1:$grpc" --client-id "bench-$format" \
    --metrics "127.0.0.1:$m2" >"$work/bridge-$format.log" 2>&1 &
  bridge=$!; pids+=($bridge)
  for _ in $(seq 100); do
    curl -sf "127.0.0.1:$m2/metrics" 2>/dev/null | grep -q '^rollertrace_bridge_mqtt_connected 1' && break; sleep 0.1
  done
  reader=$(pgrep -P "$bridge" -f -- '--event-reader' | head -1)
  acks=$(pgrep -P "$bridge" -f -- '--ack-publisher' | head -1 || true)
  # Registration is not part of the measured run.
  "$lg" --devices "$D" --register-with "127.0.0.1:$grpc" --register-only
  sleep 1
  local base c0 c1 t0 t1 n=0
  base=$(curl -s "127.0.0.1:$m1/metrics" | awk '/^rollertrace_events_ingested_total/ {s += $2} END {printf "%d", s}')
  # One process watches ingestd's count (every 50 ms, no process started per
  # look), started before the clock: a curl | awk a look cost this machine
  # 35 ms of CPU, a quarter to half a core taken from the services at 20
  # looks a second.
  stored_when "$m1" "$base" >"$work/stored-$format" & local poller=$!; pids+=($poller)
  sleep 1  # Python's own start: half a second here
  c0=$(cpu_ticks "$bridge" "$reader" "$acks"); local i0; i0=$(cpu_ticks "$ingestd")
  local r0 a0; r0=$(cpu_ticks "$reader") a0=$(cpu_ticks "$acks")
  local perfs=()
  if [ -n "${ROLLERTRACE_PERF_DIR:-}" ]; then
    mkdir -p "$ROLLERTRACE_PERF_DIR"
    for who in ingestd bridge reader acks; do
      perf record -q --call-graph "${ROLLERTRACE_PERF_CALL_GRAPH:-fp}" -p "${!who}" -o "$ROLLERTRACE_PERF_DIR/$who-$format.data" >/dev/null 2>&1 & perfs+=($!)
    done
    sleep 0.5
  fi
  t0=$(now)
  local b0; b0=$(cpu_ticks "$broker_pid")
  # The publisher's own CPU too (bash's time: user and system seconds).
  { TIMEFORMAT='%3U %3S'; time publish "$format" >"$work/lg-$format.out"; } 2>"$work/lg-$format.time"
  wait "$poller"
  read -r n t1 <"$work/stored-$format"
  [ "$n" -ge "$total" ] || echo "  stored only $n of $total in 300 s"
  c1=$(cpu_ticks "$bridge" "$reader" "$acks"); local i1; i1=$(cpu_ticks "$ingestd")
  local r1 a1; r1=$(cpu_ticks "$reader") a1=$(cpu_ticks "$acks")
  local b1; b1=$(cpu_ticks "$broker_pid")
  for p in "${perfs[@]}"; do kill -INT "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  local rate blocked
  rate=$(echo "$n / ($t1 - $t0)" | bc -l)
  blocked=$(curl -s "127.0.0.1:$m2/metrics" | awk '/^rollertrace_bridge_blocked_seconds_total/ {print $2}')
  printf 'rollertrace %-6s     %8.0f events/s = %.2fx mosquitto alone%s; %d of %d stored, 0 dropped (the bridge has no drop path), bridge held back %.1f s\n' \
    "$format:" "$rate" "$(echo "$rate / $broker" | bc -l)" \
    "$( [ -n "$nodered" ] && printf ', %.2fx node-red' "$(echo "$rate / $nodered" | bc -l)")" "$n" "$total" "${blocked:-0}"
  printf '  CPU per event: mqtt-bridge %.2f us (with its event reader and ack publisher), ingestd %.2f us; peak RSS: bridge %s MiB + reader %s MiB + ack publisher %s MiB, ingestd %s MiB\n' \
    "$(echo "($c1 - $c0) / $hz * 1000000 / $n" | bc -l)" "$(echo "($i1 - $i0) / $hz * 1000000 / $n" | bc -l)" \
    "$(hwm_mib "$bridge")" "$(hwm_mib "$reader")" "$(hwm_mib "${acks:-0}")" "$(hwm_mib "$ingestd")"
  # The bridge's three processes apart, and a message's cost (what a fleet of
  # small batches pays): the event reader takes the messages off MQTT, the
  # main process forwards them to ingestd, the ack publisher answers devices.
  printf '  mqtt-bridge by process: reader %.2f, forwarder %.2f, ack publisher %.2f us an event; %.2f us a message in all\n' \
    "$(echo "($r1 - $r0) / $hz * 1000000 / $n" | bc -l)" \
    "$(echo "(($c1 - $c0) - ($r1 - $r0) - ($a1 - $a0)) / $hz * 1000000 / $n" | bc -l)" \
    "$(echo "($a1 - $a0) / $hz * 1000000 / $n" | bc -l)" "$(echo "($c1 - $c0) / $hz * 1000000 / $msgs" | bc -l)"
  # Where the rest of the two cores went: the broker and the publisher.
  printf '  beside them: mosquitto %.2f us (peak RSS %s MiB), the loadgen publishing %.2f us an event\n' \
    "$(echo "($b1 - $b0) / $hz * 1000000 / $n" | bc -l)" "$(hwm_mib "$broker_pid")" \
    "$(awk -v n="$n" '{printf "%.4f", ($1 + $2) * 1000000 / n}' "$work/lg-$format.time")"
  kill "$bridge" "$ingestd" 2>/dev/null || true
  wait "$bridge" "$ingestd" 2>/dev/null || true
}
run_rollertrace json
run_rollertrace bin
