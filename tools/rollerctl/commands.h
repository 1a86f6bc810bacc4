// rollerctl's commands over ingestd's gRPC API. Each returns the process exit
// code: 0 done, 1 the server refused or failed (message on err), 3 unreachable.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <ostream>
#include <string>

#include "rollertrace/v1/services.grpc.pb.h"

namespace rollertrace::rollerctl {

struct Context {
  std::shared_ptr<grpc::Channel> channel;
  bool json = false;
  std::chrono::seconds timeout{10};
  // Bearer token for ingestd; empty when it runs without access control.
  std::string token;
  std::ostream* out;
  std::ostream* err;
};

// A call's context: deadline, wait for a starting ingestd, the bearer token.
std::unique_ptr<grpc::ClientContext> Call(const Context& ctx);
// Prints why a call failed; returns the exit code (6 not allowed, 3 unreachable, 1 other).
int Fail(const Context& ctx, const grpc::Status& s);
// The protobuf JSON mapping, field names as in the .proto.
void PrintJson(const Context& ctx, const google::protobuf::Message& m);

int Register(const Context& ctx, const rollertrace::v1::Device& device);
int List(const Context& ctx, rollertrace::v1::DeviceKind kind);
int Show(const Context& ctx, const std::string& device_id);
// limit 0: every event from `from` on, fetched page by page.
int History(const Context& ctx, const std::string& device_id, uint64_t from, uint64_t limit);
int Gaps(const Context& ctx, const std::string& device_id);
int Retire(const Context& ctx, const std::string& device_id, const std::string& reason);
int Unlock(const Context& ctx, const std::string& device_id, const std::string& reason, const std::string& by);

// A cycle is named "<steriliser>:<number>", e.g. "S-01:7".
struct CycleName {
  std::string steriliser_id;
  uint64_t number = 0;
};
bool ParseCycleName(const std::string& text, CycleName* out);

int Cycle(const Context& ctx, const CycleName& cycle);
int BiologicalIndicator(const Context& ctx, const CycleName& cycle, bool pass, const std::string& by);
int Recall(const Context& ctx, const CycleName& cycle);
int Violations(const Context& ctx, const rollertrace::v1::ViolationsRequest& filter);
// The whole history of a roller in time order; with_events adds every event.
int RollerTrail(const Context& ctx, const std::string& device_id, bool with_events);
// By pseudonym, or by the clinic's reference (pseudonymised by ingestd).
int PatientTrail(const Context& ctx, const std::string& pseudonym, const std::string& ref);
int CycleTrail(const Context& ctx, const CycleName& cycle);
// Exit 5 when a chain is broken.
int Verify(const Context& ctx, const std::string& device_id);
int Authorize(const Context& ctx, const rollertrace::v1::AuthorizeRequest& request);

// Archives (archive.cc): export to a file, import a file into a fresh store,
// a consistent online backup written by ingestd.
int Export(const Context& ctx, const rollertrace::v1::ExportRequest& request, const std::string& path);
int Import(const Context& ctx, const std::string& path);
int Backup(const Context& ctx, const std::string& directory);

}  // namespace rollertrace::rollerctl
