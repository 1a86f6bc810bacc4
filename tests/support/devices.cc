#include "support/devices.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "codec/codec.h"

namespace rollertrace::testing {

TestDevice::TestDevice(const std::string& mqtt_uri, const std::string& device_id, const std::string& kind)
    : id_(device_id), kind_(kind) {
  mqtt::MqttOptions options;
  options.server_uri = mqtt_uri;
  options.client_id = "test-" + device_id;
  options.tcp_nodelay = true;
  client_ = std::make_unique<mqtt::MqttClient>(options);
  client_->Subscribe(kind + "/" + device_id + "/ack", 1);
  client_->Subscribe(kind + "/" + device_id + "/decision", 1);
  client_->Subscribe(kind + "/" + device_id + "/command", 1);
  client_->OnMessage([this](const std::string& topic, const std::string& payload) {
    std::lock_guard<std::mutex> lock(mu_);
    if (topic.ends_with("/ack")) {
      rollertrace::v1::DeviceAck ack;
      if (ack.ParseFromString(payload)) acked_through_ = std::max(acked_through_, ack.contiguous_through());
    } else if (topic.ends_with("/decision")) {
      decisions_.emplace_back().ParseFromString(payload);
    } else if (topic.ends_with("/command")) {
      commands_.emplace_back().ParseFromString(payload);
    }
    cv_.notify_all();
  });
  client_->Start();
  EXPECT_TRUE(client_->WaitConnected(std::chrono::seconds(10))) << device_id;
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // SUBACK
}

TestDevice::~TestDevice() { client_->Stop(); }

void TestDevice::Send(std::vector<rollertrace::v1::Event> events) {
  rollertrace::v1::EventBatch batch;
  batch.set_device_id(id_);
  for (auto& e : events) {
    e.set_device_id(id_);
    e.set_sequence(next_sequence_++);
    *batch.add_events() = std::move(e);
  }
  const std::string topic = kind_ == "rollers" ? codec::EventsTopic(codec::TopicKind::kRollerEvents, id_, false)
                                               : codec::EventsTopic(codec::TopicKind::kSteriliserCycles, id_, false);
  ASSERT_TRUE(client_->Publish(topic, batch.SerializeAsString(), 1).ok());
  std::unique_lock<std::mutex> lock(mu_);
  ASSERT_TRUE(cv_.wait_for(lock, std::chrono::seconds(15), [&] { return acked_through_ >= next_sequence_ - 1; }))
      << id_ << ": no ack for sequence " << next_sequence_ - 1;
}

std::optional<rollertrace::v1::Decision> TestDevice::Authorize(const rollertrace::v1::AuthorizeRequest& request) {
  const size_t before = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    return decisions_.size();
  }();
  EXPECT_TRUE(client_->Publish(codec::AuthorizeTopic(id_), request.SerializeAsString(), 1).ok());
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, std::chrono::seconds(15), [&] { return decisions_.size() > before; })) return std::nullopt;
  return decisions_.back();
}

std::optional<rollertrace::v1::Command> TestDevice::NextCommand(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !commands_.empty(); })) return std::nullopt;
  rollertrace::v1::Command c = commands_.front();
  commands_.erase(commands_.begin());
  return c;
}

rollertrace::v1::Event SessionStart(const std::string& session_id, const std::string& patient_ref, int64_t at,
                                    bool offline) {
  rollertrace::v1::Event e;
  e.set_device_time_unix_ms(at);
  auto* s = e.mutable_session_started();
  s->set_session_id(session_id);
  s->set_patient_ref(patient_ref);
  s->set_operator_id("op-1");
  s->set_indication(rollertrace::v1::INDICATION_PIGMENTATION);
  s->set_area(rollertrace::v1::AREA_FACE);
  s->set_needle_length_mm(1.0);
  s->set_anaesthesia_applied_unix_ms(at - 35 * 60 * 1000);
  s->set_offline_decision(offline);
  return e;
}

rollertrace::v1::Event Usage(const std::string& session_id, uint32_t revolutions, int64_t at) {
  rollertrace::v1::Event e;
  e.set_device_time_unix_ms(at);
  e.mutable_usage_sample()->set_session_id(session_id);
  e.mutable_usage_sample()->set_revolutions(revolutions);
  return e;
}

rollertrace::v1::Event SessionEnd(const std::string& session_id, int64_t at) {
  rollertrace::v1::Event e;
  e.set_device_time_unix_ms(at);
  e.mutable_session_ended()->set_session_id(session_id);
  return e;
}

rollertrace::v1::Event Cycle(uint64_t number, std::vector<std::string> load, int64_t end, bool pass) {
  rollertrace::v1::Event e;
  e.set_device_time_unix_ms(end);
  auto* c = e.mutable_sterilisation_cycle();
  c->set_cycle_number(number);
  c->set_method("steam_prevacuum");
  c->set_start_unix_ms(end - 45 * 60 * 1000);
  c->set_end_unix_ms(end);
  c->set_exposure_temperature_c(pass ? 134.5 : 126.0);
  c->set_exposure_seconds(240);
  c->set_chemical_indicator(rollertrace::v1::INDICATOR_PASS);
  c->set_biological_indicator(rollertrace::v1::INDICATOR_PENDING);
  c->set_loaded_by("tech-a");
  c->set_released_by("tech-b");
  for (auto& r : load) c->add_load(r);
  return e;
}

bool Has(const rollertrace::v1::Decision& d, const std::string& rule) {
  return std::any_of(d.hits().begin(), d.hits().end(),
                     [&](const rollertrace::v1::RuleHit& h) { return h.rule() == rule; });
}

std::string Rules(const rollertrace::v1::Decision& d) {
  std::string out;
  for (const auto& h : d.hits()) out += h.rule() + " (" + h.detail() + ") ";
  return out;
}

rollertrace::v1::AuthorizeRequest AuthorizeFor(const std::string& roller, const std::string& patient_ref,
                                               int64_t start) {
  rollertrace::v1::AuthorizeRequest r;
  r.set_device_id(roller);
  r.set_correlation_id("corr-" + roller + "-" + std::to_string(start));
  *r.mutable_session() = SessionStart("", patient_ref, start).session_started();
  r.set_start_unix_ms(start);
  return r;
}

}  // namespace rollertrace::testing
