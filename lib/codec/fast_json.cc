#include "codec/fast_json.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <string>
#include <unordered_map>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>
// GCC 12 sees dangling pointers and uninitialised tape references in
// simdjson's inlined DOM iterators that are not there (false positives); only here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <simdjson.h>

namespace rollertrace::codec {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// An integer given as a JSON number (integral) or as a string of digits.
template <typename T>
bool Integer(simdjson::dom::element v, T* out) {
  if constexpr (std::is_signed_v<T>) {
    int64_t x;
    if (v.is_int64()) {
      x = v.get_int64().value_unsafe();
    } else if (v.is_string()) {
      std::string_view s = v.get_string().value_unsafe();
      if (s.empty() || s.size() > 20) return false;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
      if (ec != std::errc() || end != s.data() + s.size()) return false;
    } else {
      return false;
    }
    if (x < std::numeric_limits<T>::min() || x > std::numeric_limits<T>::max()) return false;
    *out = static_cast<T>(x);
  } else {
    uint64_t x;
    if (v.is_uint64()) {
      x = v.get_uint64().value_unsafe();
    } else if (v.is_string()) {
      std::string_view s = v.get_string().value_unsafe();
      if (s.empty() || s.size() > 20 || s[0] == '-' || s[0] == '+') return false;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
      if (ec != std::errc() || end != s.data() + s.size()) return false;
    } else {
      return false;
    }
    if (x > std::numeric_limits<T>::max()) return false;
    *out = static_cast<T>(x);
  }
  return true;
}

bool Number(simdjson::dom::element v, double* out) {
  if (v.is_int64()) {
    *out = static_cast<double>(v.get_int64().value_unsafe());
  } else if (v.is_uint64()) {
    *out = static_cast<double>(v.get_uint64().value_unsafe());
  } else if (v.is_double()) {
    *out = v.get_double().value_unsafe();
  } else {
    return false;  // "NaN", "Infinity" and numbers in strings: protobuf's
  }
  return std::isfinite(*out);
}

// A message type's fields by both the names protobuf's JSON parser takes:
// the JSON name (lowerCamelCase) and the proto name (views of the
// descriptor's own strings, which live as long as the program), and its
// reflection. A device message has a handful of fields: a scan of short
// names beats hashing a copy of the key. Kept per type, so that a message's
// descriptor and reflection are not asked of it again for every event
// (GetDescriptor and GetReflection were a tenth of a JSON decode).
class FieldTable {
 public:
  struct Type {
    const Descriptor* descriptor = nullptr;
    const Reflection* reflection = nullptr;
    std::vector<std::pair<std::string_view, const FieldDescriptor*>> fields;
    const FieldDescriptor* Find(std::string_view name) const {
      for (const auto& [n, f] : fields) {
        if (n == name) return f;
      }
      return nullptr;
    }
  };
  // The type of `d`, whose messages' reflection is `m`'s.
  const Type& Of(const Descriptor* d, const Message& m) {
    auto [it, inserted] = types_.try_emplace(d);
    if (inserted) {
      it->second.descriptor = d;
      it->second.reflection = m.GetReflection();
      for (int i = 0; i < d->field_count(); ++i) {
        const FieldDescriptor* f = d->field(i);
        it->second.fields.emplace_back(f->json_name(), f);
        if (f->name() != f->json_name()) it->second.fields.emplace_back(f->name(), f);
      }
    }
    return it->second;
  }

