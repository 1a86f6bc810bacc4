// The bridge's Forwarder against an in-process gRPC server that stands in for
// ingestd's Ingest stream: it records every request, answers as each test
// says, and can hold its answers back or break the stream.
#include "bridge/forwarder.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace rollertrace::bridge {
namespace {

using rollertrace::v1::EventBatch;
using rollertrace::v1::IngestRequest;
using rollertrace::v1::IngestResponse;

constexpr auto kWait = std::chrono::seconds(10);

EventBatch Batch(const std::string& device, uint64_t first, int events) {
  EventBatch batch;
  batch.set_device_id(device);
  for (int i = 0; i < events; ++i) batch.add_events()->set_sequence(first + static_cast<uint64_t>(i));
  return batch;
}

// What ingestd answers when it stored a request: an ack per batch.
IngestResponse Stored(const IngestRequest& request) {
  IngestResponse response;
  response.set_request_id(request.request_id());
  for (const EventBatch& batch : request.batches()) {
    auto* ack = response.add_acks();
    ack->set_device_id(batch.device_id());
    ack->set_contiguous_through(batch.events(batch.events_size() - 1).sequence());
  }
  return response;
}

// What ingestd answers when its store takes no writes: nothing stored, try
// again in 100 ms.
IngestResponse HeldBack(const IngestRequest& request) {
  IngestResponse response;
  response.set_request_id(request.request_id());
  response.set_unavailable("disk full (test)");
  response.set_retry_after_ms(100);
  return response;
}

// The sequences 1 to `last`.
std::vector<uint64_t> UpTo(uint64_t last) {
  std::vector<uint64_t> out;
  for (uint64_t s = 1; s <= last; ++s) out.push_back(s);
  return out;
}

struct Seen {
  int stream;
  IngestRequest request;
};

// Records requests; answers each one that carries batches with `answer`
// (nullopt ends the stream unanswered) once the gate is open.
class FakeIngestd final : public rollertrace::v1::IngestService::Service {
 public:
  using Answer = std::function<std::optional<IngestResponse>(int stream, const IngestRequest& request)>;

  grpc::Status Ingest(grpc::ServerContext* context,
                      grpc::ServerReaderWriter<IngestResponse, IngestRequest>* stream) override {
    int number = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      number = ++streams_;
    }
    // Requests are read as they come (as ingestd does), answered in order.
    std::deque<IngestRequest> pending;
    bool ended = false;
    std::thread reader([&] {
      IngestRequest request;
      while (stream->Read(&request)) {
        std::lock_guard<std::mutex> lock(mu_);
        seen_.push_back({number, request});
        // Idle requests and confirmations get no answer.
        if (request.batches_size() > 0) pending.push_back(request);
        cv_.notify_all();
      }
      std::lock_guard<std::mutex> lock(mu_);
      ended = true;
      cv_.notify_all();
    });
    grpc::Status result = grpc::Status::OK;
    while (true) {
      IngestRequest request;
      Answer answer;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return ended || (open_ && !pending.empty()); });
        if (!open_ || pending.empty()) break;
        request = std::move(pending.front());
        pending.pop_front();
        answer = answer_;
      }
      std::optional<IngestResponse> response = answer ? answer(number, request) : Stored(request);
      if (!response) {
        result = grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream broken by the test");
        break;
      }
      if (!stream->Write(*response)) break;
    }
    context->TryCancel();  // ends the reader's Read
    reader.join();
    return result;
  }

  void SetAnswer(Answer answer) {
    std::lock_guard<std::mutex> lock(mu_);
    answer_ = std::move(answer);
  }
  void SetOpen(bool open) {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = open;
    cv_.notify_all();
  }
  // Waits (up to kWait) until `done` holds for what was seen; returns a copy.
  std::vector<Seen> AwaitSeen(const std::function<bool(const std::vector<Seen>&)>& done) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, kWait, [&] { return done(seen_); });
    return seen_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int streams_ = 0;
  bool open_ = true;
  Answer answer_;
  std::vector<Seen> seen_;
};

// Events (sequences) of one device in the batches of `seen`, in order.
std::vector<uint64_t> Sequences(const std::vector<Seen>& seen, const std::string& device) {
  std::vector<uint64_t> out;
  for (const Seen& s : seen) {
    for (const EventBatch& b : s.request.batches()) {
      if (b.device_id() != device) continue;
      for (const auto& e : b.events()) out.push_back(e.sequence());
    }
  }
  return out;
}

