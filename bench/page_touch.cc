// What a page fault costs on this machine: maps MIB of anonymous memory,
// writes one byte to each 4 KiB page (each write a page fault), unmaps, and
// does it again; then the same with MADV_HUGEPAGE (transparent huge pages:
// one fault a 2 MiB page, where the kernel allows them). Prints seconds and
// microseconds a 4 KiB page. On a virtual machine a fault can cost tens of
// times what it does on bare metal, and a service's first pass over fresh
// memory (ingestd's memtables, a broker's backlog) pays it: docs/BENCHMARKS.md,
// ninth session.
//
// Usage: build/bench/page_touch [MIB]   (default 256)
#include <sys/mman.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

constexpr size_t kPage = 4096;

// Seconds to map `bytes`, touch each page once, and unmap; -1 when mmap fails.
double TouchOnce(size_t bytes, bool huge) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return -1;
  if (huge) (void)madvise(p, bytes, MADV_HUGEPAGE);  // refused where THP is "never": then 4 KiB pages
  volatile char* bytes_at = static_cast<char*>(p);
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < bytes; i += kPage) bytes_at[i] = 1;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  munmap(p, bytes);
  return seconds;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help")) {
    std::printf("usage: page_touch [MIB]\n  times the first write to each 4 KiB page of MIB MiB of fresh memory (default 256),\n  twice, with 4 KiB pages and with transparent huge pages\n");
    return 0;
  }
  const long mib = argc > 1 ? std::strtol(argv[1], nullptr, 10) : 256;
  if (mib <= 0 || mib > 65536) {
    std::fprintf(stderr, "page_touch: MIB must be 1..65536, not %s\n", argv[1]);
    return 2;
  }
  const size_t bytes = static_cast<size_t>(mib) << 20;
  for (bool huge : {false, true}) {
    for (int pass = 1; pass <= 2; ++pass) {
      const double s = TouchOnce(bytes, huge);
      if (s < 0) {
        std::perror("page_touch: mmap");
        return 1;
      }
      std::printf("%-16s pass %d: %ld MiB in %.3f s, %.2f us a 4 KiB page\n", huge ? "huge pages" : "4 KiB pages", pass,
                  mib, s, s * 1e6 / static_cast<double>(bytes / kPage));
    }
  }
  return 0;
}
