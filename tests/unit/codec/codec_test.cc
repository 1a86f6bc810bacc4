#include "codec/codec.h"

#include <gtest/gtest.h>

#include <climits>
#include <functional>

namespace rollertrace::codec {
namespace {

using rollertrace::v1::EventBatch;

EventBatch Batch(const std::string& id, uint64_t seq) {
  EventBatch b;
  b.set_device_id(id);
  auto* e = b.add_events();
  e->set_sequence(seq);
  e->set_device_time_unix_ms(1000);
  e->mutable_heartbeat()->set_battery_fraction(0.9);
  return b;
}

Topic RollerTopic(const std::string& id, bool json = false) { return Topic{TopicKind::kRollerEvents, id, json}; }

// Issue #14: every limit of codec/limits.h, just inside and just outside.
TEST(Limits, EveryDeviceFieldIsBoundedJustInsideAndJustOutside) {
  struct Case {
    const char* name;
    std::function<void(rollertrace::v1::Event&, size_t)> set;
    size_t limit;
  };
  auto start = [](rollertrace::v1::Event& e) -> rollertrace::v1::SessionStarted& {
    auto& s = *e.mutable_session_started();
    if (s.patient_ref().empty()) s.set_patient_ref("MRN-1");
    return s;
  };
  const std::vector<Case> cases = {
      {"session_id", [&](auto& e, size_t n) { start(e).set_session_id(std::string(n, 's')); }, Limits::kIdBytes},
      {"operator_id", [&](auto& e, size_t n) { start(e).set_operator_id(std::string(n, 'o')); }, Limits::kIdBytes},
      {"patient_ref", [&](auto& e, size_t n) { start(e).set_patient_ref(std::string(n, 'p')); }, Limits::kIdBytes},
      {"decision_id", [&](auto& e, size_t n) { start(e).set_decision_id(std::string(n, 'd')); }, Limits::kIdBytes},
      {"usage session_id", [](auto& e, size_t n) { e.mutable_usage_sample()->set_session_id(std::string(n, 'u')); },
       Limits::kIdBytes},
      {"end session_id", [](auto& e, size_t n) { e.mutable_session_ended()->set_session_id(std::string(n, 'e')); },
       Limits::kIdBytes},
      {"firmware", [](auto& e, size_t n) { e.mutable_heartbeat()->set_firmware(std::string(n, 'f')); },
       Limits::kTextBytes},
      {"method", [](auto& e, size_t n) { e.mutable_sterilisation_cycle()->set_method(std::string(n, 'm')); },
       Limits::kTextBytes},
      {"loaded_by", [](auto& e, size_t n) { e.mutable_sterilisation_cycle()->set_loaded_by(std::string(n, 'l')); },
       Limits::kTextBytes},
      {"load", [](auto& e, size_t n) { e.mutable_sterilisation_cycle()->add_load(std::string(n, 'r')); },
       Limits::kIdBytes},
      {"load size",
       [](auto& e, size_t n) {
         for (size_t i = 0; i < n; ++i) e.mutable_sterilisation_cycle()->add_load("R-" + std::to_string(i));
       },
       Limits::kLoadRollers},
  };
  for (const Case& c : cases) {
    for (size_t n : {c.limit, c.limit + 1}) {
      EventBatch b;
      b.set_device_id("R-1");
      auto* e = b.add_events();
      e->set_sequence(1);
      e->set_device_time_unix_ms(1764000000000);
      c.set(*e, n);
      absl::Status s = ValidateEvents("R-1", &b);
      if (n == c.limit) {
        EXPECT_TRUE(s.ok()) << c.name << " at its limit: " << s;
      } else {
        EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange) << c.name << " past its limit: " << s;
        EXPECT_EQ(RejectReason(s), "out_of_range");
      }
    }
  }
  EventBatch many;
  many.set_device_id("R-1");
  for (size_t i = 1; i <= Limits::kBatchEvents + 1; ++i) {
    auto* e = many.add_events();
    e->set_sequence(i);
    e->mutable_heartbeat()->set_battery_fraction(1);
  }
  EXPECT_EQ(ValidateEvents("R-1", &many).code(), absl::StatusCode::kOutOfRange);
  many.mutable_events()->RemoveLast();
  EXPECT_TRUE(ValidateEvents("R-1", &many).ok());
  // Device times: no clock reads before the epoch or after 2100.
  for (auto [t, ok] : {std::pair<int64_t, bool>{0, true}, {-1, false}, {INT64_MIN, false},
                       {Limits::kLatestUnixMs, true}, {Limits::kLatestUnixMs + 1, false}}) {
    EventBatch b = Batch("R-1", 1);
    b.mutable_events(0)->set_device_time_unix_ms(t);
    EXPECT_EQ(ValidateEvents("R-1", &b).ok(), ok) << t;
  }
}

TEST(DecodeBatch, AJsonErrorNeverQuotesThePayload) {
  // Seen (issue #14): protobuf's error quoted nearby payload bytes, so a raw
  // patient reference could reach the bridge's log.
  const std::string payload = R"({"deviceId":"R-1","events":[{"sequence":"1","sessionStarted":{"patientRef":"MRN-SECRET-42","x":1}}]})";
  auto b = DecodeBatch(RollerTopic("R-1", true), payload, kDefaultMaxPayloadBytes);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().message().find("MRN-SECRET"), std::string::npos) << b.status();
  EXPECT_EQ(RejectReason(b.status()), "malformed");
}

