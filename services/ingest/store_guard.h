// StoreGuard: whether ingestd's store may take writes now (docs/ARCHITECTURE.md,
// "A full disk"). Below the reserve of free space on the store's file system,
// nothing is applied; reads go on; Tick() re-checks, so it recovers by itself.
// A write that RocksDB itself fails ends the process (kExitStoreFailed): see
// WriteFailed. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "metrics/metrics.h"
#include "store/event_store.h"

namespace rollertrace::ingest {

class StoreGuard {
 public:
  // Borrows store and metrics; they must outlive this object.
  StoreGuard(store::EventStore& store, uint64_t reserve_bytes, metrics::Metrics& metrics);

  // OK when the store takes writes; else ResourceExhausted or Unavailable
  // naming why ("store /var/lib/rollertrace: 12 MiB free, reserve 256 MiB").
  // `bytes_needed`: about what the write at hand will put on disk, which must
  // fit above the reserve (Debian's RocksDB aborts the process when a WAL
  // write runs out of space, so it must never be let try).
  absl::Status Writable(uint64_t bytes_needed = 0);
  // A write of the store failed (a store error, not a refused command): logs
  // and exits with kExitStoreFailed at once, without closing the store.
  [[noreturn]] void WriteFailed(const absl::Status& status);
  // Re-checks the free space.
  void Tick();
  // The exit code after a failed store write (EX_TEMPFAIL: restart me).
  static constexpr int kExitStoreFailed = 75;
  // How long a refused sender should wait before sending again.
  static constexpr uint32_t kRetryAfterMs = 1000;

 private:
  // Free bytes of the store's file system; false when statvfs fails.
  bool FreeBytes(uint64_t* free) const;
  absl::Status CheckLocked(uint64_t free, uint64_t bytes_needed = 0);
  // Sets the gauges from `check` (the store takes writes when it is OK) and
  // says so in the log, with its reason, when that changed.
  void Publish(const absl::Status& check, uint64_t free);

  store::EventStore& store_;
  const uint64_t reserve_;
  prometheus::Gauge& writable_gauge_;
  prometheus::Gauge& free_gauge_;
  prometheus::Gauge& reserve_gauge_;
  prometheus::Counter& refused_;

  std::mutex mu_;
  std::string failed_;  // the failed write's error, until the store resumed
  bool was_writable_ = true;
};

}  // namespace rollertrace::ingest
