// StoreGuard: whether ingestd's store may take writes now (docs/ARCHITECTURE.md,
// "A full disk"). Below the reserve of free space on the store's file system,
// or after a write failed, nothing is applied; reads go on. It recovers by
// itself: Tick() re-checks, and calls RocksDB's Resume() after a failed write
// once space is back. Thread-safe.
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
  absl::Status Writable();
  // A write of the store failed (a store error, not a refused command).
  void WriteFailed(const absl::Status& status);
  // Re-checks and, when a write had failed and space is back, resumes the store.
  void Tick();
  // How long a refused sender should wait before sending again.
  static constexpr uint32_t kRetryAfterMs = 1000;

 private:
  // Free bytes of the store's file system; false when statvfs fails.
  bool FreeBytes(uint64_t* free) const;
  absl::Status CheckLocked(uint64_t free);
  void Publish(bool writable, uint64_t free);

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
