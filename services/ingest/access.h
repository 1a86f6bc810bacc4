// Access control on ingestd's gRPC API: a bearer token in the "authorization"
// metadata names a role. device (mqtt-bridge) may only ingest and ask for
// authorisations; auditor reads; admin may do everything, including register,
// retire, unlock and recording biological-indicator results.
#pragma once

#include <grpcpp/grpcpp.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "metrics/metrics.h"

namespace rollertrace::ingest {

enum class Role { kDevice, kAuditor, kAdmin };

const char* RoleName(Role r);

class AccessControl {
 public:
  // Reads "<role> <token>" lines (roles: device, auditor, admin; '#' starts a
  // comment) from a file only its owner may read. Errors name the line.
  // Tokens must be at least 16 characters; a token given twice is refused.
  // Only SHA-256 hashes of the tokens are kept.
  static absl::StatusOr<AccessControl> FromFile(const std::string& path, metrics::Metrics& metrics);
  // Lets every call through (ingestd --insecure-no-auth; local development only).
  static AccessControl Open(metrics::Metrics& metrics);

  // OK when the caller's token has one of `allowed`; UNAUTHENTICATED for a
  // missing or unknown token, PERMISSION_DENIED for a role not allowed. Every
  // refusal is counted in rollertrace_auth_refusals_total{reason}. The token's
  // hash is compared with every known hash in constant time.
  grpc::Status Check(const grpc::ServerContext* context, std::initializer_list<Role> allowed,
                     const char* call) const;
  // The caller's role (admin when access control is off), or the refusal
  // Check would give a missing or unknown token.
  grpc::Status RoleOf(const grpc::ServerContext* context, Role* role) const;

 private:
  struct Known {
    std::string hash;  // SHA-256 of the token
    Role role;
  };
  AccessControl(std::vector<Known> tokens, bool open, metrics::Metrics& metrics);
  std::vector<Known> tokens_;
  bool open_;
  prometheus::Family<prometheus::Counter>* refusals_;
};

}  // namespace rollertrace::ingest