size_t EventsSeen(const std::vector<Seen>& seen) {
  size_t n = 0;
  for (const Seen& s : seen) {
    for (const EventBatch& b : s.request.batches()) n += static_cast<size_t>(b.events_size());
  }
  return n;
}

class ForwarderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&ingestd_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    auto m = metrics::Metrics::Create("");
    ASSERT_TRUE(m.ok()) << m.status();
    metrics_ = std::move(*m);
  }
  void TearDown() override {
    ingestd_.SetOpen(true);
    // Stopped before it is reset: its threads' callbacks read forwarder_.
    if (forwarder_ != nullptr) forwarder_->Stop();
    forwarder_.reset();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  // A forwarder of requests of up to 10 events, 2 in flight, 30 queued.
  Forwarder& Make() {
    Forwarder::Options o;
    o.channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials());
    o.max_request_events = 10;
    o.max_inflight_requests = 2;
    o.max_queued_events = 30;
    o.linger = std::chrono::milliseconds(0);
    o.publish_acks = [this](const std::vector<AckPublisher::Ack>& acks) {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& ack : acks) {
        rollertrace::v1::DeviceAck parsed;
        parsed.ParseFromString(ack.payload);
        acks_.push_back({ack.topic, parsed.contiguous_through()});
      }
      cv_.notify_all();
    };
    o.publish_command = [this](const rollertrace::v1::Command& command) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        commands_.push_back(command.outbox_index());
      }
      if (on_command_) on_command_(command);
    };
    o.can_publish_commands = [this] { return can_publish_.load(); };
    forwarder_ = std::make_unique<Forwarder>(std::move(o), *metrics_);
    forwarder_->Start();
    return *forwarder_;
  }
  // Waits (up to kWait) for `n` acks; returns them as (topic, contiguous_through).
  std::vector<std::pair<std::string, uint64_t>> AwaitAcks(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, kWait, [&] { return acks_.size() >= n; });
    return acks_;
  }
  double Metric(const std::string& name) {
    for (const auto& family : metrics_->registry().Collect()) {
      if (family.name != name) continue;
      double sum = 0;
      for (const auto& m : family.metric) sum += m.counter.value + m.gauge.value;
      return sum;
    }
    return -1;
  }

  FakeIngestd ingestd_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<metrics::Metrics> metrics_;
  std::unique_ptr<Forwarder> forwarder_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<std::string, uint64_t>> acks_;
  std::vector<uint64_t> commands_;
  std::function<void(const rollertrace::v1::Command&)> on_command_;
  std::atomic<bool> can_publish_{true};
};

TEST_F(ForwarderTest, HoldsTheReaderWhileItsQueueIsFullAndLetsItGoAsIngestdAnswers) {
  ingestd_.SetOpen(false);  // ingestd takes requests and answers none yet
  Forwarder& forwarder = Make();
  // Two requests go out and wait for answers; the queue then fills to 30.
  uint64_t next = 1;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(forwarder.WaitForRoom());
    forwarder.Enqueue(codec::TopicKind::kRollerEvents, Batch("R1", next, 10), 0);
    next += 10;
  }
  ingestd_.AwaitSeen([](const std::vector<Seen>& s) { return EventsSeen(s) >= 20; });
  // 20 in flight, 30 queued: the reader waits.
  std::future<bool> room = std::async(std::launch::async, [&] { return forwarder.WaitForRoom(); });
  EXPECT_EQ(room.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout)
      << "room was given with 30 events queued and 2 requests unanswered";
  EXPECT_EQ(Metric("rollertrace_bridge_queue_events"), 30);

  ingestd_.SetOpen(true);
  ASSERT_EQ(room.wait_for(kWait), std::future_status::ready);
  EXPECT_TRUE(room.get());
  EXPECT_GT(Metric("rollertrace_bridge_blocked_seconds_total"), 0);
  const auto acks = AwaitAcks(5);
  ASSERT_EQ(acks.size(), 5u);
  for (size_t i = 0; i < acks.size(); ++i) {
    EXPECT_EQ(acks[i].first, codec::AckTopic(codec::TopicKind::kRollerEvents, "R1"));
    EXPECT_EQ(acks[i].second, 10 * (i + 1));  // in order
  }
  EXPECT_EQ(Sequences(ingestd_.AwaitSeen([](const auto& s) { return EventsSeen(s) >= 50; }), "R1"), UpTo(50));
  EXPECT_EQ(Metric("rollertrace_bridge_events_forwarded_total"), 50);
}

