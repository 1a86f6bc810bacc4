// Turns a clinic's patient reference into the only form RollerTrace stores:
// "p-" + hex(HMAC-SHA256(secret, reference)). Same reference and secret give
// the same pseudonym, so a patient's sessions still join in audits.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace rollertrace::pseudonym {

class Pseudonymizer {
 public:
  // REQUIRES: secret of at least 16 bytes (checked by the factories).
  static absl::StatusOr<Pseudonymizer> FromSecret(std::string secret);
  // Reads the secret from a file (trailing newline dropped). The error never
  // includes the file's content.
  static absl::StatusOr<Pseudonymizer> FromFile(const std::string& path);

  std::string Pseudonym(std::string_view patient_ref) const;

 private:
  explicit Pseudonymizer(std::string secret) : secret_(std::move(secret)) {}
  std::string secret_;
};

}  // namespace rollertrace::pseudonym
