#include "agent/registration.h"

#include <grpcpp/grpcpp.h>

#include "rollertrace/v1/services.grpc.pb.h"
#include "rpc/credentials.h"
#include "util/cat.h"

namespace rollertrace::edge {

absl::StatusOr<size_t> RegisterDevices(const std::string& ingestd_address, const std::string& token,
                                       const std::vector<rollertrace::v1::Device>& devices,
                                       const std::string& tls_ca) {
  auto credentials = rpc::ClientCredentials(tls_ca);
  if (!credentials.ok()) return credentials.status();
  auto channel = grpc::CreateChannel(ingestd_address, *credentials);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    return absl::UnavailableError(util::Cat("ingestd at ", ingestd_address, " did not answer within 10 s"));
  }
  auto stub = rollertrace::v1::RegistryService::NewStub(channel);
  size_t added = 0;
  for (const auto& device : devices) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
    rollertrace::v1::RegisterRequest request;
    *request.mutable_device() = device;
    rollertrace::v1::Device response;
    grpc::Status s = stub->Register(&context, request, &response);
    if (s.ok()) {
      ++added;
    } else if (s.error_code() != grpc::StatusCode::ALREADY_EXISTS) {
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                          util::Cat("registering ", device.device_id(), ": ", s.error_message()));
    }
  }
  return added;
}

}  // namespace rollertrace::edge
