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
#
# ROLLERTRACE_BROKER_NICE=K runs the broker K nice levels from its caller
# (default 0; below 0 needs root, anyone else gets nice's warning in the
# broker's log and the caller's priority). Measured, not made the default
# (docs/BENCHMARKS.md, fourteenth session): decisions over MQTT during a
# 1M-event burst had a p99 of 10.2-19.4 ms at the same priority (median 15.4,
# ten runs), 9.0-17.3 at -5 (median 12.1, eleven runs; better in three of four
# interleaved pairs, by less than the spread) and 8.2-15.4 at -10 (median 11.2,
# seventeen runs); but at -10 the broker, woken ahead of its publishers for
# every message, spent 34-60 % more CPU a message alone, and RollerTrace's
# bulk ingest fell by 5-33 %.
set -eu
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1"
export GLIBC_TUNABLES
exec nice -n "${ROLLERTRACE_BROKER_NICE:-0}" "$mosquitto" "$@"
