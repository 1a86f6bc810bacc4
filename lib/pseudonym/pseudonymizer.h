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
  // Reads the secret from a file (trailing newline dropped) that only its
  // owner may read (util/secret_file.h). The error never includes the content.
  static absl::StatusOr<Pseudonymizer> FromFile(const std::string& path);

  std::string Pseudonym(std::string_view patient_ref) const;
  // True for text of the form Pseudonym returns: "p-" and 64 lower-case hex digits.
  static bool IsPseudonym(std::string_view text);

 private:
  explicit Pseudonymizer(std::string secret) : secret_(std::move(secret)) {}
  std::string secret_;
};

}  // namespace rollertrace::pseudonym
