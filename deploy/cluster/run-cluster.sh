#!/usr/bin/env bash
# Cluster mode on one machine (docs/CLUSTER.md): three nats-server nodes
# (JetStream, every shard's stream replicated three times), two ingestd shards
# (clinic-north, clinic-south), rollertrace-router as the one gRPC address,
# Mosquitto, two mqtt-bridges sharing the broker's load, the web console, and
# a simulated clinic per shard. Midway one NATS node is SIGKILLed and brought
# back; at the end shard north's disk is thrown away and rebuilt from its
# stream, and the rebuilt store is compared with the one it replaces.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: deploy/cluster/run-cluster.sh [--rollers N] [--days N] [--rate EVENTS_PER_S] [--keep]

  --rollers N   simulated rollers per clinic (default 6), plus 1 steriliser each
  --days N      clinic days simulated, ending now (default 21)
  --rate R      events per second each clinic's fleet sends (default 40)
  --keep        leave everything running after the summary (Ctrl-C stops it)

Everything runs on 127.0.0.1. Data and logs go to run/cluster-<time>/.
USAGE
}
rollers=6 days=21 rate=40 keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rollers) rollers=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run-cluster: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for v in "$rollers" "$days" "$rate"; do
  [[ "$v" =~ ^[0-9]+$ ]] || { echo "run-cluster: '$v' is not a whole number" >&2; exit 2; }
done

prog=run-cluster
source "$(dirname "$0")/../local/common.sh"
install_and_build
run_dir="$root/run/cluster-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$run_dir"

