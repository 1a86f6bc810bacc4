// Authorizer: answers rollers' authorisation requests through ingestd's
// AuthorizeUse, on a gRPC channel with a connection of its own.
//
// A request taken off MQTT starts its call at once, from the thread that took
// it (Paho's receive thread), with gRPC's asynchronous API: no thread of the
// bridge has to wake before ingestd is asked. One thread of its own
// ("bridge-authz") waits on the calls' completion queue and publishes each
// decision as ingestd's answer arrives. (Not gRPC's callback API: in Debian's
// gRPC its threads sleep 100 ms after each quiet second, and a clinic's
// authorisations come seconds apart.) At most `max_inflight` calls are open;
// requests beyond wait in a queue of up to `max_queued`, each started as a
// call ends; beyond that a request is dropped and counted (the roller decides
// offline when no answer comes).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <map>
#include <string>
#include <thread>

#include "metrics/metrics.h"
#include "rollertrace/v1/services.grpc.pb.h"

namespace rollertrace::bridge {

class Authorizer {
 public:
  struct Options {
    std::shared_ptr<grpc::Channel> channel;
    // Bearer token of role "device" for ingestd; empty when it runs without access control.
    std::string token;
    size_t max_inflight = 16;
    size_t max_queued = 10000;
    std::chrono::milliseconds deadline{5000};
    // Publishes a decision to `device_id`; false when it could not be handed on.
    std::function<bool(const std::string& device_id, const rollertrace::v1::Decision& decision)> publish;
  };
  Authorizer(Options options, metrics::Metrics& metrics);
  // Cancels the calls still open and waits for them to end.
  ~Authorizer();
  Authorizer(const Authorizer&) = delete;
  Authorizer& operator=(const Authorizer&) = delete;

  // `taken`: when the request came off MQTT.
  void Submit(std::chrono::steady_clock::time_point taken, rollertrace::v1::AuthorizeRequest request);

 private:
  struct Call;
  void Start(Call* call);
  // The completion queue's thread.
  void Run();
  void Done(Call* call);

  Options options_;
  std::unique_ptr<rollertrace::v1::ComplianceService::Stub> stub_;
  grpc::CompletionQueue cq_;
  prometheus::Family<prometheus::Counter>& results_;
  prometheus::Histogram& seconds_;
  prometheus::Histogram& queued_seconds_;
  prometheus::Histogram& ingestd_seconds_;

  std::mutex mu_;
  std::condition_variable idle_cv_;     // open_ became empty
  // Calls started, not ended (shared: the destructor cancels them outside
  // the lock, while their callbacks may end them); guarded by mu_.
  std::map<Call*, std::shared_ptr<Call>> open_;
  std::deque<std::shared_ptr<Call>> queue_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::thread thread_;                       // runs Run; last, started once the rest is made
};

}  // namespace rollertrace::bridge
