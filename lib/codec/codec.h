// Decoding and validation of what devices publish, and the topic layout of
// ARCHITECTURE.md. Pure: no network, no clock.
#pragma once

#include "codec/limits.h"

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "rollertrace/v1/events.pb.h"
#include "rollertrace/v1/services.pb.h"

namespace rollertrace::codec {

// Default upper bound on one MQTT payload.
inline constexpr std::size_t kDefaultMaxPayloadBytes = 256 * 1024;

enum class TopicKind { kRollerEvents, kSteriliserCycles };

// What a device topic says: whose it is and how its payload is encoded.
struct Topic {
  TopicKind kind;
  std::string device_id;
  bool json = false;
};

// Device ids are 1-64 characters of [A-Za-z0-9._-], starting alphanumeric, so
// they are safe in MQTT topics and in store keys.
absl::Status ValidateDeviceId(std::string_view device_id);

// Parses "rollers/{id}/events[/json]" or "sterilisers/{id}/cycles[/json]".
// Returns NotFound for any other topic.
absl::StatusOr<Topic> ParseTopic(std::string_view topic);

// "rollers" or "sterilisers": the first level of the device's topics.
std::string_view TopicRoot(TopicKind kind);
std::string EventsTopic(TopicKind kind, std::string_view device_id, bool json);
std::string AckTopic(TopicKind kind, std::string_view device_id);
std::string StatusTopic(TopicKind kind, std::string_view device_id);

// Checks what every batch must satisfy, however it arrived: batch and event
// device ids equal `device_id` (an empty event device id is filled in), at
// least one event, sequences from 1, every event has a body, every session
// start names its patient by reference and carries no pseudonym.
// PermissionDenied for a device mismatch, else InvalidArgument.
absl::Status ValidateEvents(std::string_view device_id, rollertrace::v1::EventBatch* batch);

// Decodes and validates a payload received on `topic`:
//   - larger than max_bytes                         -> ResourceExhausted
//   - not decodable (binary or JSON)                -> DataLoss
//   - batch or event device id differs from topic's -> PermissionDenied
//   - no events, sequence 0, missing body, body not
//     allowed on this topic                         -> InvalidArgument
// Events with an empty device_id inherit the topic's.
absl::StatusOr<rollertrace::v1::EventBatch> DecodeBatch(
    const Topic& topic, std::string_view payload,
    std::size_t max_bytes = kDefaultMaxPayloadBytes);

// The label under which a DecodeBatch failure is counted:
// "oversized", "malformed", "device_mismatch", "invalid" or "unknown_topic".
std::string_view RejectReason(const absl::Status& status);

std::string EncodeBatch(const rollertrace::v1::EventBatch& batch, bool json);

// rollers/{id}/authorize, /decision and /command.
std::string AuthorizeTopic(std::string_view device_id);
std::string DecisionTopic(std::string_view device_id);
std::string CommandTopic(std::string_view device_id);
// The device id of "rollers/{id}/authorize"; NotFound for any other topic.
absl::StatusOr<std::string> ParseAuthorizeTopic(std::string_view topic);
// An AuthorizeRequest in binary protobuf, or in the JSON mapping when the
// payload starts with '{'. Same errors as DecodeBatch; the request's
// device_id is filled in when empty.
absl::StatusOr<rollertrace::v1::AuthorizeRequest> DecodeAuthorize(std::string_view device_id,
                                                                  std::string_view payload,
                                                                  std::size_t max_bytes = kDefaultMaxPayloadBytes);

// "session_started", "usage_sample", ... or "empty": the metric label of an event.
std::string_view EventType(const rollertrace::v1::Event& event);

}  // namespace rollertrace::codec