TEST_F(ForwarderTest, SendsARequestIngestdHeldBackAgainFirstAndAcksItOnlyOnceStored) {
  // The store takes no writes until the refused request comes back: every
  // request answered before then is refused too, as ingestd's would be.
  std::atomic<int> firsts{0};
  ingestd_.SetAnswer([&](int, const IngestRequest& request) -> std::optional<IngestResponse> {
    if (request.batches(0).events(0).sequence() == 1) firsts.fetch_add(1);
    if (firsts.load() < 2) return HeldBack(request);
    return Stored(request);
  });
  Forwarder& forwarder = Make();
  forwarder.Enqueue(codec::TopicKind::kSteriliserCycles, Batch("S1", 1, 10), 0);
  forwarder.Enqueue(codec::TopicKind::kSteriliserCycles, Batch("S1", 11, 10), 0);
  const auto acks = AwaitAcks(2);
  ASSERT_EQ(acks.size(), 2u);
  EXPECT_EQ(acks[0].first, codec::AckTopic(codec::TopicKind::kSteriliserCycles, "S1"));
  EXPECT_EQ(acks[0].second, 10u);
  EXPECT_EQ(acks[1].second, 20u);
  // Both were sent, refused, and sent again in their order.
  const auto seen = ingestd_.AwaitSeen([](const auto& s) { return EventsSeen(s) >= 40; });
  const std::vector<uint64_t> sequences = Sequences(seen, "S1");
  ASSERT_EQ(sequences.size(), 40u);
  std::vector<uint64_t> tail(sequences.end() - 20, sequences.end());
  EXPECT_EQ(tail, UpTo(20));
  EXPECT_EQ(Metric("rollertrace_bridge_ingest_held_back_total"), 2);
}

// Held back at the first of two requests in flight, the forwarder must wait for
// the second's answer before it sends anything: were it to send again after the
// pause while the second was unanswered, and ingestd then held the second back
// too, the second's events would go out behind newer ones.
TEST_F(ForwarderTest, AfterAHoldBackSendsNothingUntilEveryRequestInFlightIsAnswered) {
  std::promise<void> release_second;
  std::shared_future<void> second_released = release_second.get_future().share();
  std::atomic<int> answered{0};
  ingestd_.SetAnswer([&](int, const IngestRequest& request) -> std::optional<IngestResponse> {
    const int n = answered.fetch_add(1);
    if (n == 1) second_released.wait_for(kWait);  // the second answer comes late
    if (n < 2) return HeldBack(request);  // both held back (the store took no writes)
    return Stored(request);
  });
  Forwarder& forwarder = Make();
  forwarder.Enqueue(codec::TopicKind::kRollerEvents, Batch("R5", 1, 10), 0);
  forwarder.Enqueue(codec::TopicKind::kRollerEvents, Batch("R5", 11, 10), 0);
  ingestd_.AwaitSeen([](const auto& s) { return EventsSeen(s) >= 20; });
  forwarder.Enqueue(codec::TopicKind::kRollerEvents, Batch("R5", 21, 10), 0);
  // Well past the 100 ms pause, the second request still unanswered.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_EQ(EventsSeen(ingestd_.AwaitSeen([](const auto&) { return true; })), 20u)
      << "sent again while a request in flight was unanswered";
  release_second.set_value();
  const auto acks = AwaitAcks(3);
  ASSERT_EQ(acks.size(), 3u);
  const auto seen = ingestd_.AwaitSeen([](const auto& s) { return EventsSeen(s) >= 50; });
  const std::vector<uint64_t> sequences = Sequences(seen, "R5");
  ASSERT_EQ(sequences.size(), 50u);
  std::vector<uint64_t> expected = UpTo(20);  // sent and held back
  for (uint64_t s : UpTo(30)) expected.push_back(s);  // sent again, with the third
  EXPECT_EQ(sequences, expected);
}

