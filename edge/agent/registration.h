// Registers simulated devices with ingestd's RegistryService, for demos and
// load runs (an administrator would use `rollerctl register`).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rollertrace/v1/records.pb.h"

namespace rollertrace::edge {

// Registers each device; ones already registered are left as they are.
// Returns how many were new.
// `token`: an admin bearer token, or empty when ingestd runs without access control;
// `tls_ca`: the CA certificate (PEM file) when ingestd serves TLS, else empty.
absl::StatusOr<size_t> RegisterDevices(const std::string& ingestd_address, const std::string& token,
                                       const std::vector<rollertrace::v1::Device>& devices,
                                       const std::string& tls_ca = {});

}  // namespace rollertrace::edge