declare -A pid_of
order=()
start() {  # name, command...: runs it in the background, logging to $run_dir/name.log
  local name=$1; shift
  "$@" >>"$run_dir/$name.log" 2>&1 &
  pid_of[$name]=$!
  order+=("$name")
}
cleanup() {
  for ((i=${#order[@]}-1; i>=0; i--)); do kill -TERM "${pid_of[${order[$i]}]}" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    alive=0
    for n in "${order[@]}"; do kill -0 "${pid_of[$n]}" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  for n in "${order[@]}"; do kill -KILL "${pid_of[$n]}" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for i in 0 1 2; do pick_port "nats_client_$i" $((4222 + i)); pick_port "nats_route_$i" $((6222 + i)); done
pick_port mqtt_port 1883
pick_port router_port 50050
pick_port north_port 50061
pick_port south_port 50062
pick_port north_metrics 9470
pick_port south_metrics 9471
pick_port bridge1_metrics 9465
pick_port bridge2_metrics 9466
pick_port console_port 8080
nats_urls="nats://127.0.0.1:$nats_client_0,nats://127.0.0.1:$nats_client_1,nats://127.0.0.1:$nats_client_2"
routes="nats-route://127.0.0.1:$nats_route_0, nats-route://127.0.0.1:$nats_route_1, nats-route://127.0.0.1:$nats_route_2"

start_nats() {  # index
  local client route
  client=nats_client_$1 route=nats_route_$1
  sed -e "s|@NAME@|n$1|" -e "s|@CLIENT@|${!client}|" -e "s|@ROUTE@|${!route}|" -e "s|@ROUTES@|$routes|" \
    -e "s|@STORE@|$run_dir/nats-$1|" "$root/deploy/cluster/nats-node.conf.in" >"$run_dir/nats-$1.conf"
  start "nats-$1" nats-server -c "$run_dir/nats-$1.conf"
  wait_port "${!client}" "nats-$1" "${pid_of[nats-$1]}"
}
step "Starting three NATS JetStream nodes (client ports $nats_client_0, $nats_client_1, $nats_client_2)"
for i in 0 1 2; do start_nats $i; done

make_secrets
sed -e "s|127.0.0.1:50061|127.0.0.1:$north_port|" -e "s|127.0.0.1:50062|127.0.0.1:$south_port|" \
  "$root/deploy/cluster/shards.yaml" >"$run_dir/shards.yaml"

start_shard() {  # name port metrics
  start "shard-$1" "$bin/services/ingest/ingestd" --listen "127.0.0.1:$2" --metrics "127.0.0.1:$3" \
    --data-dir "$run_dir/shard-$1" --pseudonym-secret-file "$run_dir/pseudonym.secret" \
    --tokens-file "$run_dir/tokens" --backup-root "$run_dir" \
    --cluster-nats "$nats_urls" --cluster-shard "$1"
  wait_port "$2" "shard-$1" "${pid_of[shard-$1]}"
}
step "Starting ingestd shards north (127.0.0.1:$north_port) and south (127.0.0.1:$south_port)"
start_shard north "$north_port" "$north_metrics"
start_shard south "$south_port" "$south_metrics"

step "Starting rollertrace-router on 127.0.0.1:$router_port, Mosquitto on :$mqtt_port, two bridges, the console"
start router "$bin/services/router/rollertrace-router" --listen "127.0.0.1:$router_port" --metrics "" \
  --shard-map "$run_dir/shards.yaml" --lookup-token-file "$run_dir/token-auditor"
wait_port "$router_port" router "${pid_of[router]}"
# Every device logs in as itself; each bridge has a user of its own (the ACL).
devices=()
for tag in N S; do
  for ((r = 1; r <= rollers; r++)); do devices+=("$(printf 'R-%s%04d' "$tag" "$r")"); done
  devices+=("S-${tag}01")
done
bash "$root/deploy/mosquitto/local-auth.sh" --dir "$run_dir/mqtt" --port "$mqtt_port" \
  --bridge mqtt-bridge-1 --bridge mqtt-bridge-2 "${devices[@]}"
start mosquitto "$root/deploy/mosquitto/run-mosquitto.sh" -c "$run_dir/mqtt/mosquitto.conf"
wait_port "$mqtt_port" mosquitto "${pid_of[mosquitto]}"
for b in 1 2; do
  m=bridge${b}_metrics
  start "bridge-$b" "$bin/services/bridge/mqtt-bridge" --mqtt "tcp://127.0.0.1:$mqtt_port" \
    --ingestd "127.0.0.1:$router_port" --metrics "127.0.0.1:${!m}" --client-id "rollertrace-bridge-$b" \
    --mqtt-username "mqtt-bridge-$b" --mqtt-password-file "$run_dir/mqtt/bridge-password" \
    --token-file "$run_dir/token-device"
  wait_port "${!m}" "bridge-$b" "${pid_of[bridge-$b]}"
done
start console "$bin/services/console/rollertrace-console" --listen "127.0.0.1:$console_port" \
  --ingestd "127.0.0.1:$router_port" --metrics ""
wait_port "$console_port" console "${pid_of[console]}"

step "Running a clinic per shard: $rollers rollers and a steriliser each, $days days, $rate events/s each"
fleet() {  # clinic tag seed
  "$bin/edge/agent/roller-fleet" --rollers "$rollers" --sterilisers 1 --days "$days" --seed "$3" --rate "$rate" \
    --clinic "$1" --roller-prefix "R-$2" --steriliser-prefix "S-$2" --failing-cycle-rate 0.1 --violation-rate 0.2 --override-rate 0.3 \
    --mqtt "tcp://127.0.0.1:$mqtt_port" --mqtt-credentials-file "$run_dir/mqtt/mqtt-credentials" \
    --register-with "127.0.0.1:$router_port" \
    --token-file "$run_dir/token-admin" --spool-dir "$run_dir/spool-$1" --metrics "" --duration 240 \
    >"$run_dir/fleet-$1.log" 2>&1
}
fleet clinic-north N 1 & north_fleet=$!
fleet clinic-south S 2 & south_fleet=$!
sleep 4
echo "run-cluster: SIGKILL NATS node n1 while the clinics stream"
kill -KILL "${pid_of[nats-1]}"
sleep 4
echo "run-cluster: NATS node n1 back"
start_nats 1
fleet_failed=0
wait "$north_fleet" || fleet_failed=1
wait "$south_fleet" || fleet_failed=1
tail -n 2 "$run_dir/fleet-clinic-north.log" "$run_dir/fleet-clinic-south.log"
[ "$fleet_failed" = 0 ] || { echo "run-cluster: a fleet did not get every event acknowledged" >&2; exit 1; }

ctl() { "$bin/tools/rollerctl/rollerctl" --server "127.0.0.1:$router_port" --token-file "$run_dir/token-admin" "$@"; }
step "Every device, through the router (both shards)"
ctl list
step "Violations across both clinics (first lines)"
ctl violations | head -n 8
step "Every chain on every shard"
ctl verify

step "Shard north loses its disk: SIGKILL, delete its store, start a replacement from the stream"
sleep 2  # let the last commands reach the stream
kill -KILL "${pid_of[shard-north]}"; wait "${pid_of[shard-north]}" 2>/dev/null || true
"$bin/tools/store/rollertrace-store" digest --data-dir "$run_dir/shard-north" >"$run_dir/north-before.digest"
rm -rf "$run_dir/shard-north"
start_shard north "$north_port" "$north_metrics"
grep "catching up" "$run_dir/shard-north.log" | tail -n 1
kill -TERM "${pid_of[shard-north]}"; wait "${pid_of[shard-north]}" 2>/dev/null || true
"$bin/tools/store/rollertrace-store" digest --data-dir "$run_dir/shard-north" >"$run_dir/north-after.digest"
if cmp -s "$run_dir/north-before.digest" "$run_dir/north-after.digest"; then
  echo "run-cluster: the rebuilt store is the same, column family by column family:"
  cat "$run_dir/north-after.digest"
else
  echo "run-cluster: the rebuilt store differs:" >&2
  diff "$run_dir/north-before.digest" "$run_dir/north-after.digest" >&2 || true
  exit 1
fi
start_shard north "$north_port" "$north_metrics"
ctl verify

step "Done"
echo "Router 127.0.0.1:$router_port (rollerctl --server), console http://127.0.0.1:$console_port/ (token in $run_dir/token-auditor)"
echo "Data and logs: $run_dir"
if [ "$keep" = 1 ]; then
  echo "run-cluster: --keep: running until Ctrl-C"
  while true; do sleep 3600; done
fi
