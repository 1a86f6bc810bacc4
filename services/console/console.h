// The compliance officer's web console: server-rendered pages over ingestd's
// gRPC API, called with the signed-in user's own role token (the console has
// no rights of its own). cpp-httplib serves HTTP(S); see docs/CONSOLE.md.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "console/sessions.h"
#include "metrics/metrics.h"
#include "rollertrace/v1/services.grpc.pb.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace rollertrace::console {

struct ConsoleOptions {
  std::string listen = "127.0.0.1:8080";
  std::string tls_cert, tls_key;  // both or neither
  std::chrono::minutes session_ttl{30};
};

class Console {
 public:
  Console(std::shared_ptr<grpc::Channel> ingestd, ConsoleOptions options, metrics::Metrics& metrics);
  ~Console();
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  // Binds; a clear error when the address is taken or TLS files are bad.
  absl::Status Bind();
  // Serves until Stop(). Blocks.
  void Serve();
  void Stop();
  int port() const { return port_; }

 private:
  struct Call;
  void Route();
  void Handle(const char* page, const httplib::Request& req, httplib::Response& res,
              void (Console::*handler)(Call&));
  void Page(Call& c, const std::string& title, const std::string& body);
  void Fail(Call& c, const grpc::Status& s);
  // Answers 403 and returns true when the user is not an admin.
  bool RefuseUnlessAdmin(Call& c, const char* what);
  // The cycle number of a /cycle/{steriliser}/{n} path (0 when out of range).
  static uint64_t CycleNumber(const Call& c);
  grpc::Status ReadCycleTrail(const Call& c, const std::string& steriliser, uint64_t number,
                              rollertrace::v1::CycleTrail* trail);
  // After an action: its error, or a redirect to `next`.
  void Done(Call& c, const grpc::Status& st, const std::string& next);

  void SignOut(Call& c);
  void Overview(Call& c);
  void Roller(Call& c);
  void Patient(Call& c);
  void Cycle(Call& c);
  void Violations(Call& c);
  void Report(Call& c);
  void Verify(Call& c);
  void Live(Call& c);
  void Gaps(Call& c);
  void Unlock(Call& c);
  void Retire(Call& c);
  void Indicator(Call& c);

  ConsoleOptions options_;
  std::unique_ptr<rollertrace::v1::RegistryService::Stub> registry_;
  std::unique_ptr<rollertrace::v1::ComplianceService::Stub> compliance_;
  SessionStore sessions_;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Gauge& signed_in_;
};

}  // namespace rollertrace::console