TEST(ParseTopic, ReadsRollerAndSteriliserTopics) {
  auto t = ParseTopic("rollers/R-17/events");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->kind, TopicKind::kRollerEvents);
  EXPECT_EQ(t->device_id, "R-17");
  EXPECT_FALSE(t->json);
  t = ParseTopic("sterilisers/S-1/cycles/json");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->kind, TopicKind::kSteriliserCycles);
  EXPECT_TRUE(t->json);
}

TEST(ParseTopic, RefusesOtherTopics) {
  for (const char* topic : {"rollers/R-1/ack", "rollers/R-1", "rollers//events", "rollers/R-1/events/xml",
                            "sterilisers/S-1/events", "x/R-1/events", "rollers/R 1/events",
                            "rollers/R-1/events/json/more"}) {
    auto t = ParseTopic(topic);
    EXPECT_FALSE(t.ok()) << topic;
    EXPECT_EQ(RejectReason(t.status()), "unknown_topic") << topic;
  }
}

TEST(ValidateDeviceId, AcceptsSerialsAndRefusesUnsafeIds) {
  EXPECT_TRUE(ValidateDeviceId("R-0001").ok());
  EXPECT_TRUE(ValidateDeviceId("a.b_c-9").ok());
  EXPECT_FALSE(ValidateDeviceId("").ok());
  EXPECT_FALSE(ValidateDeviceId("-R").ok());
  EXPECT_FALSE(ValidateDeviceId("R/1").ok());
  EXPECT_FALSE(ValidateDeviceId("R+").ok());
  EXPECT_FALSE(ValidateDeviceId(std::string("R\0", 2)).ok());
  EXPECT_FALSE(ValidateDeviceId(std::string(65, 'a')).ok());
  EXPECT_TRUE(ValidateDeviceId(std::string(64, 'a')).ok());
}

TEST(DecodeBatch, DecodesBinaryAndFillsEventDeviceIds) {
  auto b = DecodeBatch(RollerTopic("R-1"), Batch("R-1", 1).SerializeAsString());
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->events(0).device_id(), "R-1");
}

TEST(DecodeBatch, DecodesTheJsonMapping) {
  const std::string json = R"({"deviceId":"R-1","events":[{"sequence":"3","heartbeat":{"batteryFraction":0.5}}]})";
  auto b = DecodeBatch(RollerTopic("R-1", true), json);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->events(0).sequence(), 3u);
  EXPECT_EQ(EncodeBatch(*b, true).find("\"heartbeat\"") != std::string::npos, true);
}

