#include "agent/device_agent.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <optional>

namespace rollertrace::edge {

void AckTimer::Observe(Clock::duration round_trip) {
  const double r = std::chrono::duration<double, std::milli>(round_trip).count();
  std::lock_guard<std::mutex> lock(mu_);
  if (!seeded_) {
    seeded_ = true;
    srtt_ms_ = r;
    rttvar_ms_ = r / 2;
    return;
  }
  rttvar_ms_ = 0.75 * rttvar_ms_ + 0.25 * std::abs(srtt_ms_ - r);
  srtt_ms_ = 0.875 * srtt_ms_ + 0.125 * r;
}

std::chrono::milliseconds AckTimer::Timeout(std::chrono::milliseconds floor) const {
  std::lock_guard<std::mutex> lock(mu_);
  return TimeoutLocked(floor);
}

std::chrono::milliseconds AckTimer::TimeoutLocked(std::chrono::milliseconds floor) const {
  const double ms = seeded_ ? srtt_ms_ + 4 * rttvar_ms_ : 0;
  const auto learnt = std::chrono::milliseconds(static_cast<int64_t>(std::min(ms, 60000.0)));
  return std::max(floor, learnt);
}

void AckTimer::Acked(Clock::time_point delivered, Clock::time_point at) {
  std::lock_guard<std::mutex> lock(mu_);
  latest_acked_delivery_ = std::max(latest_acked_delivery_, delivered);
  last_ack_ = std::max(last_ack_, at);
}

bool AckTimer::Overtaken(Clock::time_point delivered, std::chrono::milliseconds floor) const {
  std::lock_guard<std::mutex> lock(mu_);
  return latest_acked_delivery_ > delivered + TimeoutLocked(floor);
}

bool AckTimer::Progressing(Clock::time_point now, Clock::duration within) const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_ack_ != Clock::time_point{} && now - last_ack_ <= within;
}

DeviceAgent::DeviceAgent(Spool& spool, AgentOptions options)
    : spool_(spool),
      options_(options),
      topic_(codec::EventsTopic(options.kind, spool.device_id(), options.json)),
      current_timeout_(options.ack_timeout),
      ack_timer_(options.ack_timer != nullptr ? options.ack_timer : std::make_shared<AckTimer>()) {
  absl::StatusOr<std::optional<rollertrace::v1::AgentState>> saved = spool_.LoadAgentState();
  if (!saved.ok()) {
    std::cerr << "agent: " << saved.status().message() << "; offline decisions start from nothing" << std::endl;
    return;
  }
  std::lock_guard<std::mutex> lock(auth_mu_);
  if (*saved) {
    const rollertrace::v1::AgentState& s = **saved;
    {
      cache_.registered = s.server_answered();
      cache_.device = s.snapshot().device();
      cache_.use = s.snapshot().use();
      cache_.sessions_started = s.snapshot().sessions_started();
      cache_.total_revolutions = s.snapshot().total_revolutions();
      cache_patient_bound_ = s.snapshot().patient_bound();
    }
    bound_patient_ref_ = s.bound_patient_ref();
    locked_ = s.locked();
    lock_reason_ = s.lock_reason();
    through_sequence_ = s.through_sequence();
  }
  // Own events spooled after the state was last saved (it is saved without a
  // sync after each event): fold them in again.
  for (const auto& e : spool_.Pending(through_sequence_, SIZE_MAX)) NoteLocked(e);
}

rollertrace::v1::AgentState DeviceAgent::StateLocked() const {
  rollertrace::v1::AgentState s;
  s.set_server_answered(cache_.registered);
  auto* snap = s.mutable_snapshot();
  *snap->mutable_device() = cache_.device;
  *snap->mutable_use() = cache_.use;
  snap->set_sessions_started(cache_.sessions_started);
  snap->set_total_revolutions(cache_.total_revolutions);
  snap->set_patient_bound(cache_patient_bound_);
  s.set_bound_patient_ref(bound_patient_ref_);
  s.set_locked(locked_);
  s.set_lock_reason(lock_reason_);
  s.set_through_sequence(through_sequence_);
  return s;
}

