// JSON device payloads decoded with simdjson (libsimdjson-dev) straight into
// protobuf messages by reflection. It takes the protobuf JSON mapping as
// devices write it (lowerCamelCase or proto field names, 64-bit integers as
// numbers or strings, enums by name, nested messages and repeated fields) and
// declines anything else — bytes, maps, well-known types, enums by number,
// NaN, a repeated or unknown key, two members of a oneof — so the caller can ask
// protobuf's own parser, which has the final word. Where it accepts, it gives
// exactly what protobuf's parser gives (tests/unit/codec: differential, on
// generated and mutated payloads).
#pragma once

#include <string_view>

#include <google/protobuf/message.h>

namespace rollertrace::codec {

// True when `json` was decoded into `message` (cleared first); false when the
// text is not JSON or uses something this decoder leaves to protobuf
// (`message` is then in an unspecified state).
bool FastJsonToMessage(std::string_view json, google::protobuf::Message* message);

}  // namespace rollertrace::codec
