// gRPC credentials from PEM files: TLS when files are given, plaintext (for
// loopback and tests) when not. The one place RollerTrace builds them.
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace rollertrace::rpc {

// TLS trusting the CA certificate(s) in `ca_file`; insecure when it is empty.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ClientCredentials(const std::string& ca_file);

// TLS with this certificate chain and private key; insecure when both are
// empty. InvalidArgument when only one is given or a file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const std::string& cert_file,
                                                                          const std::string& key_file);

}  // namespace rollertrace::rpc