void DeviceAgent::SaveStateLocked(bool sync) {
  if (absl::Status s = spool_.SaveAgentState(StateLocked(), sync); !s.ok()) {
    std::cerr << "agent: " << spool_.device_id() << ": " << s.message() << std::endl;
  }
}

absl::StatusOr<rollertrace::v1::Event> DeviceAgent::Record(rollertrace::v1::Event event, uint64_t source_cursor) {
  if (event.has_session_started()) {
    // ingestd would refuse it for good: say so now, before it is spooled.
    if (event.session_started().patient_ref().empty()) {
      return absl::InvalidArgumentError("a session start needs the patient's reference (patientRef)");
    }
    if (!event.session_started().patient_pseudonym().empty()) {
      return absl::InvalidArgumentError("a session start carries no pseudonym; ingestd makes them from patientRef");
    }
  }
  absl::StatusOr<rollertrace::v1::Event> recorded = spool_.Append(std::move(event), source_cursor);
  if (recorded.ok()) NoteRecorded(*recorded);
  return recorded;
}

void DeviceAgent::NoteRecorded(const rollertrace::v1::Event& e) {
  std::lock_guard<std::mutex> lock(auth_mu_);
  NoteLocked(e);
  SaveStateLocked(/*sync=*/false);
}

void DeviceAgent::NoteLocked(const rollertrace::v1::Event& e) {
  through_sequence_ = std::max(through_sequence_, e.sequence());
  auto* use = &cache_.use;
  const int64_t t = e.device_time_unix_ms();
  if (e.has_session_started()) {
    ++cache_.sessions_started;
    if (bound_patient_ref_.empty()) bound_patient_ref_ = e.session_started().patient_ref();
    open_session_patient_ref_ = e.session_started().patient_ref();
    use->set_last_session_start_unix_ms(t);
  } else if (e.has_usage_sample()) {
    cache_.total_revolutions += e.usage_sample().revolutions();
  } else if (e.has_session_ended()) {
    use->set_last_session_end_unix_ms(t);
    // The bound patient's own session, or one whose start this process never
    // saw (after a restart): counted as the patient's, the stricter reading.
    if (open_session_patient_ref_.empty() || open_session_patient_ref_ == bound_patient_ref_) {
      use->set_bound_patient_last_session_end_unix_ms(t);
    }
    open_session_patient_ref_.clear();
  } else if (e.has_wear_measured()) {
    use->set_measured_wear(std::max(use->measured_wear(), e.wear_measured().wear_fraction()));
  }
}

void DeviceAgent::OnDecision(const std::string& payload) {
  rollertrace::v1::Decision d;
  if (!d.ParseFromString(payload) || d.device_id() != spool_.device_id()) return;
  {
    std::lock_guard<std::mutex> lock(auth_mu_);
    // One nobody waits for any more (it came after the timeout) is dropped.
    if (!awaited_.count(d.correlation_id())) return;
    answers_[d.correlation_id()] = d;
  }
  auth_cv_.notify_all();
}

void DeviceAgent::OnCommand(const std::string& payload) {
  rollertrace::v1::Command c;
  if (!c.ParseFromString(payload) || c.device_id() != spool_.device_id()) return;
  std::lock_guard<std::mutex> lock(auth_mu_);
  if (c.command() == "lock" || c.command() == "retire") {
    locked_ = true;
    lock_reason_ = c.command() + ": " + c.reason();
  } else if (c.command() == "unlock") {
    locked_ = false;
    lock_reason_.clear();
  } else {
    return;
  }
  SaveStateLocked(/*sync=*/true);
}

bool DeviceAgent::locked() const {
  std::lock_guard<std::mutex> lock(auth_mu_);
  return locked_;
}

