#!/usr/bin/env bash
# Cluster mode against single-machine mode on the same load, in one run
# (docs/BENCHMARKS.md, "Cluster mode"):
#   1. event -> ack round trips at the roller, idle (N, one at a time);
#   2. a burst of D x M x E events (two loadgens, half the devices in each
#      clinic), the rate at which they are stored, and event -> ack round trips
#      while it runs;
#   3. cluster only: shard north is filled to about 1M events, its store is
#      deleted, and the time its replacement takes to rebuild from the stream.
# Single: Mosquitto, one ingestd, mqtt-bridge. Cluster: three nats-server
# nodes, two shards, rollertrace-router, Mosquitto, mqtt-bridge. All loopback.
# Usage: bench/cluster_compare.sh [N] [DEVICES] [MESSAGES] [EVENTS]   (default 300 100 200 50)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ROLLERTRACE_BUILD_DIR:-$root/build}
N=${1:-300} D=${2:-100} M=${3:-200} E=${4:-50}
work=$(mktemp -d /tmp/rollertrace-cluster-bench.XXXXXX)
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap 'stop_all; rm -rf "$work"' EXIT
export ROLLERTRACE_PSEUDONYM_SECRET=bench-secret-0123456789
wait_port() { for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
stored() {  # sum of ingested events over the given metrics ports
  local s=0 p v
  for p in "$@"; do
    v=$(curl -s "127.0.0.1:$p/metrics" | awk '/^rollertrace_events_ingested_total/ {s += $2} END {printf "%d", s}')
    s=$((s + v))
  done
  echo "$s"
}
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.2f\", $1 }"; }

start_broker_and_bridge() {  # front address
  mqtt=$(free_port) bm=$(free_port)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 1024\nmax_queued_messages 500000\nmax_packet_size 1048576\nset_tcp_nodelay true\n' "$mqtt" >"$work/m.conf"
  "$root/deploy/mosquitto/run-mosquitto.sh" -c "$work/m.conf" >"$work/mosquitto.log" 2>&1 & pids+=($!)
  wait_port "$mqtt"
  "$bin/services/bridge/mqtt-bridge" --mqtt "tcp://127.0.0.1:$mqtt" --ingestd "$1" --metrics "127.0.0.1:$bm" \
    --client-id "bench-bridge-$bm" >"$work/bridge.log" 2>&1 & pids+=($!)
  for _ in $(seq 100); do curl -sf "127.0.0.1:$bm/metrics" | grep -q '^rollertrace_bridge_mqtt_connected 1' && break; sleep 0.1; done
}

measure() {  # mode front metrics-ports...
  local mode=$1 front=$2; shift 2
  local half=$((D / 2)) total=$((D / 2 * 2 * M * E))
  "$bin/tools/loadgen/rollertrace-loadgen" --devices "$half" --prefix A- --clinic clinic-north --register-with "$front" --register-only
  "$bin/tools/loadgen/rollertrace-loadgen" --devices "$half" --prefix B- --clinic clinic-south --register-with "$front" --register-only
  echo "== $mode: idle"
  "$bin/bench/latency" --mqtt "tcp://127.0.0.1:$mqtt" --ingestd "$front" -n "$N" --roller "ACK-IDLE" --acks-only
  echo "== $mode: a burst of $total events, half for each clinic"
  local t0; t0=$(now)
  "$bin/tools/loadgen/rollertrace-loadgen" --mqtt "tcp://127.0.0.1:$mqtt" --devices "$half" --prefix A- --messages "$M" \
    --events "$E" --format bin >"$work/lg-a.out" & local a=$!
  "$bin/tools/loadgen/rollertrace-loadgen" --mqtt "tcp://127.0.0.1:$mqtt" --devices "$half" --prefix B- --messages "$M" \
    --events "$E" --format bin >"$work/lg-b.out" & local b=$!
  sleep 0.3
  "$bin/bench/latency" --mqtt "tcp://127.0.0.1:$mqtt" --ingestd "$front" -n "$N" --roller "ACK-BURST" --acks-only
  wait "$a" "$b"
  local base=$((2 * N))  # the two latency rollers' events
  for _ in $(seq 6000); do [ "$(stored "$@")" -ge $((total + base)) ] && break; sleep 0.05; done
  local t1; t1=$(now)
  echo "stored $(( $(stored "$@") - base )) of $total burst events in $(calc "$t1 - $t0") s: $(calc "$total / ($t1 - $t0)") events/s"
}

