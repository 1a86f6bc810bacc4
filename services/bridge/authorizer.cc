#include "bridge/authorizer.h"

#include <pthread.h>

#include <atomic>
#include <iostream>
#include <utility>
#include <vector>

namespace rollertrace::bridge {
namespace {

// rollertrace_bridge_authorize_seconds in stages, in finer buckets where a
// decision's few milliseconds go.
prometheus::Histogram& Stage(metrics::Metrics& metrics, const std::string& stage) {
  return metrics
      .Histogram("rollertrace_bridge_authorize_stage_seconds",
                 "rollertrace_bridge_authorize_seconds by stage: queued until a call to ingestd may open, then "
                 "waiting for ingestd's decision")
      .Add({{"stage", stage}}, prometheus::Histogram::BucketBoundaries{0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005,
                                                                       0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 1});
}

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

struct Authorizer::Call {
  std::chrono::steady_clock::time_point taken;    // off MQTT
  std::chrono::steady_clock::time_point started;  // the call began
  grpc::ClientContext context;
  rollertrace::v1::AuthorizeRequest request;
  rollertrace::v1::Decision decision;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<rollertrace::v1::Decision>> reader;
  // Set (release) by the starting thread before the call may complete, read
  // (acquire) by the completion thread first: the completion queue orders the
  // two inside libgrpc, where ThreadSanitizer cannot see it; this says so in
  // our code.
  std::atomic<bool> started_fully{false};
};

Authorizer::Authorizer(Options options, metrics::Metrics& metrics)
    : options_(std::move(options)),
      stub_(rollertrace::v1::ComplianceService::NewStub(options_.channel)),
      results_(metrics.Counter("rollertrace_bridge_authorizations_total",
                               "Authorisation requests relayed to ingestd, by result (allow, deny, error)")),
      seconds_(metrics
                   .Histogram("rollertrace_bridge_authorize_seconds",
                              "From taking an authorisation request off MQTT to publishing its decision")
                   .Add({}, metrics::Metrics::LatencyBuckets())),
      queued_seconds_(Stage(metrics, "queued")),
      ingestd_seconds_(Stage(metrics, "ingestd")) {
  if (options_.max_inflight == 0) options_.max_inflight = 1;
  thread_ = std::thread([this] { Run(); });
}

Authorizer::~Authorizer() {
  std::vector<std::shared_ptr<Call>> open;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    queue_.clear();
    for (const auto& [raw, call] : open_) open.push_back(call);
  }
  // Outside the lock: a cancelled call's callback may run on this thread.
  for (const auto& call : open) call->context.TryCancel();
  {
    std::unique_lock<std::mutex> lock(mu_);
    idle_cv_.wait(lock, [this] { return open_.empty(); });
  }
  cq_.Shutdown();
  thread_.join();
}

void Authorizer::Submit(std::chrono::steady_clock::time_point taken, rollertrace::v1::AuthorizeRequest request) {
  auto call = std::make_shared<Call>();
  call->taken = taken;
  call->request = std::move(request);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    if (open_.size() >= options_.max_inflight) {
      if (queue_.size() >= options_.max_queued) {
        results_.Add({{"result", "dropped"}}).Increment();
        return;  // the roller decides offline when no answer comes
      }
      queue_.push_back(std::move(call));
      return;
    }
    open_.emplace(call.get(), call);
  }
  Start(call.get());
}

// `call` is in open_, which keeps it until Done.
void Authorizer::Start(Call* call) {
  call->started = std::chrono::steady_clock::now();
  queued_seconds_.Observe(std::chrono::duration<double>(call->started - call->taken).count());
  call->context.set_deadline(std::chrono::system_clock::now() + options_.deadline);
  if (!options_.token.empty()) call->context.AddMetadata("authorization", "Bearer " + options_.token);
  call->reader = stub_->AsyncAuthorizeUse(&call->context, call->request, &cq_);
  call->started_fully.store(true, std::memory_order_release);
  call->reader->Finish(&call->decision, &call->status, call);  // the last touch: Done may run at once
}

void Authorizer::Run() {
  pthread_setname_np(pthread_self(), "bridge-authz");
  void* tag = nullptr;
  bool ok = false;
  while (cq_.Next(&tag, &ok)) Done(static_cast<Call*>(tag));  // a unary call's Finish always ends ok
}

void Authorizer::Done(Call* call) {
  (void)call->started_fully.load(std::memory_order_acquire);
  const grpc::Status& status = call->status;
  ingestd_seconds_.Observe(SecondsSince(call->started));
  if (!status.ok()) {
    bool stopping;  // then a cancelled call is no error
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping = stopping_;
    }
    if (!stopping) {
      results_.Add({{"result", "error"}}).Increment();
      std::cerr << "mqtt-bridge: authorisation for " << call->request.device_id()
                << " failed: " << status.error_message() << std::endl;
    }
  } else {
    results_.Add({{"result", call->decision.allowed() ? "allow" : "deny"}}).Increment();
    // Without an answer the roller decides offline (and says so).
    if (options_.publish(call->request.device_id(), call->decision)) seconds_.Observe(SecondsSince(call->taken));
  }
  std::shared_ptr<Call> done, next;  // released outside the lock
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = open_.find(call);
    done = std::move(it->second);
    open_.erase(it);
    if (!stopping_ && !queue_.empty()) {
      next = std::move(queue_.front());
      queue_.pop_front();
      open_.emplace(next.get(), next);
    }
    if (open_.empty()) idle_cv_.notify_all();
  }
  if (next) Start(next.get());
}

}  // namespace rollertrace::bridge
