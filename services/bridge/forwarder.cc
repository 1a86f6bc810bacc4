#include "bridge/forwarder.h"

#include <pthread.h>

#include <algorithm>
#include <iostream>
#include <utility>

namespace rollertrace::bridge {

using rollertrace::v1::EventBatch;
using rollertrace::v1::IngestRequest;
using rollertrace::v1::IngestResponse;

Forwarder::Forwarder(Options options, metrics::Metrics& metrics)
    : options_(std::move(options)),
      ingest_rejected_(metrics.Counter("rollertrace_bridge_ingest_rejections_total",
                                       "Events ingestd refused, by reason, as reported to the bridge")),
      forwarded_(metrics.Counter("rollertrace_bridge_events_forwarded_total", "Events sent to ingestd").Add({})),
      blocked_seconds_(metrics
                           .Counter("rollertrace_bridge_blocked_seconds_total",
                                    "Time the bridge stopped reading from the broker because its queue was full")
                           .Add({})),
      stream_restarts_(metrics
                           .Counter("rollertrace_bridge_ingest_stream_restarts_total",
                                    "Times the gRPC stream to ingestd was (re)opened")
                           .Add({})),
      queue_depth_(metrics.Gauge("rollertrace_bridge_queue_events", "Events waiting to be sent to ingestd").Add({})),
      inflight_depth_(
          metrics.Gauge("rollertrace_bridge_inflight_requests", "Requests sent to ingestd and not yet answered")
              .Add({})),
      held_back_(metrics.Counter("rollertrace_bridge_ingest_held_back_total",
                                 "Requests ingestd could not store (its store took no writes), queued again unacked")
                     .Add({})) {}

Forwarder::~Forwarder() { Stop(); }

void Forwarder::Start() { thread_ = std::thread([this] { Run(); }); }

void Forwarder::Stop() {
  {
    // Under the lock, so that no waiter misses it between its check and its wait.
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  room_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Forwarder::WaitForRoom() {
  std::unique_lock<std::mutex> lock(mu_);
  if (queued_events_ >= options_.max_queued_events && !stopping_) {
    const auto blocked = std::chrono::steady_clock::now();
    room_cv_.wait(lock, [this] { return stopping_ || queued_events_ < options_.max_queued_events; });
    blocked_seconds_.Increment(std::chrono::duration<double>(std::chrono::steady_clock::now() - blocked).count());
  }
  return !stopping_;
}

void Forwarder::Enqueue(codec::TopicKind kind, EventBatch batch, int64_t received_unix_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  // The forwarding thread waits for a queue that is not empty, or, lingering,
  // for a full request: woken only when this batch makes one of those true (a
  // wake-up a message was a system call and a context switch, on machines
  // where both are dear).
  const bool was_empty = queue_.empty();
  const bool was_short = queued_events_ < options_.max_request_events;
  queued_events_ += static_cast<size_t>(batch.events_size());
  queue_.push_back(Queued{kind, std::move(batch), received_unix_ms});
  queue_depth_.Set(static_cast<double>(queued_events_));
  const bool wake = was_empty || (was_short && queued_events_ >= options_.max_request_events);
  lock.unlock();
  if (wake) cv_.notify_all();
}

void Forwarder::CommandPublished(uint64_t outbox_index) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    published_commands_.push_back(outbox_index);
  }
  cv_.notify_all();
}

void Forwarder::CommandNotPublished(rollertrace::v1::Command command) {
  std::lock_guard<std::mutex> lock(mu_);
  unpublished_commands_.push_back(std::move(command));
}

void Forwarder::Run() {
  pthread_setname_np(pthread_self(), "bridge-forward");
  if (options_.on_thread_start) options_.on_thread_start();
  auto stub = rollertrace::v1::IngestService::NewStub(options_.channel);
  std::chrono::milliseconds backoff(100);
  while (!stopping_) {
    if (!options_.channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::milliseconds(500))) {
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
      continue;
    }
    stream_restarts_.Increment();
    const auto opened = std::chrono::steady_clock::now();
    ServeStream(*stub);
    if (stopping_) break;
    std::cerr << "mqtt-bridge: stream to ingestd ended, reopening" << std::endl;
    // A stream refused at once (ingestd refusing our token, say) must not spin.
    if (std::chrono::steady_clock::now() - opened < std::chrono::seconds(1)) {
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    } else {
      backoff = std::chrono::milliseconds(100);
    }
  }
}