Authorization DeviceAgent::Authorize(const rollertrace::v1::SessionStarted& session, int64_t start,
                                     const Publisher& publish, std::chrono::milliseconds timeout) {
  Authorization result;
  std::string correlation;
  {
    std::lock_guard<std::mutex> lock(auth_mu_);
    if (locked_) {
      result.decision.set_device_id(spool_.device_id());
      auto* hit = result.decision.add_hits();
      hit->set_rule(rules::kDeviceLocked);
      hit->set_severity(rollertrace::v1::SEVERITY_DENY);
      hit->set_detail(lock_reason_);
      ++sessions_refused_;
      return result;
    }
    correlation = spool_.device_id() + "-" + std::to_string(start) + "-" + std::to_string(next_correlation_++);
    awaited_.insert(correlation);
  }
  rollertrace::v1::AuthorizeRequest request;
  request.set_device_id(spool_.device_id());
  request.set_correlation_id(correlation);
  *request.mutable_session() = session;
  request.set_start_unix_ms(start);
  const bool sent = publish(codec::AuthorizeTopic(spool_.device_id()), request.SerializeAsString(), {}).ok();

  std::unique_lock<std::mutex> lock(auth_mu_);
  const bool answered = sent && auth_cv_.wait_for(lock, timeout, [&] { return answers_.count(correlation) > 0; });
  awaited_.erase(correlation);
  if (answered) {
    result.decision = answers_[correlation];
    answers_.erase(correlation);
    result.allowed = result.decision.allowed();
    if (result.decision.has_roller()) {
      const auto& snap = result.decision.roller();
      cache_.registered = true;
      cache_.device = snap.device();
      cache_.use = snap.use();
      cache_.sessions_started = snap.sessions_started();
      cache_.total_revolutions = snap.total_revolutions();
      cache_patient_bound_ = snap.patient_bound();
      // The server's word, kept for a restart: synced.
      SaveStateLocked(/*sync=*/true);
    }
  } else {
    // Offline: the same rules over what this device last heard and did since.
    // Patients are compared by the clinic's reference, which the agent has.
    rules::RollerFacts facts = cache_;
    facts.registered = true;
    facts.use.set_bound_patient(bound_patient_ref_);
    // The server says the roller is bound but this agent does not know to
    // whom (it never sees pseudonyms): no patient may be assumed to match.
    if (bound_patient_ref_.empty() && cache_patient_bound_) facts.use.set_bound_patient("(bound, patient unknown here)");
    if (cache_.device.device_id().empty()) facts.device.set_lifecycle(rollertrace::v1::LIFECYCLE_REGISTERED);
    rules::Decision local = rules::Decide(policy_, facts, rules::RequestFor(session, session.patient_ref(), start));
    result.offline = true;
    result.allowed = local.allowed;
    result.decision.set_device_id(spool_.device_id());
    result.decision.set_decision_id(correlation + "-offline");
    result.decision.set_allowed(local.allowed);
    result.decision.set_offline(true);
    result.decision.set_correlation_id(correlation);
    for (auto& h : local.hits) *result.decision.add_hits() = h;
    ++offline_decisions_;
  }
  if (result.allowed) {
    ++sessions_allowed_;
  } else {
    ++sessions_refused_;
  }
  return result;
}

void DeviceAgent::OnAck(const std::string& payload) {
  rollertrace::v1::DeviceAck ack;
  if (!ack.ParseFromString(payload) || ack.device_id() != spool_.device_id()) return;
  absl::StatusOr<size_t> removed = spool_.Acknowledge(ack);
  if (!removed.ok() || *removed == 0) return;
  const Clock::time_point now = Clock::now();
  {
    std::lock_guard<std::mutex> lock(rtt_mu_);
    std::optional<Clock::time_point> first_sent;    // the latest first send acked: a round-trip sample
    std::optional<Clock::time_point> delivered;     // the broker's latest delivery (PUBACK) acked
    for (auto it = in_flight_.begin(); it != in_flight_.end();) {
      if (!Settled(*it)) {
        ++it;
        continue;
      }
      // First sends only, as for round trips: an ack that frees a resent
      // batch may answer its first send, which the broker took long before
      // (counting resends made each spurious resend overtake more batches).
      if (it->first_send) {
        first_sent = it->sent;
        // Not yet told of its PUBACK: the broker took it after it was sent.
        const Clock::time_point d = it->delivered.value_or(it->sent);
        delivered = delivered ? std::max(*delivered, d) : d;
      }
      it = in_flight_.erase(it);
    }
    if (first_sent) ack_timer_->Observe(now - *first_sent);
    if (delivered) ack_timer_->Acked(*delivered, now);
  }
  acked_events_ += *removed;
  last_ack_ns_ = now.time_since_epoch().count();
}

