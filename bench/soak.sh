#!/usr/bin/env bash
# A soak you can run (issue #13): a simulated clinic streams through Mosquitto,
# mqtt-bridge and ingestd while each of the four processes is SIGKILLed at
# random moments and restarted, and (as root) the store's disk fills and frees
# now and then. Then every device must hold each sequence it produced exactly
# once, nothing conflicting, no gap open, `rollerctl verify` intact.
# Prints one verdict line; exit 0 on PASS.
#
# Usage: bench/soak.sh [--kills N] [--rollers N] [--days N] [--rate EV/S] [--seed N] [--no-disk] [--keep]
#   --kills   SIGKILLs in total, spread over the four processes (default 100)
#   --no-disk do not fill the store's disk (it needs root to mount a tmpfs)
#   --keep    keep the work directory (logs, stores) for a look afterwards
# Everything runs on loopback, on ports picked free. ROLLERTRACE_BUILD_DIR: the build (default ./build).
# Needs python3 (deploy/local/install-deps.sh installs it) for free ports and the verdict.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ROLLERTRACE_BUILD_DIR:-$root/build}
kills=100 rollers=60 days=28 rate=40 seed=7 disk=1 keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --kills) kills=$2; shift 2 ;;
    --rollers) rollers=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --no-disk) disk=0; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n 2,13p "$0"; exit 0 ;;
    *) echo "soak: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for b in services/ingest/ingestd services/bridge/mqtt-bridge edge/agent/roller-fleet tools/rollerctl/rollerctl; do
  [ -x "$bin/$b" ] || { echo "soak: $bin/$b is missing: build first (or set ROLLERTRACE_BUILD_DIR)" >&2; exit 2; }
done
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || { echo "soak: mosquitto is not installed" >&2; exit 2; }

