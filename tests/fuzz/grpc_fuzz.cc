// A deterministic mutation driver for ingestd's whole gRPC surface (issue
// #14): ingestd's own services over a temporary RocksDB store, served by a
// real gRPC server reached through its in-process channel (every request is
// serialised, sent and parsed by gRPC as over TCP). Starting from valid
// requests of every RPC, it sends a bounded number of mutants — fields set to
// edge values by reflection (empty, oversized, hostile strings, extreme
// numbers, unknown enum values, repeated fields grown or cleared), or the
// serialised bytes themselves flipped, cut and spliced — and then checks what
// an auditor relies on:
//   - no crash, and no answer INTERNAL or UNKNOWN (a clear error or an answer);
//   - every chain verifies (Verify intact);
//   - every audit query still answers within the client's default 4 MiB
//     message limit: List, Get, History, Gaps, each roller's trail, the
//     seeded patient's and cycle's trails, violations, the report, an export.
//
//   grpc_fuzz_smoke [iterations] [seed]
#include <grpcpp/generic/generic_stub.h>
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/grpcpp.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <cmath>
#include <filesystem>
#include <future>
#include <iostream>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "ingest/access.h"
#include "ingest/group_committer.h"
#include "ingest/grpc_services.h"
#include "ingest/ingest_metrics.h"
#include "metrics/metrics.h"
#include "mutate_bytes.h"
#include "pseudonym/pseudonymizer.h"
#include "rollertrace/v1/services.grpc.pb.h"
#include "store/event_store.h"
#include "support/devices.h"

namespace v1 = rollertrace::v1;
namespace pb = google::protobuf;
using rollertrace::testing::Cycle;
using rollertrace::testing::kDay;
using rollertrace::testing::kHour;
using rollertrace::testing::SessionEnd;
using rollertrace::testing::SessionStart;
using rollertrace::testing::Usage;

