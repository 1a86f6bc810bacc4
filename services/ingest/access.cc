#include "ingest/access.h"

#include <openssl/crypto.h>

#include <sstream>

#include "store/chain.h"
#include "util/cat.h"
#include "util/secret_file.h"

namespace rollertrace::ingest {

const char* RoleName(Role r) {
  switch (r) {
    case Role::kDevice:
      return "device";
    case Role::kAuditor:
      return "auditor";
    case Role::kAdmin:
      return "admin";
  }
  return "?";
}

namespace {

// The store's SHA-256 (algorithm fetched once; OpenSSL 3's one-shot SHA256()
// looks it up on every call, and every gRPC call hashes its token).
std::string HashToken(std::string_view token) { return store::Sha256(token); }

}  // namespace

AccessControl::AccessControl(std::vector<Known> tokens, bool open, metrics::Metrics& metrics)
    : tokens_(std::move(tokens)),
      open_(open),
      refusals_(&metrics.Counter("rollertrace_auth_refusals_total",
                                 "gRPC calls refused: missing_token, unknown_token or forbidden")) {}

AccessControl AccessControl::Open(metrics::Metrics& metrics) { return AccessControl({}, true, metrics); }

absl::StatusOr<AccessControl> AccessControl::FromFile(const std::string& path, metrics::Metrics& metrics) {
  absl::StatusOr<std::vector<util::PrivatePair>> lines = util::ReadPrivatePairs(path, "tokens file", "<role> <token>");
  if (!lines.ok()) return lines.status();
  std::vector<Known> tokens;
  for (const auto& [n, role, token] : *lines) {
    Role r;
    if (role == "device") {
      r = Role::kDevice;
    } else if (role == "auditor") {
      r = Role::kAuditor;
    } else if (role == "admin") {
      r = Role::kAdmin;
    } else {
      return absl::InvalidArgumentError(
          util::Cat(path, " line ", n, ": unknown role '", role, "' (device, auditor or admin)"));
    }
    if (token.size() < 16) {
      return absl::InvalidArgumentError(util::Cat(path, " line ", n, ": tokens need at least 16 characters"));
    }
    std::string hash = HashToken(token);
    for (const Known& k : tokens) {
      if (k.hash == hash) {
        return absl::InvalidArgumentError(
            util::Cat(path, " line ", n, ": this token is already given to another line; every token must differ"));
      }
    }
    tokens.push_back({std::move(hash), r});
  }
  if (tokens.empty()) return absl::InvalidArgumentError(util::Cat(path, ": no tokens"));
  return AccessControl(std::move(tokens), false, metrics);
}

grpc::Status AccessControl::Check(const grpc::ServerContext* context, std::initializer_list<Role> allowed,
                                  const char* call) const {
  if (open_) return grpc::Status::OK;
  Role role;
  if (grpc::Status known = RoleOf(context, &role); !known.ok()) return known;
  for (Role r : allowed) {
    if (r == role) return grpc::Status::OK;
  }
  refusals_->Add({{"reason", "forbidden"}}).Increment();
  return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, util::Cat("role ", RoleName(role), " may not call ", call));
}

grpc::Status AccessControl::RoleOf(const grpc::ServerContext* context, Role* role) const {
  if (open_) {
    *role = Role::kAdmin;
    return grpc::Status::OK;
  }
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    refusals_->Add({{"reason", "missing_token"}}).Increment();
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing bearer token (authorization: Bearer <token>; rollerctl --token-file)");
  }
  std::string value(it->second.data(), it->second.size());
  const std::string prefix = "Bearer ";
  const std::string token = value.rfind(prefix, 0) == 0 ? value.substr(prefix.size()) : value;
  // Every known hash is compared, each in constant time, so the time taken
  // says nothing about how close a guess came.
  const std::string hash = HashToken(token);
  const Known* match = nullptr;
  for (const Known& k : tokens_) {
    if (CRYPTO_memcmp(k.hash.data(), hash.data(), hash.size()) == 0) match = &k;
  }
  if (match == nullptr) {
    refusals_->Add({{"reason", "unknown_token"}}).Increment();
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "unknown token");
  }
  *role = match->role;
  return grpc::Status::OK;
}

}  // namespace rollertrace::ingest
