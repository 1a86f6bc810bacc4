// The ComplianceService of the cluster's router (router.h): audit reads by
// device or fanned out to every shard and merged, exports and imports of
// archives across shards, authorisations and indicators to the device's shard.
#include <algorithm>
#include <charconv>
#include <map>
#include <set>
#include <string_view>

#include "codec/report_lists.h"
#include "router/forward.h"
#include "router/router.h"
#include "util/cat.h"

namespace rollertrace::router {
namespace {

// The most of one archive the router holds while it finds the archive's shard.
constexpr size_t kMaxImportBytes = size_t{256} << 20;
// The archive kind of a device's definition (lib/store/schema.cc, "devices").
constexpr std::string_view kDeviceRecordKind = "devices";

}  // namespace

using grpc::ServerContext;
using grpc::Status;
using grpc::StatusCode;
namespace v1 = rollertrace::v1;

Status ComplianceRouter::WhoAmI(ServerContext* context, const v1::WhoAmIRequest* request, v1::WhoAmIResponse* response) {
  return Forward(shards_, 0, *context, "WhoAmI",
                 [&](grpc::ClientContext* c) { return shards_.compliance(0).WhoAmI(c, *request, response); });
}

Status ComplianceRouter::Export(ServerContext* context, const v1::ExportRequest* request,
                                grpc::ServerWriter<v1::ArchiveChunk>* writer) {
  std::set<size_t> owners;
  for (const auto& id : request->device_ids()) {
    absl::StatusOr<size_t> i = shards_.ShardOfDevice(id);
    if (!i.ok()) return ToGrpc(i.status());
    owners.insert(*i);
  }
  if (request->device_ids().empty()) return ExportPeriod(*context, *request, writer);
  if (owners.size() != 1) {
    return {StatusCode::FAILED_PRECONDITION,
            "these devices are on different shards: export each shard's devices separately"};
  }
  const size_t i = *owners.begin();
  return Forward(shards_, i, *context, "Export", [&](grpc::ClientContext* c) {
    auto reader = shards_.compliance(i).Export(c, *request);
    v1::ArchiveChunk chunk;
    while (reader->Read(&chunk)) {
      if (!writer->Write(chunk)) {
        c->TryCancel();
        break;
      }
    }
    return reader->Finish();
  });
}

// A period spans every shard: each shard's archive of the period, one after
// the other under one header, as one archive. Every record belongs to one
// device and every device to one shard, so the archive is what one ingestd
// holding every clinic would have exported; it imports into a single-machine
// ingestd (through the router it is refused as spanning shards).
Status ComplianceRouter::ExportPeriod(const ServerContext& context, const v1::ExportRequest& request,
                                      grpc::ServerWriter<v1::ArchiveChunk>* writer) {
  v1::ExportRequest one = request;
  if (one.to_unix_ms() <= 0) {  // every shard's "now" the same
    one.set_to_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count());
  }
  struct Part {
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<grpc::ClientReader<v1::ArchiveChunk>> reader;
    v1::ArchiveChunk first;
  };
  std::vector<Part> parts(shards_.size());
  auto failed = [&](size_t i, Status s) {
    shards_.Counted(i, "Export", s);
    for (Part& p : parts) {
      if (p.context) p.context->TryCancel();
    }
    return Status{s.error_code(), util::Cat("shard ", shards_.shard(i).name, ": ", s.error_message())};
  };
  // The headers first: the archive's names every device of every shard.
  v1::ArchiveChunk head;
  for (size_t i = 0; i < parts.size(); ++i) {
    Part& p = parts[i];
    p.context = Shards::Forwarded(context);
    p.reader = shards_.compliance(i).Export(p.context.get(), one);
    if (!p.reader->Read(&p.first) || !p.first.has_header()) {
      Status s = p.reader->Finish();
      return failed(i, s.ok() ? Status{StatusCode::INTERNAL, "its archive has no header"} : s);
    }
    v1::ArchiveHeader* h = head.mutable_header();
    if (i == 0) {
      *h = p.first.header();
      h->clear_device_ids();
    }
    h->set_created_unix_ms(std::max(h->created_unix_ms(), p.first.header().created_unix_ms()));
    for (const std::string& id : p.first.header().device_ids()) h->add_device_ids(id);
  }
  std::sort(head.mutable_header()->mutable_device_ids()->begin(), head.mutable_header()->mutable_device_ids()->end());
  if (!writer->Write(head)) return failed(0, {StatusCode::CANCELLED, "the client went away"});
  uint64_t records = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    Part& p = parts[i];
    uint64_t mine = 0;
    bool trailer = false;
    v1::ArchiveChunk chunk = std::move(p.first);
    chunk.clear_header();
    do {
      if (chunk.has_trailer()) {
        trailer = chunk.trailer().records() == mine + static_cast<uint64_t>(chunk.records_size());
        chunk.clear_trailer();
      }
      mine += static_cast<uint64_t>(chunk.records_size());
      if (chunk.records_size() > 0 && !writer->Write(chunk)) {
        return failed(i, {StatusCode::CANCELLED, "the client went away"});
      }
    } while (p.reader->Read(&chunk));
    Status s = p.reader->Finish();
    if (s.ok() && !trailer) s = {StatusCode::INTERNAL, "its archive ended without a matching trailer"};
    if (!s.ok()) return failed(i, s);
    shards_.Counted(i, "Export", s);
    records += mine;
  }
  v1::ArchiveChunk tail;
  tail.mutable_trailer()->set_records(records);
  if (!writer->Write(tail)) return {StatusCode::CANCELLED, "the client went away"};
  return Status::OK;
}

