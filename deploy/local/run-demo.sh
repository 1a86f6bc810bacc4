#!/usr/bin/env bash
# The main job: install what is missing, build, start Mosquitto, ingestd,
# mqtt-bridge and a simulated clinic on loopback, let it run, show what was
# stored, and stop everything this script started.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: deploy/local/run-demo.sh [--duration SECONDS] [--rollers N] [--days N] [--seed N] [--rate EVENTS_PER_S] [--keep]
                              [--insecure-anonymous-mqtt]

  --violations R share of sessions planned to break a rule (default 0.25)
  --override R   share of refused sessions the operator carries out anyway (default 0.3)
  --duration S   longest time the simulated clinic may run (default 60); it stops
                 earlier once every event is stored and acknowledged
  --rollers N    simulated rollers (default 12), plus 2 sterilisers
  --days N       clinic days simulated, ending now (default 28)
  --seed N       simulator seed (default 1): same seed, same clinic
  --rate R       events per second the fleet sends (default 400)
  --keep         leave the processes running after the summary (Ctrl-C stops them)
  --insecure-anonymous-mqtt
                 INSECURE, for debugging: the broker takes anonymous clients, so any
                 local process can publish as any roller. By default every device
                 logs in as itself and the ACL keeps it to its own topics
                 (deploy/mosquitto/local-auth.sh).

Everything runs on 127.0.0.1. Data and logs go to run/demo-<time>/.
USAGE
}

duration=60 rollers=12 days=28 seed=1 rate=400 keep=0 violations=0.25 override=0.3 anonymous=0
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --rollers) rollers=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --insecure-anonymous-mqtt) anonymous=1; shift ;;
    --violations) violations=$2; shift 2 ;;
    --override) override=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run-demo: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for v in "$duration" "$rollers" "$days" "$seed" "$rate"; do
  [[ "$v" =~ ^[0-9]+$ ]] || { echo "run-demo: '$v' is not a whole number" >&2; exit 2; }
done
for v in "$violations" "$override"; do
  [[ "$v" =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] || { echo "run-demo: '$v' is not a share between 0 and 1" >&2; exit 2; }
done

prog=run-demo
source "$(dirname "$0")/common.sh"
install_and_build

run_dir="$root/run/demo-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$run_dir"
pick_port mqtt_port 1883
pick_port grpc_port 50051
pick_port ingest_metrics 9464
pick_port bridge_metrics 9465
pick_port fleet_metrics 9467
pick_port console_port 8080
pick_port console_metrics 9468

pids=()
cleanup() {  # SIGTERM in reverse start order; SIGKILL what is still there after 10 s
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "Starting Mosquitto on 127.0.0.1:$mqtt_port (a user and password per device, the ACL)"
# The simulated clinic's devices: rollers R-0001... and sterilisers S-01, S-02.
devices=()
for ((r = 1; r <= rollers; r++)); do devices+=("$(printf 'R-%04d' "$r")"); done
devices+=(S-01 S-02)
auth_flags=()
[ "$anonymous" = 1 ] && auth_flags=(--insecure-anonymous)
bash "$root/deploy/mosquitto/local-auth.sh" --dir "$run_dir/mqtt" --port "$mqtt_port" "${auth_flags[@]}" "${devices[@]}"
"$root/deploy/mosquitto/run-mosquitto.sh" -c "$run_dir/mqtt/mosquitto.conf" >"$run_dir/mosquitto.log" 2>&1 &
pids+=($!)
wait_port "$mqtt_port" mosquitto $!

step "Starting ingestd on 127.0.0.1:$grpc_port (metrics :$ingest_metrics)"
# One bearer token per role: the bridge is a device, rollerctl here is an admin.
make_secrets
"$bin/services/ingest/ingestd" --listen "127.0.0.1:$grpc_port" --metrics "127.0.0.1:$ingest_metrics" \
  --data-dir "$run_dir/ingestd-db" --pseudonym-secret-file "$run_dir/pseudonym.secret" \
  --tokens-file "$run_dir/tokens" --signing-key "$run_dir/signing.pem" --checkpoint-interval-s 5 \
  --backup-root "$run_dir" \
  >"$run_dir/ingestd.log" 2>&1 &
pids+=($!)
wait_port "$grpc_port" ingestd $!

step "Starting mqtt-bridge (metrics :$bridge_metrics)"
bridge_login=() fleet_login=()
if [ "$anonymous" = 0 ]; then
  bridge_login=(--mqtt-username mqtt-bridge --mqtt-password-file "$run_dir/mqtt/bridge-password")
  fleet_login=(--mqtt-credentials-file "$run_dir/mqtt/mqtt-credentials")
fi
"$bin/services/bridge/mqtt-bridge" --mqtt "tcp://127.0.0.1:$mqtt_port" --ingestd "127.0.0.1:$grpc_port" \
  --metrics "127.0.0.1:$bridge_metrics" --token-file "$run_dir/token-device" "${bridge_login[@]}" \
  >"$run_dir/bridge.log" 2>&1 &
pids+=($!)
wait_port "$bridge_metrics" bridge $!

step "Starting the web console on http://127.0.0.1:$console_port/ (metrics :$console_metrics)"
"$bin/services/console/rollertrace-console" --listen "127.0.0.1:$console_port" --ingestd "127.0.0.1:$grpc_port" \
  --metrics "127.0.0.1:$console_metrics" --time-zone "${ROLLERTRACE_TIME_ZONE:-UTC}" >"$run_dir/console.log" 2>&1 &
pids+=($!)
wait_port "$console_port" console $!

step "Running a simulated clinic: $rollers rollers, 2 sterilisers, $days days (at most ${duration}s)"
set +e
"$bin/edge/agent/roller-fleet" --rollers "$rollers" --sterilisers 2 --days "$days" --seed "$seed" --rate "$rate" \
  --mqtt "tcp://127.0.0.1:$mqtt_port" --register-with "127.0.0.1:$grpc_port" --token-file "$run_dir/token-admin" \
  --spool-dir "$run_dir/fleet-spool" "${fleet_login[@]}" \
  --metrics "127.0.0.1:$fleet_metrics" --duration "$duration" --violation-rate "$violations" \
  --override-rate "$override" 2>&1 | tee "$run_dir/fleet.log"
fleet_status=${PIPESTATUS[0]}
set -e
case $fleet_status in
  0) echo "run-demo: every event the clinic produced is stored and acknowledged" ;;
  3) echo "run-demo: stopped at --duration with events still unacknowledged (they stay in the spool)" ;;
  *) echo "run-demo: roller-fleet failed (exit $fleet_status); see $run_dir/fleet.log" >&2 ;;
