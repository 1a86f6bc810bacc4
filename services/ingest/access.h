// Access control on ingestd's gRPC API: a bearer token in the "authorization"
// metadata names a role. device (mqtt-bridge) may only ingest and ask for
// authorisations; auditor reads; admin may do everything, including register,
// retire, unlock and recording biological-indicator results.
#pragma once

#include <grpcpp/grpcpp.h>

#include <initializer_list>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "metrics/metrics.h"

namespace rollertrace::ingest {

enum class Role { kDevice, kAuditor, kAdmin };

class AccessControl {
 public:
  // Reads "<role> <token>" lines (roles: device, auditor, admin; '#' starts a
  // comment). Errors name the line. Tokens must be at least 16 characters.
  static absl::StatusOr<AccessControl> FromFile(const std::string& path, metrics::Metrics& metrics);
  // Lets every call through (ingestd --insecure-no-auth; local development only).
  static AccessControl Open(metrics::Metrics& metrics);

  // OK when the caller's token has one of `allowed`; UNAUTHENTICATED for a
  // missing or unknown token, PERMISSION_DENIED for a role not allowed. Every
  // refusal is counted in rollertrace_auth_refusals_total{reason}.
  grpc::Status Check(const grpc::ServerContext* context, std::initializer_list<Role> allowed,
                     const char* call) const;

 private:
  AccessControl(std::map<std::string, Role> tokens, bool open, metrics::Metrics& metrics);
  std::map<std::string, Role> tokens_;
  bool open_;
  prometheus::Family<prometheus::Counter>* refusals_;
};

}  // namespace rollertrace::ingest
