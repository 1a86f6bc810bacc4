#!/bin/sh
# Runs Mosquitto (the Debian package's binary) with glibc's malloc on
# transparent huge pages: exec mosquitto "$@" with glibc.malloc.hugetlb=1
# added to GLIBC_TUNABLES. The scripts of this repository start the broker
# through it; Debian's own unit gets the same from
# deploy/systemd/mosquitto.service.d/rollertrace.conf.
#
# Why: behind the bridge's backpressure the broker holds a burst's backlog in
# memory, and every 4 KiB page it grows into is a page fault. On a virtual
# machine a fault costs 10-14 us (build/bench/page_touch); a 1M-event JSON
# burst made 41,121 of them in Mosquitto. With huge pages, a few hundred:
# Mosquitto used 12-18 % less CPU an event in three interleaved pairs of runs
# (docs/BENCHMARKS.md, ninth session). Where the kernel's THP setting is
# "never", or the C library is not glibc 2.35+, this changes nothing.
set -eu
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1"
export GLIBC_TUNABLES
exec "$mosquitto" "$@"
