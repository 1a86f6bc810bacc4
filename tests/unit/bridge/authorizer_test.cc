// The bridge's Authorizer against an in-process gRPC server that stands in for
// ingestd's AuthorizeUse and holds each call until the test lets it go.
#include "bridge/authorizer.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace rollertrace::bridge {
namespace {

using Clock = std::chrono::steady_clock;

// Answers AuthorizeUse with allowed = true once released; counts the calls
// it holds at once.
class HeldDecisions final : public rollertrace::v1::ComplianceService::Service {
 public:
  grpc::Status AuthorizeUse(grpc::ServerContext* context, const rollertrace::v1::AuthorizeRequest* request,
                            rollertrace::v1::Decision* decision) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++holding_;
    most_held_ = std::max(most_held_, holding_);
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_ || context->IsCancelled(); });
    --holding_;
    cv_.notify_all();
    if (context->IsCancelled()) return grpc::Status::CANCELLED;
    decision->set_device_id(request->device_id());
    decision->set_allowed(true);
    return grpc::Status::OK;
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  // Waits (up to 10 s) until `n` calls are held; returns how many are.
  int AwaitHolding(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(10), [&] { return holding_ >= n; });
    return holding_;
  }
  int most_held() {
    std::lock_guard<std::mutex> lock(mu_);
    return most_held_;
  }
  // Wakes held calls so they see a cancellation (IsCancelled is polled).
  void Poke() { cv_.notify_all(); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  int holding_ = 0;
  int most_held_ = 0;
};

class AuthorizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
    auto m = metrics::Metrics::Create("");
    ASSERT_TRUE(m.ok()) << m.status();
    metrics_ = std::move(*m);
  }
  void TearDown() override {
    service_.Release();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }
  std::unique_ptr<Authorizer> Make(size_t max_inflight, size_t max_queued) {
    Authorizer::Options o;
    o.channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials());
    o.max_inflight = max_inflight;
    o.max_queued = max_queued;
    o.publish = [this](const std::string& device_id, const rollertrace::v1::Decision& decision) {
      std::lock_guard<std::mutex> lock(mu_);
      published_[device_id] = decision.allowed();
      cv_.notify_all();
      return true;
    };
    return std::make_unique<Authorizer>(std::move(o), *metrics_);
  }
  static rollertrace::v1::AuthorizeRequest Request(const std::string& roller) {
    rollertrace::v1::AuthorizeRequest r;
    r.set_device_id(roller);
    return r;
  }
  size_t AwaitPublished(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(10), [&] { return published_.size() >= n; });
    return published_.size();
  }
  double Count(const std::string& name, const std::map<std::string, std::string>& labels) {
    for (const auto& family : metrics_->registry().Collect()) {
      if (family.name != name) continue;
      for (const auto& m : family.metric) {
        std::map<std::string, std::string> have;
        for (const auto& l : m.label) have[l.name] = l.value;
        if (have != labels) continue;
        return family.type == prometheus::MetricType::Histogram ? static_cast<double>(m.histogram.sample_count)
                                                                 : m.counter.value;
      }
    }
    return 0;
  }

  HeldDecisions service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<metrics::Metrics> metrics_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, bool> published_;  // guarded by mu_
};

TEST_F(AuthorizerTest, OpensAtMostItsLimitOfCallsAndAnswersTheQueuedOnesAsCallsEnd) {
  auto authorizer = Make(/*max_inflight=*/2, /*max_queued=*/100);
  for (int i = 0; i < 5; ++i) authorizer->Submit(Clock::now(), Request("R-" + std::to_string(i)));
  EXPECT_EQ(service_.AwaitHolding(2), 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(service_.most_held(), 2) << "more calls open than the limit";
  service_.Release();
  ASSERT_EQ(AwaitPublished(5), 5u);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(published_["R-" + std::to_string(i)]) << i;
  }
  EXPECT_EQ(Count("rollertrace_bridge_authorizations_total", {{"result", "allow"}}), 5);
  // Timed once published: the last may still be on its way.
  for (int i = 0; i < 500 && Count("rollertrace_bridge_authorize_seconds", {}) < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(Count("rollertrace_bridge_authorize_seconds", {}), 5);
  EXPECT_EQ(Count("rollertrace_bridge_authorize_stage_seconds", {{"stage", "queued"}}), 5);
  EXPECT_EQ(Count("rollertrace_bridge_authorize_stage_seconds", {{"stage", "ingestd"}}), 5);
}

TEST_F(AuthorizerTest, DropsAndCountsWhatIsBeyondItsQueue) {
  auto authorizer = Make(/*max_inflight=*/1, /*max_queued=*/1);
  authorizer->Submit(Clock::now(), Request("R-open"));
  ASSERT_EQ(service_.AwaitHolding(1), 1);
  authorizer->Submit(Clock::now(), Request("R-queued"));
  authorizer->Submit(Clock::now(), Request("R-dropped"));
  EXPECT_EQ(Count("rollertrace_bridge_authorizations_total", {{"result", "dropped"}}), 1);
  service_.Release();
  ASSERT_EQ(AwaitPublished(2), 2u);
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_EQ(published_.count("R-open"), 1u);
  EXPECT_EQ(published_.count("R-queued"), 1u);
  EXPECT_EQ(published_.count("R-dropped"), 0u);
}

TEST_F(AuthorizerTest, StoppingCancelsOpenCallsAndPublishesNothingForThem) {
  auto authorizer = Make(/*max_inflight=*/4, /*max_queued=*/100);
  for (int i = 0; i < 6; ++i) authorizer->Submit(Clock::now(), Request("R-" + std::to_string(i)));
  ASSERT_EQ(service_.AwaitHolding(4), 4);
  std::thread poke([&] {
    for (int i = 0; i < 100; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      service_.Poke();
    }
  });
  const auto begin = Clock::now();
  authorizer.reset();  // cancels the 4 open calls, forgets the 2 queued
  EXPECT_LT(Clock::now() - begin, std::chrono::seconds(4)) << "waited for the calls' 5 s deadline";
  poke.join();
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_TRUE(published_.empty());
  EXPECT_EQ(Count("rollertrace_bridge_authorizations_total", {{"result", "error"}}), 0)
      << "a cancelled call at shutdown is not an error";
}

}  // namespace
}  // namespace rollertrace::bridge
