#include "agent/device_agent.h"

#include <algorithm>

namespace rollertrace::edge {

DeviceAgent::DeviceAgent(Spool& spool, AgentOptions options)
    : spool_(spool),
      options_(options),
      topic_(codec::EventsTopic(options.kind, spool.device_id(), options.json)),
      current_timeout_(options.ack_timeout) {}

absl::StatusOr<rollertrace::v1::Event> DeviceAgent::Record(rollertrace::v1::Event event, uint64_t source_cursor) {
  return spool_.Append(std::move(event), source_cursor);
}

void DeviceAgent::OnAck(const std::string& payload) {
  rollertrace::v1::DeviceAck ack;
  if (!ack.ParseFromString(payload) || ack.device_id() != spool_.device_id()) return;
  absl::StatusOr<size_t> removed = spool_.Acknowledge(ack);
  if (!removed.ok() || *removed == 0) return;
  acked_events_ += *removed;
  last_ack_ns_ = Clock::now().time_since_epoch().count();
}

void DeviceAgent::OnConnected() { resend_all_ = true; }

void DeviceAgent::Pump(const Publisher& publish, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (spool_.pending_count() == 0) {
    last_progress_ = now;
    current_timeout_ = options_.ack_timeout;
    return;
  }
  const Clock::time_point last_ack{Clock::duration(last_ack_ns_.load())};
  if (last_ack > last_progress_) {
    last_progress_ = last_ack;
    current_timeout_ = options_.ack_timeout;
  }
  // Only acks count as progress. Without them the whole backlog goes out
  // again, with the wait doubling while nothing answers.
  if (now - last_progress_ > current_timeout_) {
    resend_all_ = true;
    ++resends_;
    current_timeout_ = std::min(current_timeout_ * 2, std::chrono::milliseconds(60000));
  }
  if (resend_all_.exchange(false)) {
    sent_through_ = 0;
    last_progress_ = now;
  }
  while (true) {
    std::vector<rollertrace::v1::Event> events = spool_.Pending(sent_through_, options_.max_batch_events);
    if (events.empty()) return;
    rollertrace::v1::EventBatch batch;
    batch.set_device_id(spool_.device_id());
    for (auto& e : events) *batch.add_events() = std::move(e);
    if (!publish(topic_, codec::EncodeBatch(batch, options_.json)).ok()) {
      resend_all_ = true;  // the connection is down; start over once it is back
      return;
    }
    sent_through_ = batch.events(batch.events_size() - 1).sequence();
    published_events_ += batch.events_size();
  }
}

AgentStats DeviceAgent::stats() const {
  AgentStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.published_events = published_events_;
    s.resends = resends_;
  }
  s.acked_events = acked_events_;
  s.pending = spool_.pending_count();
  s.oldest_pending_unix_ms = spool_.oldest_pending_unix_ms();
  return s;
}

}  // namespace rollertrace::edge