namespace {

constexpr char kRoller[] = "R-F0001";
constexpr char kOther[] = "R-F0002";
constexpr char kSteriliser[] = "S-F01";
constexpr char kPatient[] = "MRN-F1";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One RPC: its full method name and a valid request to mutate.
struct Rpc {
  std::string method;
  std::unique_ptr<pb::Message> seed;
};

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}

  uint64_t Next() { return rng_(); }

  // 1 to 4 edits of `m` by reflection.
  void Fields(pb::Message& m) {
    const int edits = 1 + static_cast<int>(rng_() % 4);
    for (int i = 0; i < edits; ++i) Field(m, 0);
  }

  // 1 to 4 edits of the bytes (mutate_bytes.h), spliced with themselves.
  std::string Bytes(std::string s) {
    const std::vector<std::string> donors = {s};
    return rollertrace::fuzz::MutateBytes(std::move(s), donors, rng_);
  }

 private:
  std::string HostileString() {
    static const std::vector<std::string> kinds = {
        "", kRoller, kOther, kSteriliser, kPatient, "<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>",
        "../../../../tmp/x", "/etc", "R-F0001\n", std::string("R-\0F", 4), "\xff\xfe\xfd", "p-0123456789abcdef",
        "S-F01:1", "%s%n", "NOT_STERILE", "admin", "\xe2\x80\xae"};
    switch (rng_() % 4) {
      case 0:  // around the limits of lib/codec/limits.h (64, 128, 256, 1,024 bytes) and far beyond
      {
        static const size_t lengths[] = {63, 64, 65, 127, 128, 129, 255, 256, 257, 1023, 1024, 1025, 70000};
        return std::string(lengths[rng_() % std::size(lengths)], static_cast<char>('a' + rng_() % 26));
      }
      default:
        return kinds[rng_() % kinds.size()];
    }
  }

  int64_t EdgeInt() {
    const int64_t now = NowMs();
    const int64_t values[] = {0,
                              1,
                              -1,
                              2,
                              7,
                              std::numeric_limits<int64_t>::max(),
                              std::numeric_limits<int64_t>::min(),
                              std::numeric_limits<int32_t>::max(),
                              now,
                              now + kHour,
                              now - 30 * kDay,
                              now + 3650 * kDay,
                              4102444800000,
                              100000,
                              100001,
                              1000001,
                              static_cast<int64_t>(rng_() % 100000)};
    return values[rng_() % std::size(values)];
  }

  double EdgeDouble() {
    const double values[] = {0.0,
                             -1.0,
                             1.0,
                             0.5,
                             134.0,
                             1e308,
                             -1e308,
                             std::numeric_limits<double>::quiet_NaN(),
                             std::numeric_limits<double>::infinity(),
                             -std::numeric_limits<double>::infinity(),
                             std::numeric_limits<double>::denorm_min()};
    return values[rng_() % std::size(values)];
  }

  void SetScalar(pb::Message& m, const pb::FieldDescriptor* f) {
    const pb::Reflection* r = m.GetReflection();
    const bool rep = f->is_repeated();
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_STRING: {
        std::string v = HostileString();
        if (f->type() == pb::FieldDescriptor::TYPE_BYTES && rng_() % 2 == 0) v = Bytes(v);
        rep ? r->AddString(&m, f, v) : r->SetString(&m, f, v);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_INT64:
        rep ? r->AddInt64(&m, f, EdgeInt()) : r->SetInt64(&m, f, EdgeInt());
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT64: {
        const uint64_t v = rng_() % 3 == 0 ? std::numeric_limits<uint64_t>::max() - rng_() % 2
                                           : static_cast<uint64_t>(EdgeInt());
        rep ? r->AddUInt64(&m, f, v) : r->SetUInt64(&m, f, v);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_INT32: {
        const auto v = static_cast<int32_t>(EdgeInt());
        rep ? r->AddInt32(&m, f, v) : r->SetInt32(&m, f, v);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_UINT32: {
        const auto v = static_cast<uint32_t>(EdgeInt());
        rep ? r->AddUInt32(&m, f, v) : r->SetUInt32(&m, f, v);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
        rep ? r->AddDouble(&m, f, EdgeDouble()) : r->SetDouble(&m, f, EdgeDouble());
        break;
      case pb::FieldDescriptor::CPPTYPE_FLOAT:
        rep ? r->AddFloat(&m, f, static_cast<float>(EdgeDouble())) : r->SetFloat(&m, f, static_cast<float>(EdgeDouble()));
        break;
      case pb::FieldDescriptor::CPPTYPE_BOOL:
        rep ? r->AddBool(&m, f, rng_() % 2) : r->SetBool(&m, f, !r->GetBool(m, f));
        break;
      case pb::FieldDescriptor::CPPTYPE_ENUM: {
        // Known values, and unknown ones (proto3 enums are open).
        const int v = rng_() % 3 == 0 ? static_cast<int>(rng_() % 64) - 8
                                      : f->enum_type()->value(static_cast<int>(rng_() % f->enum_type()->value_count()))->number();
        rep ? r->AddEnumValue(&m, f, v) : r->SetEnumValue(&m, f, v);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_MESSAGE:
        break;
    }
  }

  void Field(pb::Message& m, int depth) {
    const pb::Descriptor* d = m.GetDescriptor();
    if (d->field_count() == 0) return;
    const pb::FieldDescriptor* f = d->field(static_cast<int>(rng_() % d->field_count()));
    const pb::Reflection* r = m.GetReflection();
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (depth > 6) return;
      if (f->is_repeated()) {
        const int size = r->FieldSize(m, f);
        switch (rng_() % 4) {
          case 0:
            r->ClearField(&m, f);
            return;
          case 1:  // many copies of an element: a repeated field past its limit
            if (size > 0) {
              const int copies = static_cast<int>(rng_() % 3 == 0 ? 1100 : 1 + rng_() % 4);
              std::unique_ptr<pb::Message> one(r->GetRepeatedMessage(m, f, static_cast<int>(rng_() % size)).New());
              one->CopyFrom(r->GetRepeatedMessage(m, f, static_cast<int>(rng_() % size)));
              for (int i = 0; i < copies; ++i) r->AddMessage(&m, f)->CopyFrom(*one);
              return;
            }
            Field(*r->AddMessage(&m, f), depth + 1);
            return;
          default:
            if (size == 0) {
              Field(*r->AddMessage(&m, f), depth + 1);
            } else {
              Field(*r->MutableRepeatedMessage(&m, f, static_cast<int>(rng_() % size)), depth + 1);
            }
            return;
        }
      }
      if (rng_() % 5 == 0) {
        r->ClearField(&m, f);
      } else {
        Field(*r->MutableMessage(&m, f), depth + 1);
      }
      return;
    }
    if (f->is_repeated()) {
      if (rng_() % 3 == 0) {
        r->ClearField(&m, f);
        return;
      }
      const int copies = static_cast<int>(rng_() % 4 == 0 ? 1100 : 1 + rng_() % 3);
      for (int i = 0; i < copies; ++i) SetScalar(m, f);
      return;
    }
    SetScalar(m, f);
  }

  std::mt19937_64 rng_;
};

v1::EventBatch Batch(const std::string& device, uint64_t first, std::vector<v1::Event> events) {
  v1::EventBatch b;
  b.set_device_id(device);
  for (auto& e : events) {
    e.set_sequence(first++);
    *b.add_events() = std::move(e);
  }
  return b;
}

class Harness {
 public:
  bool Start(const std::string& dir) {
    dir_ = dir;
    auto metrics = rollertrace::metrics::Metrics::Create("");
    auto pseudonymizer = rollertrace::pseudonym::Pseudonymizer::FromSecret(std::string(64, 'f'));
    rollertrace::store::StoreOptions options;
    options.policy = rollertrace::rules::Policy{};
    auto store = rollertrace::store::EventStore::Open(dir + "/store", options);
    if (!metrics.ok() || !pseudonymizer.ok() || !store.ok()) {
      std::cerr << "grpc_fuzz: cannot start: " << metrics.status() << " " << pseudonymizer.status() << " "
                << store.status() << "\n";
      return false;
    }
    metrics_ = std::move(*metrics);
    pseudonymizer_ = std::make_unique<rollertrace::pseudonym::Pseudonymizer>(std::move(*pseudonymizer));
    store_ = std::move(*store);
    ingest_metrics_ = std::make_unique<rollertrace::ingest::IngestMetrics>(*metrics_);
    access_ = std::make_unique<rollertrace::ingest::AccessControl>(rollertrace::ingest::AccessControl::Open(*metrics_));
    committer_ = std::make_unique<rollertrace::ingest::GroupCommitter>(*store_, *pseudonymizer_, *ingest_metrics_,
                                                                       NowMs);
    ingest_ = std::make_unique<rollertrace::ingest::IngestServiceImpl>(*committer_, *access_);
    registry_ = std::make_unique<rollertrace::ingest::RegistryServiceImpl>(*store_, *committer_, *access_, NowMs);
    compliance_ = std::make_unique<rollertrace::ingest::ComplianceServiceImpl>(
        *store_, *committer_, *pseudonymizer_, *ingest_metrics_, *access_, NowMs, dir + "/backups");
    grpc::ServerBuilder builder;
    builder.SetMaxReceiveMessageSize(64 * 1024 * 1024);  // as ingestd
    builder.RegisterService(ingest_.get());
    builder.RegisterService(registry_.get());
    builder.RegisterService(compliance_.get());
    server_ = builder.BuildAndStart();
    if (!server_) return false;
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 * 1024 * 1024);  // the client's receive limit stays gRPC's default, 4 MiB
    channel_ = server_->InProcessChannel(args);
    return true;
  }

  ~Harness() {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    committer_.reset();
  }

  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

 private:
  std::string dir_;
  std::unique_ptr<rollertrace::metrics::Metrics> metrics_;
  std::unique_ptr<rollertrace::pseudonym::Pseudonymizer> pseudonymizer_;
  std::unique_ptr<rollertrace::store::EventStore> store_;
  std::unique_ptr<rollertrace::ingest::IngestMetrics> ingest_metrics_;
  std::unique_ptr<rollertrace::ingest::AccessControl> access_;
  std::unique_ptr<rollertrace::ingest::GroupCommitter> committer_;
  std::unique_ptr<rollertrace::ingest::IngestServiceImpl> ingest_;
  std::unique_ptr<rollertrace::ingest::RegistryServiceImpl> registry_;
  std::unique_ptr<rollertrace::ingest::ComplianceServiceImpl> compliance_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

std::unique_ptr<grpc::ClientContext> Context() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return ctx;
}

// Whether a status is one a client can act on: INTERNAL and UNKNOWN are not.
bool Clear(const grpc::Status& s) {
  return s.error_code() != grpc::StatusCode::INTERNAL && s.error_code() != grpc::StatusCode::UNKNOWN;
}

struct Failures {
  int count = 0;
  void Add(const std::string& what) {
    if (++count <= 20) std::cerr << "grpc_fuzz: FAIL: " << what << "\n";
  }
};

grpc::Status CallRaw(grpc::GenericStub& stub, const std::string& method, const std::string& bytes) {
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  auto ctx = Context();
  std::promise<grpc::Status> done;
  stub.UnaryCall(ctx.get(), method, grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status s) { done.set_value(std::move(s)); });
  return done.get_future().get();
}

