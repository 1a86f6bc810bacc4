#include "pseudonym/pseudonymizer.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "util/cat.h"
#include "util/hex.h"
#include "util/secret_file.h"

namespace rollertrace::pseudonym {

absl::StatusOr<Pseudonymizer> Pseudonymizer::FromSecret(std::string secret) {
  if (secret.size() < 16) {
    return absl::InvalidArgumentError(
        util::Cat("the pseudonymisation secret must be at least 16 bytes, got ", secret.size()));
  }
  return Pseudonymizer(std::move(secret));
}

absl::StatusOr<Pseudonymizer> Pseudonymizer::FromFile(const std::string& path) {
  absl::StatusOr<std::string> content = util::ReadPrivateFile(path, "pseudonymisation secret file");
  if (!content.ok()) return content.status();
  std::string secret = std::move(*content);
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  absl::StatusOr<Pseudonymizer> p = FromSecret(std::move(secret));
  if (!p.ok()) return absl::InvalidArgumentError(util::Cat(path, ": ", p.status().message()));
  return p;
}

std::string Pseudonymizer::Pseudonym(std::string_view patient_ref) const {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
       reinterpret_cast<const unsigned char*>(patient_ref.data()), patient_ref.size(), mac, &mac_len);
  std::string out = "p-";
  util::AppendHex(std::string_view(reinterpret_cast<const char*>(mac), mac_len), &out);
  return out;
}

bool Pseudonymizer::IsPseudonym(std::string_view text) {
  if (text.size() != 2 + 2 * 32 || text.substr(0, 2) != "p-") return false;
  for (char c : text.substr(2)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace rollertrace::pseudonym