Status ComplianceRouter::Import(ServerContext* context, grpc::ServerReader<v1::ArchiveChunk>* reader,
                                v1::ImportResult* response) {
  // An archive goes to the shard of its devices' clinics: each device it
  // holds comes with its definition, which names the clinic. It is held here
  // until the whole archive has arrived (the shard checks it whole anyway),
  // and refused if its clinics live on different shards: one import is one
  // command of one shard's log.
  std::vector<v1::ArchiveChunk> held;
  size_t bytes = 0;
  std::map<size_t, std::set<std::string>> clinics;  // shard -> the archive's clinics on it
  v1::ArchiveChunk chunk;
  while (reader->Read(&chunk)) {
    bytes += chunk.ByteSizeLong();
    if (bytes > kMaxImportBytes) {
      return {StatusCode::RESOURCE_EXHAUSTED,
              util::Cat("the archive is larger than ", kMaxImportBytes >> 20,
                        " MiB, the most the router holds; import it into its shard directly; nothing was imported")};
    }
    for (const v1::ArchiveRecord& r : chunk.records()) {
      if (r.kind() != kDeviceRecordKind) continue;
      v1::DeviceRecord d;
      if (!d.ParseFromString(r.value())) continue;  // the shard names what is wrong with it
      clinics[shards_.ShardOfClinic(d.device().clinic())].insert(d.device().clinic());
    }
    held.push_back(std::move(chunk));
  }
  if (context->IsCancelled()) return {StatusCode::CANCELLED, "the import was cancelled; nothing was imported"};
  if (clinics.size() > 1) {
    std::string where;
    for (const auto& [i, names] : clinics) {
      where += util::Cat(where.empty() ? "" : "; ", shards_.shard(i).name, ":");
      for (const std::string& c : names) where += util::Cat(" ", c.empty() ? "(no clinic)" : c);
    }
    return {StatusCode::FAILED_PRECONDITION,
            util::Cat("the archive holds devices of clinics on different shards (", where,
                      "): export and import each shard's clinics separately; nothing was imported")};
  }
  // With no device definition at all the default shard says what is wrong.
  const size_t i = clinics.empty() ? shards_.ShardOfClinic("") : clinics.begin()->first;
  return Forward(shards_, i, *context, "Import", [&](grpc::ClientContext* c) {
    std::unique_ptr<grpc::ClientWriter<v1::ArchiveChunk>> writer = shards_.compliance(i).Import(c, response);
    for (const v1::ArchiveChunk& one : held) {
      if (!writer->Write(one)) break;  // the shard has answered: Finish says how
    }
    writer->WritesDone();
    Status s = writer->Finish();
    if (s.ok()) {
      for (const v1::ArchiveChunk& one : held) {
        for (const std::string& id : one.header().device_ids()) shards_.Remember(id, i);
      }
    }
    return s;
  });
}

