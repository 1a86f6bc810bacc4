#include "ingest/store_guard.h"

#include <sys/statvfs.h>

#include <cstdlib>
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

absl::Status StoreGuard::CheckLocked(uint64_t free, uint64_t bytes_needed) {
  if (!failed_.empty()) {
    return absl::UnavailableError(util::Cat("store ", store_.path(), ": a write failed (", failed_,
                                            "); nothing was stored, send it again"));
  }
  if (free < reserve_) {
    return absl::ResourceExhaustedError(util::Cat("store ", store_.path(), ": ", free >> 20, " MiB free, reserve ",
                                                  reserve_ >> 20, " MiB; nothing was stored, send it again"));
  }
  if (free - reserve_ < bytes_needed) {
    return absl::ResourceExhaustedError(util::Cat("store ", store_.path(), ": this write needs about ",
                                                  (bytes_needed >> 20) + 1, " MiB above the reserve of ", reserve_ >> 20,
                                                  " MiB and ", free >> 20,
                                                  " MiB are free; nothing was stored, send it again in smaller parts "
                                                  "or once space is back"));
  }
  return absl::OkStatus();
}

void StoreGuard::Publish(const absl::Status& check, uint64_t free) {
  const bool writable = check.ok();
  writable_gauge_.Set(writable ? 1 : 0);
  free_gauge_.Set(static_cast<double>(free));
  if (writable != was_writable_) {
    if (writable) {
      std::cerr << "ingestd: store " << store_.path() << " takes writes again" << std::endl;
    } else {
      std::cerr << "ingestd: takes no writes: " << check.message() << std::endl;
    }
    was_writable_ = writable;
  }
}

absl::Status StoreGuard::Writable(uint64_t bytes_needed) {
  uint64_t free = UINT64_MAX;
  const bool known = FreeBytes(&free);
  std::lock_guard<std::mutex> lock(mu_);
  absl::Status s = CheckLocked(known ? free : UINT64_MAX, bytes_needed);
  Publish(s, known ? free : 0);
  if (!s.ok()) refused_.Increment();
  return s;
}

void StoreGuard::WriteFailed(const absl::Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    failed_ = std::string(status.message());
    Publish(CheckLocked(0), 0);
  }
  // Debian's RocksDB (7.8) must not touch a WAL again after a write to it
  // failed: its next write, its Resume() and even its Close() abort on an
  // assertion (fixed upstream in 2024, facebook/rocksdb#12448). So ingestd
  // does not try: it leaves at once, without closing the store, as a crash
  // would; what was acknowledged is synced in the WAL, the failed group was
  // not acknowledged, and a restart (systemd Restart=on-failure) reopens the
  // store and takes writes again once space is back.
  std::cerr << "ingestd: a write to the store failed (" << status.message()
            << "); nothing of it was acknowledged. Exiting with " << kExitStoreFailed
            << " so that a restart reopens the store cleanly." << std::endl;
  std::_Exit(kExitStoreFailed);
}

void StoreGuard::Tick() {
  uint64_t free = UINT64_MAX;
  const bool known = FreeBytes(&free);
  std::lock_guard<std::mutex> lock(mu_);
  Publish(CheckLocked(known ? free : UINT64_MAX), known ? free : 0);
}

}  // namespace rollertrace::ingest
