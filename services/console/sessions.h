// Signed-in browsers: a random session id (the HttpOnly cookie) names the
// role token the user signed in with, their role and the CSRF token every
// POST must carry. Kept in memory only: a restarted console signs everyone out.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace rollertrace::console {

struct WebSession {
  std::string token;  // the ingestd bearer token, sent on the user's gRPC calls
  std::string role;   // "auditor" or "admin"
  std::string csrf;
  std::chrono::steady_clock::time_point expires;
};

class SessionStore {
 public:
  explicit SessionStore(std::chrono::minutes ttl) : ttl_(ttl) {}
  // Returns the new session's id.
  std::string Create(const std::string& token, const std::string& role);
  // Refreshes the expiry of a live session.
  std::optional<WebSession> Find(const std::string& id);
  void Remove(const std::string& id);
  size_t size();

 private:
  const std::chrono::minutes ttl_;
  std::mutex mu_;
  std::map<std::string, WebSession> sessions_;
};

// 32 random bytes from OpenSSL as hex.
std::string RandomToken();
// Constant-time comparison of two strings of any length.
bool SameSecret(const std::string& a, const std::string& b);

}  // namespace rollertrace::console
