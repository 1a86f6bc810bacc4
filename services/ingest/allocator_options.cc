// jemalloc's options for ingestd, read by jemalloc at its first allocation.
//
// thp:always: jemalloc asks the kernel for transparent huge pages
// (madvise(MADV_HUGEPAGE)) for the memory it maps. The memtables are most of
// ingestd's memory and are written once, page after page, at up to hundreds
// of thousands of events a second: with 4 KiB pages the first write to each
// page is a page fault, 52,000-56,000 of them for a 1M-event burst (/proc's
// minflt), about 1 in 20 events; with huge pages 4,000-7,000. On a virtual
// machine a page fault is dear: ingestd alone used 2-29 % less CPU an event
// in nine interleaved pairs of runs (median 2.69 -> 2.32 us in the last five;
// docs/BENCHMARKS.md, ninth session). The cost is memory: about 50 MiB more
// peak RSS for that burst (measured with 64 MiB memtables: 181-206 -> 234-255).
// Where the kernel's THP setting is "never" this changes nothing; an operator
// can override it with MALLOC_CONF (e.g. MALLOC_CONF=thp:default).
//
// Not under a sanitizer (no jemalloc there; the symbol is then unused).
extern "C" {
// NOLINTNEXTLINE: the name and type are jemalloc's.
const char* malloc_conf = "thp:always";
}