Status ComplianceRouter::Backup(ServerContext* context, const v1::BackupRequest* request, v1::BackupResult* response) {
  // Each shard backs up its own store, into <directory>-<shard> on its own machine.
  for (size_t i = 0; i < shards_.size(); ++i) {
    v1::BackupRequest one = *request;
    one.set_directory(util::Cat(request->directory(), "-", shards_.shard(i).name));
    v1::BackupResult r;
    Status s = Forward(shards_, i, *context, "Backup",
                       [&](grpc::ClientContext* c) { return shards_.compliance(i).Backup(c, one, &r); });
    if (!s.ok()) return {s.error_code(), util::Cat("shard ", shards_.shard(i).name, ": ", s.error_message())};
    response->set_files(response->files() + r.files());
    response->set_bytes(response->bytes() + r.bytes());
  }
  response->set_directory(util::Cat(request->directory(), "-<shard>"));
  return Status::OK;
}

void MergeReport(const v1::PeriodReport& from, v1::PeriodReport* into) {
  const auto* d = v1::PeriodReport::descriptor();
  const auto* r = v1::PeriodReport::GetReflection();
  for (int f = 0; f < d->field_count(); ++f) {
    const auto* field = d->field(f);
    if (field->is_repeated() && field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
      for (int k = 0; k < r->FieldSize(from, field); ++k) {
        r->AddMessage(into, field)->CopyFrom(r->GetRepeatedMessage(from, field, k));
      }
    } else if (field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_UINT32) {
      r->SetUInt32(into, field, r->GetUInt32(*into, field) + r->GetUInt32(from, field));  // the summary counts
    }
  }
  if (into->from_unix_ms() == 0) into->set_from_unix_ms(from.from_unix_ms());
  into->set_to_unix_ms(std::max(into->to_unix_ms(), from.to_unix_ms()));
  into->set_generated_unix_ms(std::max(into->generated_unix_ms(), from.generated_unix_ms()));
  into->set_bucket_ms(std::max(into->bucket_ms(), from.bucket_ms()));
  // One bucket per start, one count per rule.
  std::map<int64_t, v1::ReportBucket> buckets;
  for (const auto& b : into->buckets()) {
    v1::ReportBucket& m = buckets[b.start_unix_ms()];
    m.set_start_unix_ms(b.start_unix_ms());
    m.set_sessions(m.sessions() + b.sessions());
    m.set_sessions_denied(m.sessions_denied() + b.sessions_denied());
    m.set_violations(m.violations() + b.violations());
    m.set_cycles(m.cycles() + b.cycles());
    m.set_cycles_failed(m.cycles_failed() + b.cycles_failed());
  }
  into->clear_buckets();
  for (auto& [start, b] : buckets) *into->add_buckets() = b;
  auto merge_rules = [](google::protobuf::RepeatedPtrField<v1::RuleCount>* counts) {
    std::map<std::string, uint32_t> by_rule;
    for (const auto& c : *counts) by_rule[c.rule()] += c.count();
    counts->Clear();
    for (const auto& [rule, n] : by_rule) {
      auto* c = counts->Add();
      c->set_rule(rule);
      c->set_count(n);
    }
  };
  merge_rules(into->mutable_violations_by_rule());
  // What each shard left out, and what the merged lists must leave out to
  // stay one answer.
  const v1::ReportOmitted& cut = from.omitted();
  v1::ReportOmitted* o = into->mutable_omitted();
  o->set_violations(o->violations() + cut.violations());
  o->set_cycles(o->cycles() + cut.cycles());
  o->set_pending_indicators(o->pending_indicators() + cut.pending_indicators());
  o->set_locked_rollers(o->locked_rollers() + cut.locked_rollers());
  o->set_retired_rollers(o->retired_rollers() + cut.retired_rollers());
  o->set_recalls(o->recalls() + cut.recalls());
  o->set_findings(o->findings() + cut.findings());
  codec::FitReportLists(into);
  merge_rules(into->mutable_warnings_by_rule());
}