work=$(mktemp -d /tmp/rollertrace-soak.XXXXXX)
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mqtt=$(free_port) grpc=$(free_port) m1=$(free_port) m2=$(free_port)
declare -A pid
mounted=0
cleanup() {
  for p in "${pid[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ $mounted = 1 ] && umount -l "$work/db" 2>/dev/null || true
  if [ $keep = 1 ]; then echo "soak: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
mkdir -p "$work/db"
if [ $disk = 1 ]; then
  if mount -t tmpfs -o size=256m,mode=0700 tmpfs "$work/db" 2>"$work/mount.err"; then
    mounted=1
  else
    echo "soak: disk fills skipped: cannot mount a tmpfs for the store ($(cat "$work/mount.err")); needs root" >&2
    disk=0
  fi
fi
secret=soak-secret-0123456789abcdef
printf 'admin soak-admin-token-0123456789\ndevice soak-device-token-0123456789\n' >"$work/tokens"
printf 'soak-admin-token-0123456789\n' >"$work/admin.token"
printf 'soak-device-token-0123456789\n' >"$work/device.token"
chmod 600 "$work/tokens" "$work/admin.token" "$work/device.token"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 1024\nmax_queued_messages 1000000\nset_tcp_nodelay true\n' \
  "$mqtt" >"$work/mosquitto.conf"

start_mosquitto() { "$root/deploy/mosquitto/run-mosquitto.sh" -c "$work/mosquitto.conf" >>"$work/mosquitto.log" 2>&1 & pid[mosquitto]=$!; }
start_ingestd() {
  ROLLERTRACE_PSEUDONYM_SECRET=$secret "$bin/services/ingest/ingestd" --listen "127.0.0.1:$grpc" --metrics "127.0.0.1:$m1" \
    --data-dir "$work/db/store" --tokens-file "$work/tokens" --min-free-mib 16 >>"$work/ingestd.log" 2>&1 &
  pid[ingestd]=$!
}
start_bridge() {
  "$bin/services/bridge/mqtt-bridge" --mqtt "tcp://127.0.0.1:$mqtt" --ingestd "127.0.0.1:$grpc" --metrics "127.0.0.1:$m2" \
    --token-file "$work/device.token" >>"$work/bridge.log" 2>&1 &
  pid[bridge]=$!
}
start_fleet() {
  "$bin/edge/agent/roller-fleet" --rollers "$rollers" --sterilisers 2 --days "$days" --seed "$seed" --rate "$rate" \
    --end-time-ms "$end_ms" --mqtt "tcp://127.0.0.1:$mqtt" --register-with "127.0.0.1:$grpc" \
    --token-file "$work/admin.token" --spool-dir "$work/spool" --ack-timeout-ms 1000 --decision-timeout-ms 500 \
    --metrics "" >>"$work/fleet.log" 2>&1 &
  pid[fleet]=$!
}
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
rollerctl() { "$bin/tools/rollerctl/rollerctl" --server "127.0.0.1:$grpc" --token-file "$work/admin.token" "$@"; }

end_ms=$(( $(date +%s) * 1000 ))
started=$(date +%s)
start_mosquitto; wait_port "$mqtt"
start_ingestd; wait_port "$grpc"
start_bridge; sleep 1
start_fleet
declare -A killed=([mosquitto]=0 [ingestd]=0 [bridge]=0 [fleet]=0)
fills=0 fleet_done=0
rnd() { echo $(( RANDOM % ($2 - $1 + 1) + $1 )); }  # integer in [a, b]
RANDOM=$seed
for ((k = 1; k <= kills; k++)); do
  sleep "0.$(rnd 2 9)"
  if [ $fleet_done = 0 ] && ! kill -0 "${pid[fleet]}" 2>/dev/null; then
    wait "${pid[fleet]}" && fleet_done=1 || start_fleet  # finished, or died on its own: start it again
  fi
  victims=(mosquitto ingestd bridge)
  [ $fleet_done = 0 ] && victims+=(fleet)
  v=${victims[$(( RANDOM % ${#victims[@]} ))]}
  kill -9 "${pid[$v]}" 2>/dev/null || true
  wait "${pid[$v]}" 2>/dev/null || true
  killed[$v]=$(( killed[$v] + 1 ))
  sleep "0.$(rnd 1 6)"
  case $v in
    mosquitto) start_mosquitto; wait_port "$mqtt" || true ;;
    ingestd) start_ingestd; wait_port "$grpc" || true ;;
    bridge) start_bridge ;;
    fleet) start_fleet ;;
  esac
  if [ $disk = 1 ] && [ $(( k % 20 )) = 10 ]; then
    # The disk fills for two seconds (16 MiB reserve, 8 left), then frees.
    avail=$(df --output=avail -B1 "$work/db" | tail -1)
    fallocate -l $(( avail - 8 * 1024 * 1024 )) "$work/db/filler" 2>/dev/null && fills=$(( fills + 1 ))
    sleep 2
    rm -f "$work/db/filler"
  fi
  printf '\rsoak: %d/%d kills (mosquitto %d, ingestd %d, bridge %d, fleet %d), %d disk fills ' "$k" "$kills" \
    "${killed[mosquitto]}" "${killed[ingestd]}" "${killed[bridge]}" "${killed[fleet]}" "$fills" >&2
done
echo >&2
# Everything up; the fleet runs until every event is acked.
if [ $fleet_done = 0 ]; then
  kill -0 "${pid[fleet]}" 2>/dev/null || start_fleet
  for _ in $(seq 600); do kill -0 "${pid[fleet]}" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "${pid[fleet]}" 2>/dev/null; then
    echo "soak: FAIL — the fleet did not finish within 300 s of the last kill (see $work/fleet.log)"; keep=1; exit 1
  fi
  if ! wait "${pid[fleet]}"; then
    start_fleet  # its last life ended badly: once more, on a quiet system
    wait "${pid[fleet]}" || { echo "soak: FAIL — roller-fleet exited with an error (see $work/fleet.log)"; keep=1; exit 1; }
  fi
fi

rollerctl --json list >"$work/devices.json"
conflicting=$(/usr/bin/python3 -c 'import sys, urllib.request
try: print(next(l.split()[1] for l in urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().splitlines() if l.startswith("rollertrace_events_conflicting_total")))
except Exception: pass' "http://127.0.0.1:$m1/metrics")
verify=0; rollerctl verify >"$work/verify.out" 2>&1 || verify=$?
elapsed=$(( $(date +%s) - started ))
/usr/bin/python3 - "$work/devices.json" "${conflicting:-unknown}" "$verify" "$elapsed" "$kills" \
  "${killed[mosquitto]}" "${killed[ingestd]}" "${killed[bridge]}" "${killed[fleet]}" "$fills" <<'EOF'
import json, sys
path, conflicting, verify, elapsed, kills, km, ki, kb, kf, fills = sys.argv[1:]
doc = json.load(open(path))
devices = doc.get("devices", doc if isinstance(doc, list) else [])
problems, events = [], 0
def get(m, camel):  # rollerctl --json: either field naming
    snake = "".join("_" + c.lower() if c.isupper() else c for c in camel)
    return m.get(camel, m.get(snake))
for d in devices:
    dev, st = d.get("device", {}), d.get("state", {})
    i = get(dev, "deviceId") or "?"
    stored, high = int(get(st, "eventsStored") or 0), int(get(st, "highestSequence") or 0)
    contig, gaps = int(get(st, "contiguousThrough") or 0), get(st, "openGaps") or []
    events += stored
    if stored != high or contig != high or gaps:
        problems.append(f"{i}: {stored} stored, highest {high}, contiguous {contig}, {len(gaps)} gaps open")
if conflicting not in ("0", "0.0", "unknown") and float(conflicting) != 0:
    problems.append(f"{conflicting} conflicting resends")
if conflicting == "unknown":
    problems.append("ingestd's metrics did not answer")
if verify != "0":
    problems.append(f"rollerctl verify exited {verify}")
if not devices or events == 0:
    problems.append("no events in the store: the soak proved nothing")
verdict = "PASS" if not problems else "FAIL"
print(f"soak: {verdict} — {kills} kills (mosquitto {km}, ingestd {ki}, bridge {kb}, fleet {kf}), {fills} disk fills, "
      f"{events} events from {len(devices)} devices, each sequence stored exactly once: {'yes' if not problems else 'no'}, "
      f"0 conflicting: {'yes' if conflicting in ('0', '0.0') else 'no'}, verify intact: {'yes' if verify == '0' else 'no'}, "
      f"{elapsed} s" + ("" if not problems else "\n  " + "\n  ".join(problems[:20])))
sys.exit(0 if not problems else 1)
EOF
status=$?
[ $status = 0 ] || keep=1
exit $status
