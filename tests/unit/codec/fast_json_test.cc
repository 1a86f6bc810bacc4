// The simdjson decoder against protobuf's own JSON parser: wherever the fast
// one accepts a payload, protobuf's must accept it too and give the same
// message. Random messages of every device type, printed every way protobuf
// prints them, then mutated.
#include "codec/fast_json.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <random>

#include "rollertrace/v1/events.pb.h"
#include "rollertrace/v1/services.pb.h"

namespace rollertrace::codec {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

class Randomizer {
 public:
  explicit Randomizer(uint64_t seed) : rng_(seed) {}
  void Fill(Message* m, int depth) {
    const auto* d = m->GetDescriptor();
    const auto* r = m->GetReflection();
    for (int i = 0; i < d->field_count(); ++i) {
      const FieldDescriptor* f = d->field(i);
      if (Chance(0.4)) continue;
      if (f->real_containing_oneof() && r->HasOneof(*m, f->real_containing_oneof())) continue;
      const int n = f->is_repeated() ? static_cast<int>(rng_() % 4) : 1;
      for (int k = 0; k < n; ++k) Set(m, f, depth);
    }
  }

 private:
  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  int64_t Int() {
    switch (rng_() % 5) {
      case 0: return 0;
      case 1: return static_cast<int64_t>(rng_() % 100);
      case 2: return -static_cast<int64_t>(rng_() % 1000);
      case 3: return static_cast<int64_t>(rng_());
      default: return static_cast<int64_t>(rng_() % (int64_t{1} << 53)) + (int64_t{1} << 53);
    }
  }
  double Double() {
    switch (rng_() % 4) {
      case 0: return 0;
      case 1: return std::uniform_real_distribution<double>(-1e6, 1e6)(rng_);
      case 2: return static_cast<double>(rng_() % 1000) / 8;
      default: return std::uniform_real_distribution<double>(-1, 1)(rng_) * 1e300;
    }
  }
  std::string Text() {
    static const char* pieces[] = {"a", "R-0001", " ", "\"", "\\", "/", "é", "日本", "\n", "<script>", "\t", "0", "{}"};
    std::string s;
    const int n = static_cast<int>(rng_() % 6);
    for (int i = 0; i < n; ++i) s += pieces[rng_() % (sizeof pieces / sizeof *pieces)];
    return s;
  }
  void Set(Message* m, const FieldDescriptor* f, int depth) {
    const auto* r = m->GetReflection();
    const bool add = f->is_repeated();
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32: {
        const auto x = static_cast<int32_t>(Int());
        add ? r->AddInt32(m, f, x) : r->SetInt32(m, f, x);
        break;
      }
      case FieldDescriptor::CPPTYPE_INT64: add ? r->AddInt64(m, f, Int()) : r->SetInt64(m, f, Int()); break;
      case FieldDescriptor::CPPTYPE_UINT32: {
        const auto x = static_cast<uint32_t>(Int());
        add ? r->AddUInt32(m, f, x) : r->SetUInt32(m, f, x);
        break;
      }
      case FieldDescriptor::CPPTYPE_UINT64: {
        const auto x = static_cast<uint64_t>(Int());
        add ? r->AddUInt64(m, f, x) : r->SetUInt64(m, f, x);
        break;
      }
      case FieldDescriptor::CPPTYPE_DOUBLE: add ? r->AddDouble(m, f, Double()) : r->SetDouble(m, f, Double()); break;
      case FieldDescriptor::CPPTYPE_FLOAT: {
        const auto x = static_cast<float>(std::uniform_real_distribution<double>(-1e6, 1e6)(rng_));
        add ? r->AddFloat(m, f, x) : r->SetFloat(m, f, x);
        break;
      }
      case FieldDescriptor::CPPTYPE_BOOL: add ? r->AddBool(m, f, Chance(0.5)) : r->SetBool(m, f, Chance(0.5)); break;
      case FieldDescriptor::CPPTYPE_STRING: add ? r->AddString(m, f, Text()) : r->SetString(m, f, Text()); break;
      case FieldDescriptor::CPPTYPE_ENUM: {
        const auto* e = f->enum_type()->value(static_cast<int>(rng_() % f->enum_type()->value_count()));
        add ? r->AddEnum(m, f, e) : r->SetEnum(m, f, e);
        break;
      }
      case FieldDescriptor::CPPTYPE_MESSAGE:
        if (depth < 4) Fill(add ? r->AddMessage(m, f) : r->MutableMessage(m, f), depth + 1);
        break;
    }
  }
  std::mt19937_64 rng_;
};

