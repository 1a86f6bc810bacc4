// Signer: ingestd's Ed25519 key for chain checkpoints (OpenSSL).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace rollertrace::store {

class Signer {
 public:
  // Loads a PEM private key that only its owner may read, or creates one
  // (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600) when the file does not exist. A
  // symbolic link is refused.
  static absl::StatusOr<Signer> LoadOrCreate(const std::string& path);
  Signer(Signer&&) noexcept;
  Signer& operator=(Signer&&) noexcept;
  ~Signer();

  std::string Sign(std::string_view data) const;
  // The raw 32-byte public key.
  const std::string& public_key() const { return public_key_; }

  static bool Verify(std::string_view public_key, std::string_view data, std::string_view signature);

 private:
  explicit Signer(void* key);
  void* key_;  // EVP_PKEY*, owned
  std::string public_key_;
};

}  // namespace rollertrace::store