Status ComplianceRouter::Report(ServerContext* context, const v1::ReportRequest* request, v1::PeriodReport* response) {
  return FanOut<v1::PeriodReport>(
      shards_, *context, "Report",
      [&](size_t i, grpc::ClientContext* c, v1::PeriodReport* one) { return shards_.compliance(i).Report(c, *request, one); },
      [&](v1::PeriodReport one) { MergeReport(one, response); });
}

Status ComplianceRouter::Verify(ServerContext* context, const v1::VerifyRequest* request, v1::VerifyReport* response) {
  if (!request->device_id().empty()) {
    return ByDevice(shards_, *context, request->device_id(), "Verify", [&](size_t i, grpc::ClientContext* c) {
      return shards_.compliance(i).Verify(c, *request, response);
    });
  }
  response->set_intact(true);
  return FanOut<v1::VerifyReport>(
      shards_, *context, "Verify",
      [&](size_t i, grpc::ClientContext* c, v1::VerifyReport* one) { return shards_.compliance(i).Verify(c, *request, one); },
      [&](v1::VerifyReport one) {
        response->set_intact(response->intact() && one.intact());
        response->set_devices_checked(response->devices_checked() + one.devices_checked());
        response->set_records_checked(response->records_checked() + one.records_checked());
        for (auto& b : *one.mutable_breaks()) *response->add_breaks() = std::move(b);
      });
}

Status ComplianceRouter::GetRollerTrail(ServerContext* context, const v1::RollerTrailRequest* request,
                                        v1::RollerTrail* response) {
  return ByDevice(shards_, *context, request->device_id(), "GetRollerTrail", [&](size_t i, grpc::ClientContext* c) {
    return shards_.compliance(i).GetRollerTrail(c, *request, response);
  });
}

Status ComplianceRouter::GetPatientTrail(ServerContext* context, const v1::PatientTrailRequest* request,
                                         v1::PatientTrail* response) {
  // A patient is a clinic's, so one shard answers; every shard is asked.
  return FanOut<v1::PatientTrail>(
      shards_, *context, "GetPatientTrail",
      [&](size_t i, grpc::ClientContext* c, v1::PatientTrail* one) {
        return shards_.compliance(i).GetPatientTrail(c, *request, one);
      },
      [&](v1::PatientTrail one) {
        if (response->patient_pseudonym().empty()) response->set_patient_pseudonym(one.patient_pseudonym());
        for (auto& s : *one.mutable_sessions()) *response->add_sessions() = std::move(s);
        for (auto& c : *one.mutable_cycles()) *response->add_cycles() = std::move(c);
        response->mutable_omitted()->set_sessions(response->omitted().sessions() + one.omitted().sessions());
        response->mutable_omitted()->set_cycles(response->omitted().cycles() + one.omitted().cycles());
        codec::FitTrailLists(response);
      });
}

Status ComplianceRouter::GetCycleTrail(ServerContext* context, const v1::CycleRequest* request, v1::CycleTrail* response) {
  return ByDevice(shards_, *context, request->steriliser_id(), "GetCycleTrail", [&](size_t i, grpc::ClientContext* c) {
    return shards_.compliance(i).GetCycleTrail(c, *request, response);
  });
}

