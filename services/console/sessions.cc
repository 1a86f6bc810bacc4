#include "console/sessions.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <stdexcept>

#include "util/hex.h"

namespace rollertrace::console {

std::string RandomToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("no randomness from OpenSSL");
  return util::Hex(std::string_view(reinterpret_cast<const char*>(bytes), sizeof bytes));
}

bool SameSecret(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string SessionStore::Create(const std::string& token, const std::string& role) {
  std::string id = RandomToken();
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    it = it->second.expires < now ? sessions_.erase(it) : std::next(it);
  }
  sessions_[id] = WebSession{token, role, RandomToken(), now + ttl_};
  return id;
}

std::optional<WebSession> SessionStore::Find(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  const auto now = std::chrono::steady_clock::now();
  if (it->second.expires < now) {
    sessions_.erase(it);
    return std::nullopt;
  }
  it->second.expires = now + ttl_;
  return it->second;
}

void SessionStore::Remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  sessions_.erase(id);
}

size_t SessionStore::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.size();
}

}  // namespace rollertrace::console
