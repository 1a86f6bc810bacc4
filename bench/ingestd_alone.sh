#!/usr/bin/env bash
# ingestd alone: no broker, no bridge. rollertrace-loadgen --ingestd streams the
# loadgen's batches (DEVICES x MESSAGES x EVENTS: usage samples, a session start
# every 100th event) straight into ingestd's Ingest stream as a bridge would
# (requests of up to 2,048 events, 8 unanswered), into a fresh store, synced,
# every rule applied. Prints, per run, events/s and ingestd's CPU per event
# (user + system, all its threads, from /proc).
#
# The end-to-end script (ingest_compare.sh) shares the machine's 2 cores between
# the broker, the bridge, the loadgen and ingestd, and moves by 15 % from one run
# to the next; this one takes the broker and the bridge out of the measure, for
# changes to ingestd itself.
#
# Usage: bench/ingestd_alone.sh [--runs N] [--bursts K] [--against BUILD_DIR] [DEVICES] [MESSAGES] [EVENTS]
#   (default 1 run of 1 burst of 100 200 50)
# --against BUILD_DIR: runs BUILD_DIR's ingestd too, alternating with this
#   build's run by run (A/B on a noisy machine), and prints both medians.
# --bursts K: K bursts one after the other into the same ingestd (each with new
#   sequences); each burst's figures are printed, and a run's figure is its last
#   burst's: a warm ingestd, whose memory is already mapped, as a service that
#   has run for a while is (it also compacts what the earlier bursts wrote, so
#   it is not cheaper per event: docs/BENCHMARKS.md).
# With ROLLERTRACE_PERF_DIR=DIR set, `perf record -g` samples ingestd during
# each timed burst into DIR/ingestd-RUN-BURST.data (call graph mode from
# ROLLERTRACE_PERF_CALL_GRAPH, default fp); the CPU figures then include perf's
# own cost.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ROLLERTRACE_BUILD_DIR:-$root/build}
runs=1 bursts=1 against=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --bursts) bursts=$2; shift 2 ;;
    --against) against=$(cd "$2" && pwd); shift 2 ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "ingestd_alone.sh: unknown option $1 (--help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
D=${1:-100} M=${2:-200} E=${3:-50}
total=$((D * M * E))
lg="$bin/tools/loadgen/rollertrace-loadgen"
for b in "$lg" "$bin/services/ingest/ingestd" ${against:+"$against/services/ingest/ingestd"}; do
  [ -x "$b" ] || { echo "ingestd_alone.sh: $b is missing (build first)" >&2; exit 2; }
done
work=$(mktemp -d /tmp/rollertrace-ingestd-alone.XXXXXX)
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ingestd_pid=""
cleanup() { [ -n "$ingestd_pid" ] && kill "$ingestd_pid" 2>/dev/null; wait 2>/dev/null || true; }
trap 'cleanup; rm -rf "$work"' EXIT
hz=$(getconf CLK_TCK)

# One run of `ingestd` (a binary): prints "EVENTS_PER_S US_PER_EVENT PAGE_FAULTS PEAK_RSS_MIB"
# (page faults: /proc's minflt over the run; each is dear on a virtual machine,
# build/bench/page_touch says how dear).
run() {
  local ingestd=$1 n=$2 grpc metrics c0 c1 f0 f1 hwm out b rate line perf_pid
  grpc=$(free_port) metrics=$(free_port)
  rm -rf "$work/db"
  ROLLERTRACE_PSEUDONYM_SECRET=bench-secret-0123456789 "$ingestd" --listen "127.0.0.1:$grpc" \
    --metrics "127.0.0.1:$metrics" --data-dir "$work/db" --insecure-no-auth >"$work/ingestd-$n.log" 2>&1 &
  ingestd_pid=$!
  "$lg" --devices "$D" --register-with "127.0.0.1:$grpc" --register-only
  sleep 0.5
  for b in $(seq 1 "$bursts"); do
    # The previous burst's flushes and compactions finish before this one is timed.
    [ "$b" -gt 1 ] && sleep 2
    perf_pid=""
    if [ -n "${ROLLERTRACE_PERF_DIR:-}" ]; then
      mkdir -p "$ROLLERTRACE_PERF_DIR"
      perf record -q --call-graph "${ROLLERTRACE_PERF_CALL_GRAPH:-fp}" -p "$ingestd_pid" \
        -o "$ROLLERTRACE_PERF_DIR/ingestd-$n-$b.data" >/dev/null 2>&1 & perf_pid=$!
      sleep 0.3
    fi
    c0=$(awk '{print $14 + $15}' "/proc/$ingestd_pid/stat"); f0=$(awk '{print $10}' "/proc/$ingestd_pid/stat")
    out=$("$lg" --ingestd "127.0.0.1:$grpc" --devices "$D" --messages "$M" --events "$E" \
      --first-sequence $((1 + (b - 1) * M * E)))
    c1=$(awk '{print $14 + $15}' "/proc/$ingestd_pid/stat"); f1=$(awk '{print $10}' "/proc/$ingestd_pid/stat")
    [ -n "$perf_pid" ] && { sleep 1; kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; }
    hwm=$(awk '/VmHWM/ {printf "%d", $2 / 1024}' "/proc/$ingestd_pid/status")
    rate=$(echo "$out" | awk '{for (i = 1; i <= NF; ++i) if ($i == "events/s,") print $(i - 1)}')
    line="$rate $(echo "scale=3; ($c1 - $c0) * 1000000 / $hz / $total" | bc) $((f1 - f0)) $hwm"
    [ "$bursts" -gt 1 ] && printf '       burst %d: %8.0f events/s, ingestd %s us an event, %s page faults, peak RSS %s MiB\n' "$b" $line >&2
  done
  kill "$ingestd_pid"; wait "$ingestd_pid" 2>/dev/null || true; ingestd_pid=""
  echo "$line"
}

median() { sort -n | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

echo "== ingestd alone: $total events ($D devices x $M requests' worth x $E), $runs run(s) of $bursts burst(s)${against:+, against $against}"
: >"$work/this" ; : >"$work/other"
for i in $(seq 1 "$runs"); do
  r=$(run "$bin/services/ingest/ingestd" "this-$i")
  echo "$r" >>"$work/this"
  printf 'run %d  this build:  %8.0f events/s, ingestd %s us an event, %s page faults, peak RSS %s MiB\n' "$i" ${r}
  if [ -n "$against" ]; then
    r=$(run "$against/services/ingest/ingestd" "other-$i")
    echo "$r" >>"$work/other"
    printf 'run %d  --against:   %8.0f events/s, ingestd %s us an event, %s page faults, peak RSS %s MiB\n' "$i" ${r}
  fi
done
printf 'median  this build:  %8.0f events/s, ingestd %s us an event\n' \
  "$(cut -d' ' -f1 "$work/this" | median)" "$(cut -d' ' -f2 "$work/this" | median)"
if [ -n "$against" ]; then
  printf 'median  --against:   %8.0f events/s, ingestd %s us an event\n' \
    "$(cut -d' ' -f1 "$work/other" | median)" "$(cut -d' ' -f2 "$work/other" | median)"
fi