// The store seen by a new user: a roller that had a session after a cycle,
// a second roller, a steriliser.
bool Seed(const std::shared_ptr<grpc::Channel>& channel, Failures& failures) {
  auto registry = v1::RegistryService::NewStub(channel);
  for (const char* id : {kRoller, kOther, kSteriliser}) {
    v1::RegisterRequest req;
    v1::Device* d = req.mutable_device();
    d->set_device_id(id);
    d->set_clinic("clinic-fuzz");
    if (id[0] == 'S') {
      d->set_kind(v1::DEVICE_KIND_STERILISER);
    } else {
      d->set_kind(v1::DEVICE_KIND_ROLLER);
      d->set_model("DRS-540");
      d->set_needle_count(540);
      d->set_needle_length_mm(0.5);
      d->set_rated_penetrations(1620000);
    }
    v1::Device out;
    auto ctx = Context();
    if (grpc::Status s = registry->Register(ctx.get(), req, &out); !s.ok()) {
      failures.Add("seeding: register " + std::string(id) + ": " + s.error_message());
      return false;
    }
  }
  const int64_t t = NowMs() - 2 * kDay;
  v1::IngestRequest req;
  *req.add_batches() = Batch(kSteriliser, 1, {Cycle(1, {kRoller, kOther}, t)});
  *req.add_batches() = Batch(kRoller, 1,
                             {SessionStart("fuzz-s1", kPatient, t + kHour), Usage("fuzz-s1", 40, t + kHour + 60000),
                              SessionEnd("fuzz-s1", t + kHour + 120000)});
  auto ingest = v1::IngestService::NewStub(channel);
  v1::IngestResponse out;
  auto ctx = Context();
  grpc::Status s = ingest->IngestBatch(ctx.get(), req, &out);
  if (!s.ok() || out.rejections_size() != 0 || !out.unavailable().empty()) {
    failures.Add("seeding: ingest: " + s.error_message() + " " + out.ShortDebugString());
    return false;
  }
  return true;
}