TEST(DecodeBatch, RoundTripsThroughEncodeBatch) {
  for (bool json : {false, true}) {
    EventBatch in = Batch("R-1", 9);
    in.mutable_events(0)->set_device_id("R-1");
    auto out = DecodeBatch(RollerTopic("R-1", json), EncodeBatch(in, json));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->SerializeAsString(), in.SerializeAsString());
  }
}

TEST(DecodeBatch, RejectsMalformedPayloadsAsMalformed) {
  auto b = DecodeBatch(RollerTopic("R-1"), std::string("\xff\xff\xff", 3));
  EXPECT_EQ(RejectReason(b.status()), "malformed");
  b = DecodeBatch(RollerTopic("R-1", true), "{\"deviceId\":");
  EXPECT_EQ(RejectReason(b.status()), "malformed");
  b = DecodeBatch(RollerTopic("R-1", true), R"({"deviceId":"R-1","unknownField":1})");
  EXPECT_EQ(RejectReason(b.status()), "malformed");
}

TEST(DecodeBatch, RejectsOversizedPayloads) {
  auto b = DecodeBatch(RollerTopic("R-1"), std::string(2000, 'x'), 1000);
  EXPECT_EQ(RejectReason(b.status()), "oversized");
  EXPECT_NE(std::string(b.status().message()).find("2000 bytes"), std::string::npos);
}

TEST(DecodeBatch, RejectsAnotherDevicesBatchOrEvent) {
  auto b = DecodeBatch(RollerTopic("R-1"), Batch("R-2", 1).SerializeAsString());
  EXPECT_EQ(RejectReason(b.status()), "device_mismatch");
  EventBatch mixed = Batch("R-1", 1);
  mixed.mutable_events(0)->set_device_id("R-2");
  b = DecodeBatch(RollerTopic("R-1"), mixed.SerializeAsString());
  EXPECT_EQ(RejectReason(b.status()), "device_mismatch");
}

TEST(DecodeBatch, RejectsInvalidContent) {
  EventBatch empty;
  empty.set_device_id("R-1");
  EXPECT_EQ(RejectReason(DecodeBatch(RollerTopic("R-1"), empty.SerializeAsString()).status()), "invalid");
  EXPECT_EQ(RejectReason(DecodeBatch(RollerTopic("R-1"), Batch("R-1", 0).SerializeAsString()).status()), "invalid");
  EventBatch no_body = Batch("R-1", 1);
  no_body.mutable_events(0)->clear_heartbeat();
  EXPECT_EQ(RejectReason(DecodeBatch(RollerTopic("R-1"), no_body.SerializeAsString()).status()), "invalid");
}

TEST(DecodeBatch, KeepsCyclesOnSteriliserTopicsOnly) {
  Topic steriliser{TopicKind::kSteriliserCycles, "S-1", false};
  EXPECT_EQ(RejectReason(DecodeBatch(steriliser, Batch("S-1", 1).SerializeAsString()).status()), "invalid");
  EventBatch cycle = Batch("R-1", 1);
  cycle.mutable_events(0)->mutable_sterilisation_cycle()->set_cycle_number(1);
  EXPECT_EQ(RejectReason(DecodeBatch(RollerTopic("R-1"), cycle.SerializeAsString()).status()), "invalid");
  cycle.set_device_id("S-1");
  EXPECT_TRUE(DecodeBatch(steriliser, cycle.SerializeAsString()).ok());
}

TEST(Topics, FollowTheContract) {
  EXPECT_EQ(EventsTopic(TopicKind::kRollerEvents, "R-1", false), "rollers/R-1/events");
  EXPECT_EQ(EventsTopic(TopicKind::kRollerEvents, "R-1", true), "rollers/R-1/events/json");
  EXPECT_EQ(EventsTopic(TopicKind::kSteriliserCycles, "S-1", false), "sterilisers/S-1/cycles");
  EXPECT_EQ(AckTopic(TopicKind::kRollerEvents, "R-1"), "rollers/R-1/ack");
  EXPECT_EQ(StatusTopic(TopicKind::kSteriliserCycles, "S-1"), "sterilisers/S-1/status");
}

}  // namespace
}  // namespace rollertrace::codec
