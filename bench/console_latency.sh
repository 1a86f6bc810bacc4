#!/usr/bin/env bash
# Page latency of the web console on the audit store of bench/trail_bench
# (10,000,400 events by default): ingestd serves that store, rollertrace-console
# talks to it, and a client signs in and asks for N roller, patient and
# violations pages (random rollers and patients), timing each whole answer.
# Prints p50/p99/max per page and the console's peak RSS. All on loopback.
# Usage: bench/console_latency.sh [EVENTS] [N]     (defaults 10000000 200)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ROLLERTRACE_BUILD_DIR:-$root/build}
events=${1:-10000000}
n=${2:-200}
store="${TMPDIR:-/tmp}/rollertrace-trail-bench-$events"
if [ ! -e "$store.built" ]; then
  echo "console_latency: building the audit store first (bench/trail_bench --events=$events)" >&2
  "$bin/bench/trail_bench" --events="$events" --benchmark_filter=NONE >&2
fi
work=$(mktemp -d /tmp/rollertrace-console-bench.XXXXXX)
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc=$(free_port) m1=$(free_port) http=$(free_port) m2=$(free_port)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
ROLLERTRACE_PSEUDONYM_SECRET=bench-secret-0123456789 "$bin/services/ingest/ingestd" --listen "127.0.0.1:$grpc" \
  --metrics "127.0.0.1:$m1" --data-dir "$store" --insecure-no-auth --signing-key "$work/signing.pem" \
  >"$work/ingestd.log" 2>&1 & pids+=($!)
"$bin/services/console/rollertrace-console" --listen "127.0.0.1:$http" --ingestd "127.0.0.1:$grpc" \
  --metrics "127.0.0.1:$m2" >"$work/console.log" 2>&1 & console=$!; pids+=($console)
for _ in $(seq 1 100); do
  /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $http), 0.2)" 2>/dev/null && \
  /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $grpc), 0.2)" 2>/dev/null && break
  sleep 0.2
done
rollers=$((events / 1000)); rollers=$((rollers - rollers % 100))
/usr/bin/python3 - "$http" "$n" "$rollers" <<'PY'
import http.client, random, sys, time, urllib.parse
port, n, rollers = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
# ingestd runs --insecure-no-auth: any token signs in (as admin).
c.request("POST", "/login", body="token=bench", headers={"Content-Type": "application/x-www-form-urlencoded"})
r = c.getresponse(); r.read()
cookie = r.getheader("Set-Cookie").split(";")[0]
rng = random.Random(1)
pages = {
    "roller": lambda: "/roller/R-%d" % (100000 + rng.randrange(rollers)),
    "patient": lambda: "/patient?pseudonym=" + urllib.parse.quote("p-%056x%08x" % (0, 7000000 + rng.randrange(rollers))),
    "violations": lambda: "/violations",
}
for name, path in pages.items():
    times = []
    for _ in range(n):
        p = path()
        t = time.perf_counter()
        c.request("GET", p, headers={"Cookie": cookie})
        r = c.getresponse(); body = r.read()
        times.append((time.perf_counter() - t) * 1000)
        if r.status != 200:
            sys.exit("console_latency: %s answered %d: %s" % (p, r.status, body[:300]))
    times.sort()
    print("%-10s n=%d  p50 %.2f ms  p99 %.2f ms  max %.2f ms  (%d bytes last)" % (
        name, n, times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))], times[-1], len(body)))
PY
echo "console peak RSS: $(awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' /proc/$console/status)"
