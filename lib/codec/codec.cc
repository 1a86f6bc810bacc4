#include "codec/codec.h"

#include "codec/fast_json.h"

#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/json_util.h>

#include <vector>

#include "util/cat.h"

namespace rollertrace::codec {
namespace {

using rollertrace::v1::Event;
using rollertrace::v1::EventBatch;

bool IsIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

// Splits on '/', at most max_parts parts; returns fewer when there are fewer.
std::vector<std::string_view> SplitTopic(std::string_view topic) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t slash = topic.find('/', start);
    if (slash == std::string_view::npos) {
      parts.push_back(topic.substr(start));
      return parts;
    }
    parts.push_back(topic.substr(start, slash - start));
    start = slash + 1;
  }
}

absl::Status ValidateBody(const Topic& topic, const Event& event) {
  if (event.body_case() == Event::BODY_NOT_SET) {
    return absl::InvalidArgumentError(
        util::Cat("device ", topic.device_id, " sequence ", event.sequence(), ": event has no body"));
  }
  const bool is_cycle = event.body_case() == Event::kSterilisationCycle;
  if (topic.kind == TopicKind::kSteriliserCycles && !is_cycle) {
    return absl::InvalidArgumentError(util::Cat("steriliser ", topic.device_id, " sequence ",
                                                   event.sequence(), ": only sterilisation cycles may be sent on ",
                                                   "sterilisers/{id}/cycles, got ", EventType(event)));
  }
  if (topic.kind == TopicKind::kRollerEvents && is_cycle) {
    return absl::InvalidArgumentError(util::Cat("roller ", topic.device_id, " sequence ", event.sequence(),
                                                   ": sterilisation cycles belong on sterilisers/{id}/cycles"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateDeviceId(std::string_view device_id) {
  if (device_id.empty() || device_id.size() > 64) {
    return absl::InvalidArgumentError(
        util::Cat("device id must be 1-64 characters, got ", device_id.size()));
  }
  if (!IsIdChar(device_id[0]) || device_id[0] == '.' || device_id[0] == '_' || device_id[0] == '-') {
    return absl::InvalidArgumentError(util::Cat("device id '", device_id, "' must start with a letter or digit"));
  }
  for (char c : device_id) {
    if (!IsIdChar(c)) {
      return absl::InvalidArgumentError(
          util::Cat("device id '", device_id, "' may hold only letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

std::string_view TopicRoot(TopicKind kind) {
  return kind == TopicKind::kRollerEvents ? "rollers" : "sterilisers";
}

std::string EventsTopic(TopicKind kind, std::string_view device_id, bool json) {
  return util::Cat(TopicRoot(kind), "/", device_id,
                      kind == TopicKind::kRollerEvents ? "/events" : "/cycles", json ? "/json" : "");
}

std::string AckTopic(TopicKind kind, std::string_view device_id) {
  return util::Cat(TopicRoot(kind), "/", device_id, "/ack");
}

std::string StatusTopic(TopicKind kind, std::string_view device_id) {
  return util::Cat(TopicRoot(kind), "/", device_id, "/status");
}

absl::StatusOr<Topic> ParseTopic(std::string_view topic) {
  std::vector<std::string_view> parts = SplitTopic(topic);
  if (parts.size() < 3 || parts.size() > 4 || (parts.size() == 4 && parts[3] != "json")) {
    return absl::NotFoundError(util::Cat("not a device data topic: '", topic, "'"));
  }
  Topic parsed;
  if (parts[0] == "rollers" && parts[2] == "events") {
    parsed.kind = TopicKind::kRollerEvents;
  } else if (parts[0] == "sterilisers" && parts[2] == "cycles") {
    parsed.kind = TopicKind::kSteriliserCycles;
  } else {
    return absl::NotFoundError(util::Cat("not a device data topic: '", topic, "'"));
  }
  if (absl::Status s = ValidateDeviceId(parts[1]); !s.ok()) {
    return absl::NotFoundError(util::Cat("topic '", topic, "': ", s.message()));
  }
  parsed.device_id = std::string(parts[1]);
  parsed.json = parts.size() == 4;
  return parsed;
}

namespace {

absl::Status Bounded(std::string_view device_id, uint64_t sequence, const char* field, const std::string& value,
                     size_t limit) {
  if (value.size() <= limit) return absl::OkStatus();
  return absl::OutOfRangeError(util::Cat("device ", device_id, " sequence ", sequence, ": ", field, " is ",
                                         value.size(), " bytes, the limit is ", limit));
}

// Every string and repeated field of an event within Limits.
absl::Status WithinLimits(std::string_view device_id, const Event& e) {
  const uint64_t q = e.sequence();
  const int64_t t = e.device_time_unix_ms();
  if (t < Limits::kEarliestUnixMs || t > Limits::kLatestUnixMs) {
    return absl::OutOfRangeError(util::Cat("device ", device_id, " sequence ", q, ": device time ", t,
                                           " ms is not a date between 1970 and 2100"));
  }
  absl::Status s;
  auto check = [&](const char* field, const std::string& value, size_t limit) {
    if (s.ok()) s = Bounded(device_id, q, field, value, limit);
  };
  switch (e.body_case()) {
    case Event::kSessionStarted: {
      const auto& b = e.session_started();
      check("session_id", b.session_id(), Limits::kIdBytes);
      check("patient_ref", b.patient_ref(), Limits::kIdBytes);
      check("operator_id", b.operator_id(), Limits::kIdBytes);
      check("decision_id", b.decision_id(), Limits::kIdBytes);
      break;
    }
    case Event::kUsageSample:
      check("session_id", e.usage_sample().session_id(), Limits::kIdBytes);
      break;
    case Event::kSessionEnded:
      check("session_id", e.session_ended().session_id(), Limits::kIdBytes);
      break;
    case Event::kSterilisationCycle: {
      const auto& c = e.sterilisation_cycle();
      check("steriliser_id", c.steriliser_id(), Limits::kIdBytes);
      check("method", c.method(), Limits::kTextBytes);
      check("loaded_by", c.loaded_by(), Limits::kTextBytes);
      check("released_by", c.released_by(), Limits::kTextBytes);
      if (s.ok() && static_cast<size_t>(c.load_size()) > Limits::kLoadRollers) {
        s = absl::OutOfRangeError(util::Cat("device ", device_id, " sequence ", q, ": a load of ", c.load_size(),
                                            " rollers, the limit is ", Limits::kLoadRollers));
      }
      for (const auto& r : c.load()) check("load", r, Limits::kIdBytes);
      break;
    }
    case Event::kHeartbeat:
      check("firmware", e.heartbeat().firmware(), Limits::kTextBytes);
      break;
    default:
      break;
  }
  return s;
}

}  // namespace

absl::Status ValidateEvents(std::string_view device_id, EventBatch* batch) {
  if (batch->device_id() != device_id) {
    return absl::PermissionDeniedError(
        util::Cat("topic names device ", device_id, " but the batch is for '", batch->device_id(), "'"));
  }
  if (absl::Status s = ValidateDeviceId(device_id); !s.ok()) return s;
  if (batch->events_size() == 0) {
    return absl::InvalidArgumentError(util::Cat("device ", device_id, ": batch has no events"));
  }
  if (static_cast<size_t>(batch->events_size()) > Limits::kBatchEvents) {
    return absl::OutOfRangeError(util::Cat("device ", device_id, ": a batch of ", batch->events_size(),
                                           " events, the limit is ", Limits::kBatchEvents));
  }
  for (Event& event : *batch->mutable_events()) {
    if (event.device_id().empty()) {
      event.set_device_id(std::string(device_id));
    } else if (event.device_id() != device_id) {
      return absl::PermissionDeniedError(
          util::Cat("batch is for device ", device_id, " but an event is for '", event.device_id(), "'"));
    }
    if (event.sequence() == 0) {
      return absl::InvalidArgumentError(util::Cat("device ", device_id, ": sequence numbers start at 1, got 0"));
    }
    if (event.body_case() == Event::BODY_NOT_SET) {
      return absl::InvalidArgumentError(
          util::Cat("device ", device_id, " sequence ", event.sequence(), ": event has no body"));
    }
    if (absl::Status s = WithinLimits(device_id, event); !s.ok()) return s;
    if (event.has_session_started()) {
      // DOMAIN.md: only ingestd makes pseudonyms, and a session needs its patient.
      if (!event.session_started().patient_pseudonym().empty()) {
        return absl::InvalidArgumentError(util::Cat(
            "device ", device_id, " sequence ", event.sequence(),
            ": a session start carries a patient pseudonym; only ingestd makes pseudonyms, send patientRef"));
      }
      if (event.session_started().patient_ref().empty()) {
        return absl::InvalidArgumentError(util::Cat("device ", device_id, " sequence ", event.sequence(),
                                                    ": a session start needs the patient's reference (patientRef)"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<EventBatch> DecodeBatch(const Topic& topic, std::string_view payload, std::size_t max_bytes) {
  if (payload.size() > max_bytes) {
    return absl::ResourceExhaustedError(util::Cat("device ", topic.device_id, ": payload of ", payload.size(),
                                                     " bytes exceeds the limit of ", max_bytes));
  }
  EventBatch batch;
  // A device's bad bytes are counted by the caller; protobuf should not also log each one.
  google::protobuf::LogSilencer quiet;
  if (topic.json) {
    // simdjson first (most of the bridge's time went into protobuf's JSON
    // parser); whatever it declines, protobuf's parser decides.
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    const bool parsed = FastJsonToMessage(payload, &batch) ||
                        google::protobuf::util::JsonStringToMessage(
                            google::protobuf::StringPiece(payload.data(), payload.size()), &batch, options)
                            .ok();
    if (!parsed) {
      return absl::DataLossError(
          // protobuf's message quotes the payload near the error: it could
          // carry a raw patient reference into a log, so it is not repeated.
          util::Cat("device ", topic.device_id, ": payload of ", payload.size(),
                    " bytes is not an EventBatch in JSON (protobuf JSON mapping)"));
    }
  } else if (!batch.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::DataLossError(util::Cat("device ", topic.device_id, ": payload is not a binary EventBatch"));
  }
  if (absl::Status s = ValidateEvents(topic.device_id, &batch); !s.ok()) return s;
  for (const Event& event : batch.events()) {
    if (absl::Status s = ValidateBody(topic, event); !s.ok()) return s;
  }
  return batch;
}

std::string_view RejectReason(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kResourceExhausted:
      return "oversized";
    case absl::StatusCode::kDataLoss:
      return "malformed";
    case absl::StatusCode::kPermissionDenied:
      return "device_mismatch";
    case absl::StatusCode::kNotFound:
      return "unknown_topic";
    case absl::StatusCode::kOutOfRange:
      return "out_of_range";
    default:
      return "invalid";
  }
}

std::string AuthorizeTopic(std::string_view device_id) { return util::Cat("rollers/", device_id, "/authorize"); }
std::string DecisionTopic(std::string_view device_id) { return util::Cat("rollers/", device_id, "/decision"); }
std::string CommandTopic(std::string_view device_id) { return util::Cat("rollers/", device_id, "/command"); }

absl::StatusOr<std::string> ParseAuthorizeTopic(std::string_view topic) {
  std::vector<std::string_view> parts = SplitTopic(topic);
  if (parts.size() != 3 || parts[0] != "rollers" || parts[2] != "authorize" || !ValidateDeviceId(parts[1]).ok()) {
    return absl::NotFoundError(util::Cat("not an authorisation topic: '", topic, "'"));
  }
  return std::string(parts[1]);
}

absl::StatusOr<rollertrace::v1::AuthorizeRequest> DecodeAuthorize(std::string_view device_id,
                                                                  std::string_view payload, std::size_t max_bytes) {
  if (payload.size() > max_bytes) {
    return absl::ResourceExhaustedError(util::Cat("roller ", device_id, ": authorisation request of ",
                                                  payload.size(), " bytes exceeds the limit of ", max_bytes));
  }
  rollertrace::v1::AuthorizeRequest request;
  google::protobuf::LogSilencer quiet;
  const size_t first = payload.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && payload[first] == '{') {
    if (!FastJsonToMessage(payload, &request)) {
      auto status = google::protobuf::util::JsonStringToMessage(
          google::protobuf::StringPiece(payload.data(), payload.size()), &request);
      if (!status.ok()) {
        // Not protobuf's message: it quotes the payload, which carries a patient reference.
        return absl::DataLossError(util::Cat("roller ", device_id, ": payload of ", payload.size(),
                                             " bytes is not an AuthorizeRequest in JSON (protobuf JSON mapping)"));
      }
    }
  } else if (!request.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::DataLossError(util::Cat("roller ", device_id, ": not a binary AuthorizeRequest"));
  }
  if (request.device_id().empty()) request.set_device_id(std::string(device_id));
  if (request.device_id() != device_id) {
    return absl::PermissionDeniedError(
        util::Cat("topic names roller ", device_id, " but the request is for '", request.device_id(), "'"));
  }
  if (request.correlation_id().empty()) {
    return absl::InvalidArgumentError(util::Cat("roller ", device_id, ": authorisation request has no correlation id"));
  }
  return request;
}

std::string EncodeBatch(const EventBatch& batch, bool json) {
  std::string out;
  if (json) {
    (void)google::protobuf::util::MessageToJsonString(batch, &out);
  } else {
    batch.SerializeToString(&out);
  }
  return out;
}

std::string_view EventType(const Event& event) {
  switch (event.body_case()) {
    case Event::kSessionStarted:
      return "session_started";
    case Event::kUsageSample:
      return "usage_sample";
    case Event::kSessionEnded:
      return "session_ended";
    case Event::kWearMeasured:
      return "wear_measured";
    case Event::kSterilisationCycle:
      return "sterilisation_cycle";
    case Event::kHeartbeat:
      return "heartbeat";
    case Event::BODY_NOT_SET:
      break;
  }
  return "empty";
}

}  // namespace rollertrace::codec