bool ProtobufParses(const std::string& json, Message* m) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  return google::protobuf::util::JsonStringToMessage(json, m, options).ok();
}

// The property: fast accepts => protobuf accepts, with an equal message.
void ExpectAgrees(const std::string& json, const Message& prototype, int* fast_accepted) {
  std::unique_ptr<Message> fast(prototype.New()), slow(prototype.New());
  if (!FastJsonToMessage(json, fast.get())) return;
  ++*fast_accepted;
  ASSERT_TRUE(ProtobufParses(json, slow.get())) << "fast accepted what protobuf refuses: " << json;
  ASSERT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*fast, *slow))
      << json << "\nfast: " << fast->ShortDebugString() << "\nprotobuf: " << slow->ShortDebugString();
}

template <typename M>
void Differential(uint64_t seed, int rounds, int min_fast) {
  Randomizer random(seed);
  std::mt19937_64 rng(seed + 1);
  int fast = 0;
  for (int i = 0; i < rounds; ++i) {
    M m;
    random.Fill(&m, 0);
    google::protobuf::util::JsonPrintOptions print;
    print.preserve_proto_field_names = (i % 2) == 1;
    print.always_print_primitive_fields = (i % 3) == 0;
    print.add_whitespace = (i % 5) == 0;
    std::string json;
    ASSERT_TRUE(google::protobuf::util::MessageToJsonString(m, &json, print).ok());
    ExpectAgrees(json, m, &fast);
    if (::testing::Test::HasFatalFailure()) return;
    // The same text, mutated: a byte removed, changed or doubled.
    static const char kBytes[] = "{}[],:\"0123456789-+.eE \\nulltruefalse";
    for (int k = 0; k < 8; ++k) {
      std::string mutated = json;
      const size_t at = rng() % mutated.size();
      switch (rng() % 3) {
        case 0: mutated.erase(at, 1); break;
        case 1: mutated[at] = kBytes[rng() % (sizeof kBytes - 1)]; break;
        default: mutated.insert(at, mutated.substr(at, 1 + rng() % 8)); break;
      }
      ExpectAgrees(mutated, m, &fast);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
  EXPECT_GE(fast, min_fast) << "the fast path should take most well-formed payloads";
}

TEST(FastJson, AgreesWithProtobufOnEventBatches) { Differential<rollertrace::v1::EventBatch>(1, 3000, 2000); }
TEST(FastJson, AgreesWithProtobufOnAuthorizeRequests) { Differential<rollertrace::v1::AuthorizeRequest>(2, 3000, 2000); }

TEST(FastJson, LeavesToProtobufWhatItDoesNotTake) {
  rollertrace::v1::EventBatch b;
  EXPECT_FALSE(FastJsonToMessage(R"({"deviceId":"R-1","nope":1})", &b)) << "unknown field";
  EXPECT_FALSE(FastJsonToMessage(R"({"deviceId":"R-1","deviceId":"R-2"})", &b)) << "a key twice";
  EXPECT_FALSE(FastJsonToMessage(R"({"deviceId":"R-1","device_id":"R-2"})", &b)) << "the same field twice";
  EXPECT_FALSE(FastJsonToMessage(R"([1,2])", &b));
  EXPECT_FALSE(FastJsonToMessage(R"({"events":[{"sequence":1.5}]})", &b));
  EXPECT_FALSE(FastJsonToMessage(R"({"events":[{"sequence":"-1"}]})", &b));
  EXPECT_FALSE(FastJsonToMessage(R"({"events":[{"heartbeat":{},"usageSample":{}}]})", &b)) << "two of a oneof";
  EXPECT_TRUE(FastJsonToMessage(R"({"deviceId":"R-1","events":[{"sequence":"18446744073709551615",)"
                                R"("deviceTimeUnixMs":1764000000000,"usageSample":{"sessionId":"s","revolutions":3}}]})",
                                &b));
  EXPECT_EQ(b.events(0).sequence(), UINT64_MAX);
  EXPECT_EQ(b.events(0).usage_sample().revolutions(), 3u);
}

}  // namespace
}  // namespace rollertrace::codec