std::vector<Rpc> Rpcs() {
  std::vector<Rpc> rpcs;
  auto add = [&](std::string method, std::unique_ptr<pb::Message> m) {
    rpcs.push_back({"/rollertrace.v1." + method, std::move(m)});
  };
  const int64_t now = NowMs();
  {
    auto m = std::make_unique<v1::IngestRequest>();
    *m->add_batches() = Batch(kOther, 1, {SessionStart("fuzz-s2", "MRN-F2", now - kHour), Usage("fuzz-s2", 10, now)});
    *m->add_batches() = Batch(kSteriliser, 2, {Cycle(2, {kOther}, now - 2 * kHour)});
    add("IngestService/IngestBatch", std::move(m));
  }
  {
    auto m = std::make_unique<v1::RegisterRequest>();
    m->mutable_device()->set_device_id("R-F0100");
    m->mutable_device()->set_kind(v1::DEVICE_KIND_ROLLER);
    m->mutable_device()->set_clinic("clinic-fuzz");
    m->mutable_device()->set_needle_count(192);
    m->mutable_device()->set_needle_length_mm(1.0);
    m->mutable_device()->set_rated_penetrations(576000);
    add("RegistryService/Register", std::move(m));
  }
  {
    auto m = std::make_unique<v1::GetDeviceRequest>();
    m->set_device_id(kRoller);
    add("RegistryService/Get", std::move(m));
  }
  add("RegistryService/List", std::make_unique<v1::ListDevicesRequest>());
  {
    auto m = std::make_unique<v1::RetireRequest>();
    m->set_device_id("R-F0100");
    m->set_reason("worn");
    add("RegistryService/Retire", std::move(m));
  }
  {
    auto m = std::make_unique<v1::UnlockRequest>();
    m->set_device_id(kRoller);
    m->set_reason("checked");
    m->set_by("admin-fuzz");
    add("RegistryService/Unlock", std::move(m));
  }
  add("ComplianceService/WhoAmI", std::make_unique<v1::WhoAmIRequest>());
  {
    auto m = std::make_unique<v1::BackupRequest>();
    m->set_directory("b1");
    add("ComplianceService/Backup", std::move(m));
  }
  {
    auto m = std::make_unique<v1::ReportRequest>();
    m->set_from_unix_ms(now - 30 * kDay);
    m->set_to_unix_ms(now + kDay);
    add("ComplianceService/Report", std::move(m));
  }
  {
    auto m = std::make_unique<v1::VerifyRequest>();
    m->set_device_id(kRoller);
    add("ComplianceService/Verify", std::move(m));
  }
  {
    auto m = std::make_unique<v1::RollerTrailRequest>();
    m->set_device_id(kRoller);
    m->set_events_limit(10);
    add("ComplianceService/GetRollerTrail", std::move(m));
  }
  {
    auto m = std::make_unique<v1::PatientTrailRequest>();
    m->set_patient_ref(kPatient);
    add("ComplianceService/GetPatientTrail", std::move(m));
  }
  for (const char* method : {"ComplianceService/GetCycleTrail", "ComplianceService/GetCycle"}) {
    auto m = std::make_unique<v1::CycleRequest>();
    m->set_steriliser_id(kSteriliser);
    m->set_cycle_number(1);
    add(method, std::move(m));
  }
  {
    auto m = std::make_unique<v1::AuthorizeRequest>();
    m->set_device_id(kRoller);
    m->set_correlation_id("fuzz-c1");
    m->mutable_session()->set_session_id("fuzz-s9");
    m->mutable_session()->set_patient_ref(kPatient);
    m->mutable_session()->set_operator_id("op-1");
    m->set_start_unix_ms(now);
    add("ComplianceService/AuthorizeUse", std::move(m));
  }
  {
    auto m = std::make_unique<v1::BiologicalIndicatorRequest>();
    m->set_steriliser_id(kSteriliser);
    m->set_cycle_number(1);
    m->set_result(v1::INDICATOR_PASS);
    m->set_recorded_by("lab");
    add("ComplianceService/RecordBiologicalIndicator", std::move(m));
  }
  {
    auto m = std::make_unique<v1::ViolationsRequest>();
    m->set_limit(10);
    add("ComplianceService/ListViolations", std::move(m));
  }
  {
    auto m = std::make_unique<v1::RecallRequest>();
    m->set_steriliser_id(kSteriliser);
    m->set_cycle_number(1);
    add("ComplianceService/Recall", std::move(m));
  }
  {
    auto m = std::make_unique<v1::HistoryRequest>();
    m->set_device_id(kRoller);
    m->set_limit(5);
    add("ComplianceService/History", std::move(m));
  }
  {
    auto m = std::make_unique<v1::GapsRequest>();
    m->set_device_id(kRoller);
    add("ComplianceService/Gaps", std::move(m));
  }
  return rpcs;
}