echo "#### single-machine mode"
grpc=$(free_port) im=$(free_port)
"$bin/services/ingest/ingestd" --listen "127.0.0.1:$grpc" --metrics "127.0.0.1:$im" --data-dir "$work/single" \
  --insecure-no-auth >"$work/single.log" 2>&1 & pids+=($!)
wait_port "$grpc"
start_broker_and_bridge "127.0.0.1:$grpc"
measure single "127.0.0.1:$grpc" "$im"
stop_all

echo "#### cluster mode: 3 NATS nodes (R3), 2 shards, router"
c0=$(free_port) c1=$(free_port) c2=$(free_port) r0=$(free_port) r1=$(free_port) r2=$(free_port)
routes="nats-route://127.0.0.1:$r0, nats-route://127.0.0.1:$r1, nats-route://127.0.0.1:$r2"
cs=($c0 $c1 $c2) rs=($r0 $r1 $r2)
for i in 0 1 2; do
  sed -e "s|@NAME@|n$i|" -e "s|@CLIENT@|${cs[$i]}|" -e "s|@ROUTE@|${rs[$i]}|" -e "s|@ROUTES@|$routes|" \
    -e "s|@STORE@|$work/nats-$i|" "$root/deploy/cluster/nats-node.conf.in" >"$work/nats-$i.conf"
  nats-server -c "$work/nats-$i.conf" >"$work/nats-$i.log" 2>&1 & pids+=($!)
done
for i in 0 1 2; do wait_port "${cs[$i]}"; done
urls="nats://127.0.0.1:$c0,nats://127.0.0.1:$c1,nats://127.0.0.1:$c2"
north=$(free_port) south=$(free_port) nm=$(free_port) sm=$(free_port) router=$(free_port)
start_shard() {  # name port metrics
  "$bin/services/ingest/ingestd" --listen "127.0.0.1:$2" --metrics "127.0.0.1:$3" --data-dir "$work/shard-$1" \
    --insecure-no-auth --cluster-nats "$urls" --cluster-shard "$1" >>"$work/shard-$1.log" 2>&1 & pids+=($!)
  last_shard=$!
  wait_port "$2"
}
start_shard north "$north" "$nm"; north_pid=$last_shard
start_shard south "$south" "$sm"
printf 'shards:\n  - {name: north, address: "127.0.0.1:%s", clinics: [clinic-north]}\n  - {name: south, address: "127.0.0.1:%s", clinics: [clinic-south], default: true}\n' \
  "$north" "$south" >"$work/shards.yaml"
"$bin/services/router/rollertrace-router" --listen "127.0.0.1:$router" --metrics "" --shard-map "$work/shards.yaml" \
  >"$work/router.log" 2>&1 & pids+=($!)
wait_port "$router"
start_broker_and_bridge "127.0.0.1:$router"
measure cluster "127.0.0.1:$router" "$nm" "$sm"

echo "== cluster: rebuild of shard north from its stream"
"$bin/tools/loadgen/rollertrace-loadgen" --devices $((D / 2)) --prefix C- --clinic clinic-north \
  --register-with "127.0.0.1:$router" --register-only
"$bin/tools/loadgen/rollertrace-loadgen" --mqtt "tcp://127.0.0.1:$mqtt" --devices $((D / 2)) --prefix C- --messages "$M" \
  --events "$E" --format bin >/dev/null
target=$(( D / 2 * 2 * M * E ))  # A- and C- devices; the latency rollers are on the default shard
for _ in $(seq 6000); do [ "$(stored "$nm")" -ge "$target" ] && break; sleep 0.05; done
for _ in $(seq 600); do
  curl -s "127.0.0.1:$nm/metrics" | grep -q '^rollertrace_cluster_replication_lag_commands 0$' && break; sleep 0.1
done
events=$(stored "$nm")
kill -KILL "$north_pid"; wait "$north_pid" 2>/dev/null || true
du_store=$(du -sh "$work/shard-north" | cut -f1)
rm -rf "$work/shard-north"
t0=$(now)
start_shard north "$north" "$nm"
t1=$(now)
echo "shard north: $events events ($du_store on disk) rebuilt from its stream in $(calc "$t1 - $t0") s:"
grep "catching up" "$work/shard-north.log" | tail -n 1