void Forwarder::ServeStream(rollertrace::v1::IngestService::Stub& stub) {
  grpc::ClientContext context;
  if (!options_.token.empty()) context.AddMetadata("authorization", "Bearer " + options_.token);
  auto stream = stub.Ingest(&context);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stream_broken_ = false;
  }
  std::thread reader([&] {
    pthread_setname_np(pthread_self(), "bridge-answers");
    IngestResponse response;
    while (stream->Read(&response)) HandleResponse(response);
    {
      std::lock_guard<std::mutex> lock(mu_);
      stream_broken_ = true;
    }
    cv_.notify_all();
  });

  // What the previous stream took and did not answer goes first, in order.
  std::vector<std::shared_ptr<const IngestRequest>> resend;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, inflight] : inflight_) resend.push_back(inflight.request);
  }
  bool ok = true;
  for (const auto& request : resend) {
    if (!(ok = stream->Write(*request))) break;
  }

  const auto can_publish = [this] { return !options_.can_publish_commands || options_.can_publish_commands(); };
  auto last_write = std::chrono::steady_clock::now();
  while (ok && !stopping_) {
    std::shared_ptr<const IngestRequest> request;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(200), [&] {
        return stopping_ || stream_broken_ || !published_commands_.empty() ||
               (!unpublished_commands_.empty() && can_publish()) || MaySendLocked();
      });
      if (stopping_ || stream_broken_) break;
      if (!unpublished_commands_.empty() && can_publish()) {
        std::vector<rollertrace::v1::Command> again;
        again.swap(unpublished_commands_);
        lock.unlock();
        for (const auto& command : again) options_.publish_command(command);
        lock.lock();
        const bool failed_again = !unpublished_commands_.empty();
        lock.unlock();
        if (failed_again) std::this_thread::sleep_for(std::chrono::milliseconds(100));  // no spinning
        continue;
      }
      if (!published_commands_.empty()) {
        // Commands the broker has: ingestd forgets them (an answer with
        // request id 0, which nothing waits for).
        IngestRequest confirm;
        for (uint64_t index : published_commands_) confirm.add_commands_published(index);
        lock.unlock();
        if (!(ok = stream->Write(confirm))) break;  // kept: the next stream says it
        lock.lock();
        published_commands_.erase(published_commands_.begin(),
                                  published_commands_.begin() + confirm.commands_published_size());
        last_write = std::chrono::steady_clock::now();
        continue;
      }
      if (std::chrono::steady_clock::now() < paused_until_ || HoldingBackLocked()) continue;
      if (queue_.empty() && std::chrono::steady_clock::now() - last_write > std::chrono::seconds(1)) {
        // An empty request now and then collects commands ingestd raised
        // outside ingestion (recalls, unlocks).
        lock.unlock();
        ok = stream->Write(IngestRequest());
        last_write = std::chrono::steady_clock::now();
        continue;
      }
      if (queue_.empty() || inflight_.size() >= options_.max_inflight_requests) continue;
      if (queued_events_ < options_.max_request_events && options_.linger.count() > 0) {
        cv_.wait_for(lock, options_.linger,
                     [this] { return stopping_ || queued_events_ >= options_.max_request_events; });
      }
      request = TakeRequestLocked();
    }
    room_cv_.notify_all();
    ok = stream->Write(*request);
    last_write = std::chrono::steady_clock::now();
  }
  context.TryCancel();
  reader.join();
  grpc::Status status = stream->Finish();
  if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED && !stopping_) {
    std::cerr << "mqtt-bridge: ingestd ended the stream: " << status.error_message() << std::endl;
  }
}