// Whether gRPC can carry `m` to the server at all (a string that is not
// UTF-8 is refused by protobuf's parser before any of ingestd's code).
bool Sendable(const pb::Message& m) {
  std::unique_ptr<pb::Message> copy(m.New());
  return copy->ParseFromString(m.SerializeAsString());
}

// Mutates `m`, keeping only a mutant gRPC can carry.
template <typename M>
void MutateSendable(Mutator& mutate, M& m) {
  M mutant = m;
  mutate.Fields(mutant);
  if (Sendable(mutant)) m = std::move(mutant);
}

// The streaming RPCs, through their typed stubs with reflection mutants.
grpc::Status StreamingCall(const std::shared_ptr<grpc::Channel>& channel, Mutator& mutate,
                           const std::vector<v1::ArchiveChunk>& archive) {
  auto compliance = v1::ComplianceService::NewStub(channel);
  switch (mutate.Next() % 3) {
    case 0: {  // Export
      v1::ExportRequest req;
      req.add_device_ids(kRoller);
      MutateSendable(mutate, req);
      auto ctx = Context();
      auto reader = compliance->Export(ctx.get(), req);
      v1::ArchiveChunk chunk;
      while (reader->Read(&chunk)) {
      }
      return reader->Finish();
    }
    case 1: {  // Import: the seeded roller's archive, mutated
      auto ctx = Context();
      v1::ImportResult result;
      auto writer = compliance->Import(ctx.get(), &result);
      const size_t mutated = mutate.Next() % archive.size();
      for (size_t i = 0; i < archive.size(); ++i) {
        v1::ArchiveChunk chunk = archive[i];
        if (i == mutated) MutateSendable(mutate, chunk);
        if (!writer->Write(chunk)) break;
      }
      writer->WritesDone();
      return writer->Finish();
    }
    default: {  // Ingest: a stream of mutated requests
      auto ingest = v1::IngestService::NewStub(channel);
      auto ctx = Context();
      auto stream = ingest->Ingest(ctx.get());
      const int requests = 1 + static_cast<int>(mutate.Next() % 3);
      for (int i = 0; i < requests; ++i) {
        v1::IngestRequest req;
        req.set_request_id(static_cast<uint64_t>(i + 1));
        *req.add_batches() = Batch(kOther, 100 + static_cast<uint64_t>(i), {Usage("fuzz-s2", 5, NowMs())});
        MutateSendable(mutate, req);
        if (!stream->Write(req)) break;
      }
      stream->WritesDone();
      v1::IngestResponse resp;
      while (stream->Read(&resp)) {
      }
      return stream->Finish();
    }
  }
}