 private:
  std::unordered_map<const Descriptor*, Type> types_;
};

// What one decode carries down: this thread's field table.
struct Decode {
  FieldTable& fields;
};

bool Fill(Decode& decode, simdjson::dom::object object, Message* m, const FieldTable::Type& type, int depth);

// One value of field f: set (singular) or added (repeated).
bool Value(Decode& decode, simdjson::dom::element v, const FieldDescriptor* f, Message* m, const Reflection* r,
           int depth) {
  const bool add = f->is_repeated();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t x;
      if (!Integer(v, &x)) return false;
      add ? r->AddInt32(m, f, x) : r->SetInt32(m, f, x);
      return true;
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t x;
      if (!Integer(v, &x)) return false;
      add ? r->AddInt64(m, f, x) : r->SetInt64(m, f, x);
      return true;
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t x;
      if (!Integer(v, &x)) return false;
      add ? r->AddUInt32(m, f, x) : r->SetUInt32(m, f, x);
      return true;
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t x;
      if (!Integer(v, &x)) return false;
      add ? r->AddUInt64(m, f, x) : r->SetUInt64(m, f, x);
      return true;
    }
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      double x;
      if (!Number(v, &x)) return false;
      add ? r->AddDouble(m, f, x) : r->SetDouble(m, f, x);
      return true;
    }
    case FieldDescriptor::CPPTYPE_FLOAT: {
      double x;
      if (!Number(v, &x) || std::fabs(x) > std::numeric_limits<float>::max()) return false;
      add ? r->AddFloat(m, f, static_cast<float>(x)) : r->SetFloat(m, f, static_cast<float>(x));
      return true;
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      if (!v.is_bool()) return false;
      const bool x = v.get_bool().value_unsafe();
      add ? r->AddBool(m, f, x) : r->SetBool(m, f, x);
      return true;
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      if (f->type() == FieldDescriptor::TYPE_BYTES || !v.is_string()) return false;  // base64: protobuf's
      std::string x(v.get_string().value_unsafe());
      add ? r->AddString(m, f, std::move(x)) : r->SetString(m, f, std::move(x));
      return true;
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      if (!v.is_string()) return false;
      const auto* e = f->enum_type()->FindValueByName(std::string(v.get_string().value_unsafe()));
      if (e == nullptr) return false;
      add ? r->AddEnum(m, f, e) : r->SetEnum(m, f, e);
      return true;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      simdjson::dom::object object;
      if (v.get_object().get(object) != simdjson::SUCCESS) return false;
      Message* sub = add ? r->AddMessage(m, f) : r->MutableMessage(m, f);
      return Fill(decode, object, sub, decode.fields.Of(f->message_type(), *sub), depth + 1);
    }
  }
  return false;
}

bool Fill(Decode& decode, simdjson::dom::object object, Message* m, const FieldTable::Type& type, int depth) {
  // protobuf's parser limits nesting at 100; device messages are shallow.
  if (depth > 32) return false;
  if (type.descriptor->well_known_type() != Descriptor::WELLKNOWNTYPE_UNSPECIFIED) return false;
  const Reflection* r = type.reflection;
  // Each field once: by its index, in a bit set of the first 64 and a list
  // beyond (no device message has that many).
  uint64_t seen_bits = 0;
  std::vector<int> seen_more;
  for (auto [key, value] : object) {
    const FieldDescriptor* f = type.Find(key);
    if (f == nullptr || f->is_map()) return false;
    if (const int i = f->index(); i < 64) {
      if (seen_bits & (uint64_t{1} << i)) return false;
      seen_bits |= uint64_t{1} << i;
    } else {
      for (int s : seen_more) {
        if (s == i) return false;
      }
      seen_more.push_back(i);
    }
    if (value.is_null()) {
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE || f->is_repeated()) return false;
      continue;
    }
    if (const auto* oneof = f->real_containing_oneof(); oneof != nullptr && r->HasOneof(*m, oneof)) return false;
    if (f->is_repeated()) {
      simdjson::dom::array items;
      if (value.get_array().get(items) != simdjson::SUCCESS) return false;
      for (simdjson::dom::element item : items) {
        if (item.is_null() || !Value(decode, item, f, m, r, depth)) return false;
      }
    } else if (!Value(decode, value, f, m, r, depth)) {
      return false;
    }
  }
  return true;
}

}  // namespace

bool FastJsonToMessage(std::string_view json, Message* message) {
  thread_local simdjson::dom::parser parser;
  thread_local FieldTable fields;
  Decode decode{fields};
  message->Clear();
  simdjson::dom::element root;
  if (parser.parse(json.data(), json.size(), /*realloc_if_needed=*/true).get(root) != simdjson::SUCCESS) return false;
  simdjson::dom::object object;
  if (root.get_object().get(object) != simdjson::SUCCESS) return false;
  return Fill(decode, object, message, fields.Of(message->GetDescriptor(), *message), 0);
}

}  // namespace rollertrace::codec

#pragma GCC diagnostic pop
