#include "store/signer.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "util/cat.h"
#include "util/secret_file.h"

namespace rollertrace::store {

Signer::Signer(void* key) : key_(key) {
  size_t len = 0;
  EVP_PKEY_get_raw_public_key(static_cast<EVP_PKEY*>(key_), nullptr, &len);
  public_key_.resize(len);
  EVP_PKEY_get_raw_public_key(static_cast<EVP_PKEY*>(key_), reinterpret_cast<unsigned char*>(public_key_.data()),
                              &len);
}

Signer::Signer(Signer&& other) noexcept : key_(other.key_), public_key_(std::move(other.public_key_)) {
  other.key_ = nullptr;
}

Signer& Signer::operator=(Signer&& other) noexcept {
  std::swap(key_, other.key_);
  std::swap(public_key_, other.public_key_);
  return *this;
}

Signer::~Signer() { EVP_PKEY_free(static_cast<EVP_PKEY*>(key_)); }

absl::StatusOr<Signer> Signer::LoadOrCreate(const std::string& path) {
  struct stat st{};
  if (lstat(path.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode)) {
      return absl::FailedPreconditionError(util::Cat("the signing key ", path, " is a symbolic link; give the file itself"));
    }
    if (absl::Status s = util::CheckPrivateFile(path, "signing key"); !s.ok()) return s;
    FILE* f = std::fopen(path.c_str(), "r");
    if (f == nullptr) return absl::UnavailableError(util::Cat("cannot read the signing key ", path));
    EVP_PKEY* key = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    if (key == nullptr || EVP_PKEY_id(key) != EVP_PKEY_ED25519) {
      EVP_PKEY_free(key);
      return absl::InvalidArgumentError(util::Cat(path, " is not an Ed25519 private key in PEM"));
    }
    return Signer(key);
  }
  EVP_PKEY* key = nullptr;
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr),
                                                                  EVP_PKEY_CTX_free);
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) <= 0 || EVP_PKEY_keygen(ctx.get(), &key) <= 0) {
    return absl::InternalError("cannot generate an Ed25519 key");
  }
  Signer signer(key);
  // Created private from the first byte, never through a link, never over a file.
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::UnavailableError(util::Cat("cannot create the signing key ", path, ": ", std::strerror(errno)));
  }
  FILE* f = fdopen(fd, "w");
  if (f == nullptr) {
    close(fd);
    return absl::UnavailableError(util::Cat("cannot write the signing key to ", path));
  }
  const bool written = PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  const bool closed = std::fclose(f) == 0;
  if (!written || !closed) return absl::UnavailableError(util::Cat("cannot write the signing key to ", path));
  return signer;
}

std::string Signer::Sign(std::string_view data) const {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  size_t len = 0;
  EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, static_cast<EVP_PKEY*>(key_));
  EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  std::string sig(len, '\0');
  EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                 reinterpret_cast<const unsigned char*>(data.data()), data.size());
  sig.resize(len);
  return sig;
}

bool Signer::Verify(std::string_view public_key, std::string_view data, std::string_view signature) {
  EVP_PKEY* key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                              reinterpret_cast<const unsigned char*>(public_key.data()),
                                              public_key.size());
  if (key == nullptr) return false;
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> owned(key, EVP_PKEY_free);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key) <= 0) return false;
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                          reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
}

}  // namespace rollertrace::store