bool Forwarder::HoldingBackLocked() const { return holding_ && !inflight_.empty(); }

bool Forwarder::MaySendLocked() const {
  return !queue_.empty() && inflight_.size() < options_.max_inflight_requests &&
         std::chrono::steady_clock::now() >= paused_until_ && !HoldingBackLocked();
}

std::shared_ptr<const IngestRequest> Forwarder::TakeRequestLocked() {
  Inflight inflight;
  auto next = std::make_shared<IngestRequest>();
  size_t events = 0;
  while (!queue_.empty() &&
         (events == 0 || events + static_cast<size_t>(queue_.front().batch.events_size()) <= options_.max_request_events)) {
    Queued& q = queue_.front();
    events += static_cast<size_t>(q.batch.events_size());
    if (next->bridge_received_unix_ms() == 0) next->set_bridge_received_unix_ms(q.received_unix_ms);
    inflight.kinds[q.batch.device_id()] = q.kind;
    *next->add_batches() = std::move(q.batch);
    queue_.pop_front();
    if (requeued_ > 0) --requeued_;
  }
  queued_events_ -= events;
  queue_depth_.Set(static_cast<double>(queued_events_));
  const uint64_t id = next_request_id_++;
  next->set_request_id(id);
  inflight.request = next;
  inflight_.emplace(id, std::move(inflight));
  inflight_depth_.Set(static_cast<double>(inflight_.size()));
  forwarded_.Increment(static_cast<double>(events));
  return next;
}

void Forwarder::RequeueLocked(const Inflight& inflight, uint32_t retry_after_ms, const std::string& why) {
  // Copied: the request is shared with the stream that sent it. Rare.
  // Behind the requests put back before it (answers come in request order),
  // ahead of everything never sent.
  auto at = queue_.begin() + static_cast<std::ptrdiff_t>(requeued_);
  for (const EventBatch& b : inflight.request->batches()) {
    queued_events_ += static_cast<size_t>(b.events_size());
    // Every batch's device has its kind (TakeRequestLocked).
    at = queue_.insert(at, Queued{inflight.kinds.at(b.device_id()), b, inflight.request->bridge_received_unix_ms()});
    ++at;
    ++requeued_;
  }
  queue_depth_.Set(static_cast<double>(queued_events_));
  if (!holding_) std::cerr << "mqtt-bridge: ingestd holds writes back: " << why << std::endl;
  holding_ = true;
  paused_until_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max<uint32_t>(retry_after_ms, 100));
  held_back_.Increment();
}

void Forwarder::HandleResponse(const IngestResponse& response) {
  for (const auto& command : response.commands()) options_.publish_command(command);
  std::map<std::string, codec::TopicKind> kinds;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = inflight_.find(response.request_id());
    if (it == inflight_.end()) return;  // an idle request, or answered before a stream restart
    if (!response.unavailable().empty()) {
      // Nothing of it was stored (ingestd's store takes no writes): back to
      // the head of the queue, unacked, and a pause before sending again.
      RequeueLocked(it->second, response.retry_after_ms(), response.unavailable());
    } else {
      if (holding_) std::cerr << "mqtt-bridge: ingestd takes writes again" << std::endl;
      holding_ = false;
      kinds = std::move(it->second.kinds);
    }
    inflight_.erase(it);
    inflight_depth_.Set(static_cast<double>(inflight_.size()));
  }
  cv_.notify_all();
  if (!response.unavailable().empty()) return;
  for (const auto& rejection : response.rejections()) {
    ingest_rejected_.Add({{"reason", rejection.reason()}}).Increment();
  }
  std::vector<AckPublisher::Ack> acks;
  acks.reserve(static_cast<size_t>(response.acks_size()));
  for (const auto& ack : response.acks()) {
    auto kind = kinds.find(ack.device_id());
    if (kind == kinds.end()) continue;
    acks.push_back({codec::AckTopic(kind->second, ack.device_id()), ack.SerializeAsString()});
  }
  if (!acks.empty()) options_.publish_acks(acks);
}

}  // namespace rollertrace::bridge
