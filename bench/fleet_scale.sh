#!/usr/bin/env bash
# A big fleet, as a new user would run it: roller-fleet with N rollers (each
# its own MQTT client) and 100 sterilisers, --rate 0, authorisation on,
# against Mosquitto, ingestd and mqtt-bridge on free loopback ports.
# Prints how long the devices took to connect, events recorded and acked while
# playing, how long the stop took, and the peak RSS of every process.
# Usage: bench/fleet_scale.sh [ROLLERS] [DURATION_S] [extra roller-fleet flags...]
# FLEET_DAYS (default 7) sets --days: 10,000 rollers play 7 days in about 80 s
# on a 2-core machine, so a longer clinic is needed to measure a steady rate.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ROLLERTRACE_BUILD_DIR:-$root/build}
rollers=${1:-10000}
duration=${2:-120}
days=${FLEET_DAYS:-7}
shift $(( $# > 2 ? 2 : $# ))
need=$((rollers + 200))
if [ "$(ulimit -n)" -lt "$need" ]; then ulimit -n "$need" 2>/dev/null || {
  echo "fleet_scale: needs $need open files (ulimit -n is $(ulimit -n))" >&2; exit 2; }; fi
work=$(mktemp -d /tmp/rollertrace-fleet-scale.XXXXXX)
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mqtt=$(free_port) grpc=$(free_port) m1=$(free_port) m2=$(free_port)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nmax_inflight_messages 1024\nmax_queued_messages 100000\n' "$mqtt" >"$work/m.conf"
"$root/deploy/mosquitto/run-mosquitto.sh" -c "$work/m.conf" >"$work/mosquitto.log" 2>&1 & broker=$!; pids+=($broker)
ROLLERTRACE_PSEUDONYM_SECRET=bench-secret-0123456789 "$bin/services/ingest/ingestd" --listen "127.0.0.1:$grpc" \
  --metrics "127.0.0.1:$m1" --data-dir "$work/db" --insecure-no-auth >"$work/ingestd.log" 2>&1 & ingestd=$!; pids+=($ingestd)
"$bin/services/bridge/mqtt-bridge" --mqtt "tcp://127.0.0.1:$mqtt" --ingestd "127.0.0.1:$grpc" --metrics "127.0.0.1:$m2" ${BRIDGE_FLAGS:-} \
  >"$work/bridge.log" 2>&1 & bridge=$!; pids+=($bridge)
sleep 1.5
start=$(date +%s.%N)
"$bin/edge/agent/roller-fleet" --rollers "$rollers" --sterilisers 100 --days "$days" --rate 0 --duration "$duration" \
  --mqtt "tcp://127.0.0.1:$mqtt" --register-with "127.0.0.1:$grpc" --spool-dir "$work/spool" --metrics "" "$@" \
  2>"$work/fleet.log" & fleet=$!
fleet_hwm=0
while kill -0 "$fleet" 2>/dev/null; do
  # The fleet and, with --processes, its child processes: the sum of their peaks.
  h=0; for p in $fleet $(pgrep -P "$fleet" || true); do
    v=$(awk '/VmHWM/ {print $2}' /proc/$p/status 2>/dev/null || true); h=$((h + ${v:-0})); done
  [ "${h:-0}" -gt "$fleet_hwm" ] && fleet_hwm=$h
  sleep 1
done
set +e; wait "$fleet"; rc=$?; set -e
end=$(date +%s.%N)
hwm() { awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' /proc/$1/status; }
connect=$(grep -o 'connected in [0-9.]*' "$work/fleet.log" | awk '{print $3}')
acked=$(grep -E "roller-fleet: (done|stopped)" "$work/fleet.log" | grep -o '[0-9]* acked' | cut -d' ' -f1)
awk -v s="$start" -v e="$end" -v c="${connect:-0}" -v a="${acked:-0}" 'BEGIN {
  printf "wall %.1f s (registration, %.1f s connecting, playing, stop); %d events acked = %.0f events/s over the whole wall\n", e - s, c, a, a / (e - s) }'
grep -E "devices connected in|roller-fleet: (done|stopped)|disconnected in" "$work/fleet.log" | cut -c1-220
echo "fleet exit $rc; peak RSS: fleet $((fleet_hwm/1024)) MiB, mosquitto $(hwm $broker), ingestd $(hwm $ingestd), mqtt-bridge $(hwm $bridge)"
echo "subscription refusals: $(grep -c 'subscription was refused' "$work/fleet.log" || true)"
# The broker's share: Mosquitto runs one thread, so its CPU a message is the
# most messages a second it can pass on here; each event acked needed the
# messages below (batches in and out, acks, authorisations, decisions).
sleep 1.2  # one more $SYS interval
sys() { mosquitto_sub -h 127.0.0.1 -p "$mqtt" -t "\$SYS/broker/publish/messages/$1" -C 1 -W 3 2>/dev/null || echo 0; }
pub_in=$(sys received) pub_out=$(sys sent)
cpu() { awk '{printf "%.1f", ($14 + $15) / '"$(getconf CLK_TCK)"'}' "/proc/$1/stat"; }
bcpu=$(cpu "$broker") icpu=$(cpu "$ingestd") rcpu=0
for p in $bridge $(pgrep -P "$bridge" || true); do rcpu=$(echo "$rcpu + $(cpu "$p")" | bc); done
awk -v i="$pub_in" -v o="$pub_out" -v b="$bcpu" -v a="${acked:-0}" -v ic="$icpu" -v rc="$rcpu" 'BEGIN {
  m = i + o; if (a == 0) a = 1; if (m == 0) m = 1
  printf "broker: %d publishes in, %d out (%.2f a message each way for an event acked); %.1f s of CPU = %.1f us a publish passed on\n", i, o, m / 2 / a, b, b * 1e6 / m * 2
  printf "CPU seconds: mosquitto %.1f, ingestd %.1f, mqtt-bridge with its children %.1f (%.1f / %.1f / %.1f us an event acked)\n", b, ic, rc, b * 1e6 / a, ic * 1e6 / a, rc * 1e6 / a }'
# What the services counted (events forwarded include resends; every ack published reached the broker).
curl -s "127.0.0.1:$m2/metrics" | grep -E '^rollertrace_bridge_(messages_received|events_forwarded|ingest_rejections|acks_published|publish_failures|authorize_seconds_(count|sum)|authorize_seconds_bucket\{le="(0.01|0.1|1|2.5)"\})' | sed 's/^/bridge: /'
curl -s "127.0.0.1:$m1/metrics" | grep -E '^rollertrace_ingest_(duplicates|rejected|commit_(events|seconds)_(sum|count))' | sed 's/^/ingestd: /'

