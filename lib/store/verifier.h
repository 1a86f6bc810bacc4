// The verifier: recomputes both chains of every device from what the store
// holds (docs/ARCHITECTURE.md, "Two chains per device"), checks the latest
// signed checkpoint, and makes new checkpoints (stored by a checkpoint
// command). Read-only, over one snapshot.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "rollertrace/v1/records.pb.h"
#include "rollertrace/v1/services.pb.h"
#include "store/db.h"

namespace rollertrace::store {

class Signer;

class Verifier {
 public:
  explicit Verifier(const Db& db) : db_(db) {}

  // Recomputes the event chain and the record chain of one device (or all,
  // when empty) and reports the first broken record of each broken chain.
  // With a trusted public key, the latest signed checkpoint is checked too:
  // its signature, and that every chain still holds the head it recorded.
  absl::StatusOr<rollertrace::v1::VerifyReport> Verify(std::string_view device_id,
                                                       std::string_view trusted_public_key = {}) const;
  // The heads of every device's chains, signed, as of `now`.
  absl::StatusOr<rollertrace::v1::Checkpoint> MakeCheckpoint(const Signer& signer, int64_t now_unix_ms) const;

 private:
  const Db& db_;
};

}  // namespace rollertrace::store