Status ComplianceRouter::AuthorizeUse(ServerContext* context, const v1::AuthorizeRequest* request, v1::Decision* response) {
  return ByDevice(shards_, *context, request->device_id(), "AuthorizeUse", [&](size_t i, grpc::ClientContext* c) {
    return shards_.compliance(i).AuthorizeUse(c, *request, response);
  });
}

Status ComplianceRouter::RecordBiologicalIndicator(ServerContext* context, const v1::BiologicalIndicatorRequest* request,
                                                   v1::BiologicalIndicatorResponse* response) {
  return ByDevice(shards_, *context, request->steriliser_id(), "RecordBiologicalIndicator",
                  [&](size_t i, grpc::ClientContext* c) {
                    return shards_.compliance(i).RecordBiologicalIndicator(c, *request, response);
                  });
}

Status ComplianceRouter::GetCycle(ServerContext* context, const v1::CycleRequest* request, v1::CycleRecord* response) {
  return ByDevice(shards_, *context, request->steriliser_id(), "GetCycle", [&](size_t i, grpc::ClientContext* c) {
    return shards_.compliance(i).GetCycle(c, *request, response);
  });
}

Status ComplianceRouter::ListViolations(ServerContext* context, const v1::ViolationsRequest* request,
                                        v1::ViolationsResponse* response) {
  if (!request->device_id().empty()) {
    return ByDevice(shards_, *context, request->device_id(), "ListViolations", [&](size_t i, grpc::ClientContext* c) {
      return shards_.compliance(i).ListViolations(c, *request, response);
    });
  }
  // The shards one after the other: the token is "<shard index>:<that shard's token>".
  size_t i = 0;
  std::string inner;
  if (!request->page_token().empty()) {
    const std::string& t = request->page_token();
    const size_t colon = t.find(':');
    size_t parsed = 0;
    if (colon == std::string::npos || colon == 0 ||
        std::from_chars(t.data(), t.data() + colon, parsed).ptr != t.data() + colon || parsed >= shards_.size()) {
      return {StatusCode::INVALID_ARGUMENT, "page_token is not one this router gave"};
    }
    i = parsed;
    inner = t.substr(colon + 1);
  }
  v1::ViolationsRequest one = *request;
  one.set_page_token(inner);
  Status s = Forward(shards_, i, *context, "ListViolations",
                     [&](grpc::ClientContext* c) { return shards_.compliance(i).ListViolations(c, one, response); });
  if (!s.ok()) return {s.error_code(), util::Cat("shard ", shards_.shard(i).name, ": ", s.error_message())};
  if (!response->next_page_token().empty()) {
    response->set_next_page_token(util::Cat(i, ":", response->next_page_token()));
  } else if (i + 1 < shards_.size()) {
    response->set_next_page_token(util::Cat(i + 1, ":"));
  }
  return Status::OK;
}

Status ComplianceRouter::Recall(ServerContext* context, const v1::RecallRequest* request, v1::RecallReport* response) {
  return ByDevice(shards_, *context, request->steriliser_id(), "Recall", [&](size_t i, grpc::ClientContext* c) {
    return shards_.compliance(i).Recall(c, *request, response);
  });
}

Status ComplianceRouter::History(ServerContext* context, const v1::HistoryRequest* request, v1::HistoryResponse* response) {
  return ByDevice(shards_, *context, request->device_id(), "History", [&](size_t i, grpc::ClientContext* c) {
    return shards_.compliance(i).History(c, *request, response);
  });
}

Status ComplianceRouter::Gaps(ServerContext* context, const v1::GapsRequest* request, v1::GapsResponse* response) {
  return ByDevice(shards_, *context, request->device_id(), "Gaps", [&](size_t i, grpc::ClientContext* c) {
    return shards_.compliance(i).Gaps(c, *request, response);
  });
}

}  // namespace rollertrace::router