esac

ctl() { "$bin/tools/rollerctl/rollerctl" --server "127.0.0.1:$grpc_port" --token-file "$run_dir/token-admin" "$@"; }
step "What ingestd stored, per device (rollerctl list)"
ctl list
step "The first events of roller R-0001 (rollerctl history R-0001 --limit 12)"
ctl history R-0001 --limit 12
step "Sequence gaps of R-0001 (rollerctl gaps R-0001)"
ctl gaps R-0001
step "Sessions that started while a deny rule held (rollerctl violations)"
ctl violations
step "A biological indicator fails: S-01 cycle 1 read negative, cycle 3 positive (rollerctl bi)"
ctl bi S-01:1 pass --by lab || true
ctl bi S-01:3 fail --by lab || true
step "The recall it started (rollerctl recall S-01:3)"
ctl recall S-01:3 || true
step "Rollers now (locked ones are refused until an administrator runs rollerctl unlock)"
ctl list --kind roller
# One of the simulated rollers (R-0008, or the last when there are fewer).
demo_roller=$(printf 'R-%04d' $(( rollers < 8 ? rollers : 8 )))
step "One roller's whole trail (rollerctl trail roller $demo_roller)"
ctl trail roller "$demo_roller"
step "The period's compliance report (rollerctl report --from $(date -u -d "-$days days" +%F))"
report_from=$(date -u -d "-$days days" +%F)
ctl report --from "$report_from" || true
ctl report --from "$report_from" --format html -o "$run_dir/report.html" || true
ctl report --from "$report_from" --format csv -o "$run_dir/report-csv" || true
step "Nothing was changed afterwards (rollerctl verify)"
ctl verify || true
step "An archive of roller $demo_roller and an online backup (rollerctl export, rollerctl backup)"
ctl export --device "$demo_roller" -o "$run_dir/$demo_roller.archive" || true
ctl backup "$run_dir/backup" || true

metric_lines() { curl -s "http://127.0.0.1:$1/metrics" | grep -E "$2" | grep -v '^#' || true; }
step "Ingest figures (from ingestd's /metrics)"
metric_lines "$ingest_metrics" '^rollertrace_(events_ingested_total|events_rejected_total|events_duplicate_total|sequence_gaps_opened_total|ingest_commit_events_(sum|count)|ingest_commit_seconds_(sum|count)|violations_total|decisions_total|sterilisation_cycles_total|recalls_total|device_commands_total)'
step "Bridge figures (from mqtt-bridge's /metrics)"
metric_lines "$bridge_metrics" '^rollertrace_bridge_(messages_received_total|messages_rejected_total|events_forwarded_total|acks_published_total|blocked_seconds_total)'

step "Where to look next"
cat <<INFO
  Console:   http://127.0.0.1:$console_port/ — sign in with the token in $run_dir/token-auditor
             (or token-admin to record indicator results, unlock and retire); --keep keeps it running
  Metrics:   ingestd http://127.0.0.1:$ingest_metrics/metrics   mqtt-bridge http://127.0.0.1:$bridge_metrics/metrics
             roller-fleet http://127.0.0.1:$fleet_metrics/metrics (while it runs)
  Prometheus: prometheus --config.file=deploy/prometheus/prometheus.yml (alert rules in deploy/prometheus/)
  Grafana:   copy dashboards/provisioning/* into /etc/grafana/provisioning/ and point the dashboard
             provider at dashboards/ (three dashboards; docs/OBSERVABILITY.md step by step)
  gRPC:      127.0.0.1:$grpc_port with server reflection; bearer tokens per role in $run_dir/token-*
             e.g. rollerctl --server 127.0.0.1:$grpc_port --token-file $run_dir/token-auditor violations
  Report:    $run_dir/report.html (open in a browser, print from there); CSV in $run_dir/report-csv/
  Data/logs: $run_dir
INFO

if [ "$keep" = 1 ]; then
  step "Still running; press Ctrl-C to stop"
  while true; do sleep 3600; done
fi
step "Stopping everything this script started"