// What an auditor relies on, after the mutants.
void CheckInvariants(const std::shared_ptr<grpc::Channel>& channel, Failures& failures) {
  auto registry = v1::RegistryService::NewStub(channel);
  auto compliance = v1::ComplianceService::NewStub(channel);
  auto check = [&](const std::string& what, const grpc::Status& s) {
    if (!s.ok()) failures.Add(what + " does not answer: " + std::to_string(s.error_code()) + " " + s.error_message());
  };
  {
    v1::VerifyReport report;
    auto ctx = Context();
    check("Verify", compliance->Verify(ctx.get(), v1::VerifyRequest(), &report));
    if (!report.intact() || report.breaks_size() != 0) failures.Add("Verify: not intact: " + report.ShortDebugString());
  }
  v1::ListDevicesResponse devices;
  {
    auto ctx = Context();
    check("List", registry->List(ctx.get(), v1::ListDevicesRequest(), &devices));
  }
  for (const auto& d : devices.devices()) {
    const std::string& id = d.device().device_id();
    v1::GetDeviceRequest get;
    get.set_device_id(id);
    v1::DeviceRecord record;
    auto ctx = Context();
    check("Get " + id, registry->Get(ctx.get(), get, &record));
    v1::HistoryRequest history;
    history.set_device_id(id);
    v1::HistoryResponse events;
    ctx = Context();
    check("History " + id, compliance->History(ctx.get(), history, &events));
    v1::GapsRequest gaps_req;
    gaps_req.set_device_id(id);
    v1::GapsResponse gaps;
    ctx = Context();
    check("Gaps " + id, compliance->Gaps(ctx.get(), gaps_req, &gaps));
    if (d.device().kind() == v1::DEVICE_KIND_ROLLER) {
      v1::RollerTrailRequest trail_req;
      trail_req.set_device_id(id);
      trail_req.set_events_limit(10000);
      v1::RollerTrail trail;
      ctx = Context();
      check("GetRollerTrail " + id, compliance->GetRollerTrail(ctx.get(), trail_req, &trail));
    }
  }
  {
    v1::PatientTrailRequest req;
    req.set_patient_ref(kPatient);
    v1::PatientTrail trail;
    auto ctx = Context();
    check("GetPatientTrail", compliance->GetPatientTrail(ctx.get(), req, &trail));
  }
  {
    v1::CycleRequest req;
    req.set_steriliser_id(kSteriliser);
    req.set_cycle_number(1);
    v1::CycleTrail trail;
    auto ctx = Context();
    check("GetCycleTrail", compliance->GetCycleTrail(ctx.get(), req, &trail));
  }
  {
    v1::ViolationsRequest req;
    for (;;) {
      v1::ViolationsResponse page;
      auto ctx = Context();
      grpc::Status s = compliance->ListViolations(ctx.get(), req, &page);
      check("ListViolations", s);
      if (!s.ok() || page.next_page_token().empty()) break;
      req.set_page_token(page.next_page_token());
    }
  }
  {
    v1::ReportRequest req;
    req.set_from_unix_ms(0);
    req.set_to_unix_ms(4102444800000);
    v1::PeriodReport report;
    auto ctx = Context();
    check("Report", compliance->Report(ctx.get(), req, &report));
  }
  {
    v1::ExportRequest req;
    req.set_from_unix_ms(0);
    req.set_to_unix_ms(4102444800000);
    auto ctx = Context();
    auto reader = compliance->Export(ctx.get(), req);
    v1::ArchiveChunk chunk;
    while (reader->Read(&chunk)) {
    }
    check("Export", reader->Finish());
  }
}

}  // namespace