void DeviceAgent::OnConnected() { resend_all_ = true; }

void DeviceAgent::OnDelivered(uint64_t through, Clock::time_point when) {
  std::lock_guard<std::mutex> lock(rtt_mu_);
  for (auto& f : in_flight_) {
    if (f.through == through && !f.delivered) {
      f.delivered = when;
      break;
    }
  }
}

bool DeviceAgent::Settled(const InFlight& batch) const { return !spool_.AnyPending(batch.first, batch.through); }

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
  bool overtaken = false;
  {
    std::lock_guard<std::mutex> lock(rtt_mu_);
    // An ack that raced with the publish of a batch it covers left it here.
    while (!in_flight_.empty() && Settled(in_flight_.front())) in_flight_.pop_front();
    // The wait counts from the broker's latest PUBACK when that is later.
    for (const InFlight& f : in_flight_) {
      if (f.delivered && *f.delivered > last_progress_) last_progress_ = *f.delivered;
    }
    overtaken = !in_flight_.empty() && in_flight_.front().delivered &&
                ack_timer_->Overtaken(*in_flight_.front().delivered, options_.ack_timeout);
  }
  // What the fleet learnt of the server's ack round trip is the least wait.
  current_timeout_ = std::max(current_timeout_, ack_timer_->Timeout(options_.ack_timeout));
  // Only acks count as progress. Without them the whole backlog goes out
  // again, with the wait doubling while nothing answers; while the fleet
  // hears acks for what the broker took before ours, ours is only queued.
  const auto waited = now - last_progress_;
  const bool timed_out = waited > current_timeout_ &&
                         (waited > kMaxWait || !ack_timer_->Progressing(now, current_timeout_));
  if (overtaken || timed_out) {
    resend_all_ = true;
    ++resends_;
    current_timeout_ = std::min(current_timeout_ * 2, kMaxWait);
  }
  if (resend_all_.exchange(false)) {
    sent_through_ = 0;
    last_progress_ = now;
    std::lock_guard<std::mutex> lock(rtt_mu_);
    in_flight_.clear();  // an ack may now answer either send: no sample (Karn)
  }
  while (true) {
    std::vector<rollertrace::v1::Event> events = spool_.Pending(sent_through_, options_.max_batch_events);
    if (events.empty()) return;
    rollertrace::v1::EventBatch batch;
    batch.set_device_id(spool_.device_id());
    for (auto& e : events) *batch.add_events() = std::move(e);
    const uint64_t first = batch.events(0).sequence();
    const uint64_t through = batch.events(batch.events_size() - 1).sequence();
    {
      // Listed before the publish: its PUBACK may come before publish returns.
      std::lock_guard<std::mutex> lock(rtt_mu_);
      // Timed by the real clock: `now` may be a test's.
      in_flight_.push_back({first, through, Clock::now(), std::nullopt, first > highest_published_});
    }
    const absl::Status published = publish(topic_, codec::EncodeBatch(batch, options_.json),
                                           [this, through] { OnDelivered(through, Clock::now()); });
    if (absl::IsResourceExhausted(published)) {
      // The client's queue is full, not the connection down: what it took
      // stays in flight, and this batch goes out on a later pump.
      std::lock_guard<std::mutex> lock(rtt_mu_);
      in_flight_.pop_back();
      return;
    }
    if (!published.ok()) {
      resend_all_ = true;  // the connection is down; start over once it is back
      return;
    }
    sent_through_ = through;
    published_events_ += batch.events_size();
    highest_published_ = std::max(highest_published_, sent_through_);
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
  {
    std::lock_guard<std::mutex> lock(auth_mu_);
    s.sessions_allowed = sessions_allowed_;
    s.sessions_refused = sessions_refused_;
    s.offline_decisions = offline_decisions_;
    s.locked = locked_;
    s.quarantined = spool_.quarantined();
  }
  s.pending = spool_.pending_count();
  s.oldest_pending_unix_ms = spool_.oldest_pending_unix_ms();
  return s;
}

}  // namespace rollertrace::edge