TEST_F(ForwarderTest, ResendsWhatABrokenStreamLeftUnansweredFirstInOrder) {
  ingestd_.SetAnswer([](int stream, const IngestRequest& request) -> std::optional<IngestResponse> {
    if (stream == 1) return std::nullopt;  // the first stream breaks at its first request
    return Stored(request);
  });
  Forwarder& forwarder = Make();
  for (uint64_t first = 1; first <= 31; first += 10) {
    ASSERT_TRUE(forwarder.WaitForRoom());
    forwarder.Enqueue(codec::TopicKind::kRollerEvents, Batch("R2", first, 10), 0);
  }
  const auto acks = AwaitAcks(4);
  ASSERT_EQ(acks.size(), 4u);
  EXPECT_EQ(acks.back().second, 40u);
  const auto seen = ingestd_.AwaitSeen([](const auto& s) { return EventsSeen(s) >= 40; });
  std::vector<uint64_t> second_stream;
  for (const Seen& s : seen) {
    if (s.stream < 2) continue;
    for (const auto& b : s.request.batches()) {
      for (const auto& e : b.events()) second_stream.push_back(e.sequence());
    }
  }
  EXPECT_EQ(second_stream, UpTo(40)) << "the new stream must carry everything unanswered, oldest first";
  EXPECT_GE(Metric("rollertrace_bridge_ingest_stream_restarts_total"), 2);
}

TEST_F(ForwarderTest, ConfirmsPublishedCommandsAndPublishesRefusedOnesAgain) {
  ingestd_.SetAnswer([](int, const IngestRequest& request) -> std::optional<IngestResponse> {
    IngestResponse response = Stored(request);
    auto* command = response.add_commands();
    command->set_device_id("R3");
    command->set_outbox_index(request.batches(0).events(0).sequence() == 1 ? 7 : 8);
    return response;
  });
  // The first time a command is handed over the control connection is down;
  // then the broker has it.
  can_publish_ = false;
  std::atomic<int> attempts{0};
  on_command_ = [&](const rollertrace::v1::Command& command) {
    if (attempts.fetch_add(1) == 0) {
      forwarder_->CommandNotPublished(command);
    } else {
      forwarder_->CommandPublished(command.outbox_index());
    }
  };
  Forwarder& forwarder = Make();
  forwarder.Enqueue(codec::TopicKind::kRollerEvents, Batch("R3", 1, 5), 0);
  AwaitAcks(1);
  forwarder.Enqueue(codec::TopicKind::kRollerEvents, Batch("R3", 6, 5), 0);
  AwaitAcks(2);
  can_publish_ = true;  // the control connection is up: 7 is published again
  const auto seen = ingestd_.AwaitSeen([](const std::vector<Seen>& s) {
    std::vector<uint64_t> confirmed;
    for (const Seen& x : s) confirmed.insert(confirmed.end(), x.request.commands_published().begin(),
                                             x.request.commands_published().end());
    return std::count(confirmed.begin(), confirmed.end(), 7) == 1 &&
           std::count(confirmed.begin(), confirmed.end(), 8) == 1;
  });
  std::vector<uint64_t> confirmed;
  for (const Seen& x : seen) {
    confirmed.insert(confirmed.end(), x.request.commands_published().begin(), x.request.commands_published().end());
  }
  std::sort(confirmed.begin(), confirmed.end());
  EXPECT_EQ(confirmed, (std::vector<uint64_t>{7, 8}));
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_EQ(commands_.size(), 3u) << "7 refused, 8, then 7 again";
}

TEST_F(ForwarderTest, StopWakesAReaderWaitingForRoom) {
  ingestd_.SetOpen(false);
  Forwarder& forwarder = Make();
  for (uint64_t first = 1; first <= 41; first += 10) {
    forwarder.Enqueue(codec::TopicKind::kRollerEvents, Batch("R4", first, 10), 0);
  }
  ingestd_.AwaitSeen([](const auto& s) { return EventsSeen(s) >= 20; });
  std::future<bool> room = std::async(std::launch::async, [&] { return forwarder.WaitForRoom(); });
  EXPECT_EQ(room.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
  forwarder.Stop();
  ASSERT_EQ(room.wait_for(kWait), std::future_status::ready);
  EXPECT_FALSE(room.get());
}

}  // namespace
}  // namespace rollertrace::bridge
