#include "ingest/store_guard.h"

#include <sys/statvfs.h>

#include <iostream>

#include "util/cat.h"

namespace rollertrace::ingest {

StoreGuard::StoreGuard(store::EventStore& store, uint64_t reserve_bytes, metrics::Metrics& m)
    : store_(store),
      reserve_(reserve_bytes),
      writable_gauge_(m.Gauge("rollertrace_store_writable",
                              "1 while the store takes writes; 0 below its free-space reserve or after a failed write")
                          .Add({})),
      free_gauge_(m.Gauge("rollertrace_store_free_bytes", "Free bytes on the store's file system").Add({})),
      reserve_gauge_(m.Gauge("rollertrace_store_reserve_bytes",
                             "Free bytes below which the store takes no writes (ingestd --min-free-mib)")
                         .Add({})),
      refused_(m.Counter("rollertrace_store_writes_refused_total",
                         "Requests and decisions held back (not stored, not acked) while the store took no writes")
                   .Add({})) {
  reserve_gauge_.Set(static_cast<double>(reserve_));
  Tick();
}

bool StoreGuard::FreeBytes(uint64_t* free) const {
  struct statvfs fs {};
  if (::statvfs(store_.path().c_str(), &fs) != 0) return false;
  *free = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  return true;
}

absl::Status StoreGuard::CheckLocked(uint64_t free) {
  if (!failed_.empty()) {
    return absl::UnavailableError(util::Cat("store ", store_.path(), ": a write failed (", failed_,
                                            "); nothing was stored, send it again"));
  }
  if (free < reserve_) {
    return absl::ResourceExhaustedError(util::Cat("store ", store_.path(), ": ", free >> 20, " MiB free, reserve ",
                                                  reserve_ >> 20, " MiB; nothing was stored, send it again"));
  }
  return absl::OkStatus();
}

void StoreGuard::Publish(bool writable, uint64_t free) {
  writable_gauge_.Set(writable ? 1 : 0);
  free_gauge_.Set(static_cast<double>(free));
  if (writable != was_writable_) {
    if (writable) {
      std::cerr << "ingestd: store " << store_.path() << " takes writes again" << std::endl;
    } else {
      std::cerr << "ingestd: takes no writes: " << CheckLocked(free).message() << std::endl;
    }
    was_writable_ = writable;
  }
}

absl::Status StoreGuard::Writable() {
  uint64_t free = UINT64_MAX;
  const bool known = FreeBytes(&free);
  std::lock_guard<std::mutex> lock(mu_);
  absl::Status s = CheckLocked(known ? free : UINT64_MAX);
  Publish(s.ok(), known ? free : 0);
  if (!s.ok()) refused_.Increment();
  return s;
}

void StoreGuard::WriteFailed(const absl::Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  failed_ = std::string(status.message());
  Publish(false, 0);
}

void StoreGuard::Tick() {
  uint64_t free = UINT64_MAX;
  const bool known = FreeBytes(&free);
  std::lock_guard<std::mutex> lock(mu_);
  if (!failed_.empty() && (!known || free >= reserve_)) {
    // Space is back: let RocksDB leave its error state (it may not be in one).
    if (absl::Status r = store_.Resume(); r.ok()) {
      failed_.clear();
    } else {
      failed_ = std::string(r.message());
    }
  }
  Publish(CheckLocked(known ? free : UINT64_MAX).ok(), known ? free : 0);
}

}  // namespace rollertrace::ingest
