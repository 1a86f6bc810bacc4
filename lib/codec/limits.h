// The one table of limits on what enters RollerTrace from a device or a
// client (issue #14): every string and repeated field, batch and request.
// Beyond a limit the input is refused before anything is stored, with an
// OutOfRange status naming the field (reject reason "out_of_range"), and
// counted. docs/ARCHITECTURE.md, "Limits", lists them; tests cover each just
// inside and just outside.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rollertrace::codec {

struct Limits {
  // Identifiers a device sends: session, operator, decision, the clinic's
  // patient reference (before ingestd pseudonymises it).
  static constexpr size_t kIdBytes = 128;
  // Short free text from a device: firmware, method, loaded_by, released_by.
  static constexpr size_t kTextBytes = 256;
  // Rollers in one sterilisation load.
  static constexpr size_t kLoadRollers = 1000;
  // Events in one batch (agents send 100, the loadgen 50).
  static constexpr size_t kBatchEvents = 10000;
  // Batches in one gRPC ingest request (the bridge sends up to 2,048 events).
  static constexpr size_t kRequestBatches = 10000;
  // An administrator's text: unlock, retirement and recall reasons, who.
  static constexpr size_t kReasonBytes = 1024;
  static constexpr size_t kWhoBytes = 128;
  // Device times: from the epoch (a clock that lost its battery reads about
  // there: kept, it is what the device said) to 2100-01-01, unix ms. Outside
  // is no clock at all (e.g. INT64_MIN) and is refused.
  static constexpr int64_t kEarliestUnixMs = 0;
  static constexpr int64_t kLatestUnixMs = 4102444800000;
  // A backup directory an administrator names (under ingestd --backup-root).
  static constexpr size_t kPath = 1024;
  static constexpr size_t kPathPart = 200;  // each name in it
  // Events per History page (a larger limit is cut to this).
  static constexpr uint32_t kHistoryPage = 10000;
};

}  // namespace rollertrace::codec