int main(int argc, char** argv) {
  const long iterations = argc > 1 ? std::atol(argv[1]) : 3000;
  const uint64_t seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1;
  if (iterations <= 0) {
    std::cerr << "usage: grpc_fuzz_smoke [iterations > 0] [seed]\n";
    return 2;
  }
  // A request that makes the service allocate without bound fails here
  // (bad_alloc, an abort) instead of taking the machine's memory: a Report
  // for a period up to the year 292 million once did.
  // Not under a sanitizer: its shadow memory reserves terabytes of address
  // space, and the cap would stop it from starting ("Failed to mmap").
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  const rlimit cap{8ull << 30, 8ull << 30};
  setrlimit(RLIMIT_AS, &cap);
#endif
  char tmpl[] = "/tmp/rollertrace-grpc-fuzz-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    std::perror("grpc_fuzz: mkdtemp");
    return 1;
  }
  const std::string dir = tmpl;
  // Mutants with strings that are not UTF-8 make protobuf log each one.
  pb::SetLogHandler([](pb::LogLevel level, const char*, int, const std::string& message) {
    if (level >= pb::LOGLEVEL_FATAL) std::cerr << message << "\n";
  });
  Failures failures;
  int exit_code = 0;
  {
    Harness harness;
    if (!harness.Start(dir) || !Seed(harness.channel(), failures)) {
      exit_code = 1;
    } else {
      // The seeded roller's archive, for the Import mutants.
      std::vector<v1::ArchiveChunk> archive;
      {
        v1::ExportRequest req;
        req.add_device_ids(kRoller);
        auto ctx = Context();
        auto reader = v1::ComplianceService::NewStub(harness.channel())->Export(ctx.get(), req);
        for (v1::ArchiveChunk chunk; reader->Read(&chunk);) archive.push_back(chunk);
        if (grpc::Status s = reader->Finish(); !s.ok() || archive.empty()) {
          failures.Add("seeding: export: " + s.error_message());
        }
      }
      std::vector<Rpc> rpcs = Rpcs();
      grpc::GenericStub generic(harness.channel());
      Mutator mutate(seed);
      std::map<std::string, std::map<int, int>> codes;  // method -> status code -> count
      for (long i = 0; i < iterations && failures.count == 0; ++i) {
        const uint64_t pick = mutate.Next() % (rpcs.size() + 2);
        std::string method;
        grpc::Status s;
        bool parses = true;
        if (pick >= rpcs.size() && !archive.empty()) {
          method = "(streaming)";
          s = StreamingCall(harness.channel(), mutate, archive);
        } else {
          const Rpc& rpc = rpcs[pick % rpcs.size()];
          method = rpc.method;
          std::unique_ptr<pb::Message> request(rpc.seed->New());
          request->CopyFrom(*rpc.seed);
          std::string bytes;
          if (mutate.Next() % 4 == 0) {
            bytes = mutate.Bytes(rpc.seed->SerializeAsString());
          } else {
            mutate.Fields(*request);
            bytes = request->SerializeAsString();
          }
          // Bytes that are no request of this RPC (cut, or strings that are
          // not UTF-8) never reach ingestd's code: gRPC itself answers them
          // INTERNAL ("failed to deserialize").
          parses = request->ParseFromString(bytes);
          s = CallRaw(generic, method, bytes);
        }
        ++codes[method][s.error_code()];
        if (!Clear(s) && parses) {
          failures.Add(method + " answered " + std::to_string(s.error_code()) + ": " + s.error_message());
        }
        if ((i + 1) % 1000 == 0) {
          std::cerr << "grpc_fuzz: " << (i + 1) << " of " << iterations << " requests sent" << std::endl;
          CheckInvariants(harness.channel(), failures);
        }
      }
      CheckInvariants(harness.channel(), failures);
      for (const auto& [method, by_code] : codes) {
        std::cerr << "grpc_fuzz: " << method << ":";
        for (const auto& [code, n] : by_code) std::cerr << " " << code << "×" << n;
        std::cerr << "\n";
      }
      if (failures.count > 0) exit_code = 1;
    }
  }
  std::filesystem::remove_all(dir);
  std::cerr << "grpc_fuzz: " << iterations << " iterations, seed " << seed << ": "
            << (exit_code == 0 ? "every answer clear, every chain intact, every audit query answers"
                               : std::to_string(failures.count) + " failure(s)")
            << "\n";
  return exit_code;
}
