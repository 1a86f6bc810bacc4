// ComplianceServiceImpl (grpc_services.h): authorisations, lab results,
// audits, archives and backups over the store; the ingest and registry
// services are in grpc_services.cc.
#include <algorithm>
#include <optional>
#include <string>

#include "codec/codec.h"
#include "codec/limits.h"
#include "codec/report_lists.h"
#include "ingest/grpc_services.h"
#include "util/cat.h"
#include "util/hex.h"

namespace rollertrace::ingest {
namespace {

// The most one Import holds in memory while it checks the archive.
constexpr size_t kMaxImportBytes = size_t{1} << 30;
// Violations a page when the caller does not say.
constexpr size_t kViolationsPage = 1000;

// Page tokens are store keys, as hex (util::Hex) so that they survive any
// transport.
std::optional<std::string> FromHex(const std::string& hex) {
  if (hex.size() % 2 != 0 || hex.size() > 2 * codec::Limits::kIdBytes * 4) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

}  // namespace

grpc::Status ComplianceServiceImpl::AuthorizeUse(grpc::ServerContext* context, const rollertrace::v1::AuthorizeRequest* request,
                                                 rollertrace::v1::Decision* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kDevice, Role::kAdmin}, "AuthorizeUse"); !denied.ok()) return denied;
  if (absl::Status s = codec::ValidateDeviceId(request->device_id()); !s.ok()) return ToGrpc(s);
  rollertrace::v1::AuthorizeRequest req = *request;
  auto* session = req.mutable_session();
  // Only ingestd makes pseudonyms, and never hands one out: a client that
  // could would have an oracle from patient references to pseudonyms.
  if (!session->patient_pseudonym().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "an authorisation names the patient by session.patient_ref; pseudonyms are made only by ingestd");
  }
  if (session->patient_ref().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "an authorisation needs the patient (session.patient_ref)");
  }
  session->set_patient_pseudonym(pseudonymizer_.Pseudonym(session->patient_ref()));
  session->clear_patient_ref();
  absl::StatusOr<rollertrace::v1::Decision> d = committer_.Authorize(req);
  if (!d.ok()) return ToGrpc(d.status());
  metrics_.Decided(*d, "authorize");
  *response = *d;
  // The stored decision keeps the pseudonym; the answer carries none.
  response->clear_patient_pseudonym();
  if (response->has_roller()) {
    auto* use = response->mutable_roller()->mutable_use();
    response->mutable_roller()->set_patient_bound(!use->bound_patient().empty());
    use->clear_bound_patient();
  }
  return grpc::Status::OK;
}

grpc::Status ComplianceServiceImpl::RecordBiologicalIndicator(
    grpc::ServerContext* context, const rollertrace::v1::BiologicalIndicatorRequest* request,
    rollertrace::v1::BiologicalIndicatorResponse* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kAdmin}, "RecordBiologicalIndicator"); !denied.ok()) return denied;
  if (absl::Status w = committer_.StoreWritable(); !w.ok()) return ToGrpc(w);
  absl::StatusOr<store::CommandResult> outcome = store::RecordBiologicalIndicator(store_, *request, clock_());
  if (!outcome.ok()) return ToGrpc(outcome.status());
  if (absl::Status d = committer_.AwaitDurable(); !d.ok()) return ToGrpc(d);
  metrics_.bi_results.Add({{"result", request->result() == rollertrace::v1::INDICATOR_PASS ? "pass" : "fail"}})
      .Increment();
  if (!outcome->recalls.empty()) {
    metrics_.recalls.Increment();
    *response->mutable_recall() = outcome->recalls.front();
  }
  committer_.outbox().Enqueue(std::move(outcome->commands));
  *response->mutable_cycle() = outcome->cycle;
  return grpc::Status::OK;
}

grpc::Status ComplianceServiceImpl::GetCycle(grpc::ServerContext* context, const rollertrace::v1::CycleRequest* request,
                                             rollertrace::v1::CycleRecord* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kAuditor, Role::kAdmin}, "GetCycle"); !denied.ok()) return denied;
  absl::StatusOr<rollertrace::v1::CycleRecord> c = store_.audit().GetCycle(request->steriliser_id(), request->cycle_number());
  if (!c.ok()) return ToGrpc(c.status());
  *response = *c;
  return grpc::Status::OK;
}

grpc::Status ComplianceServiceImpl::Export(grpc::ServerContext* context, const rollertrace::v1::ExportRequest* request,
                                           grpc::ServerWriter<rollertrace::v1::ArchiveChunk>* writer) {
  if (grpc::Status denied = access_.Check(context, {Role::kAuditor, Role::kAdmin}, "Export"); !denied.ok()) return denied;
  uint64_t records = 0;
  const grpc::Status status = [&]() -> grpc::Status {
    const int64_t now = clock_();
    const int64_t to = request->to_unix_ms() > 0 ? request->to_unix_ms() : now;
    constexpr size_t kChunkBytes = 1 << 20;
    rollertrace::v1::ArchiveChunk chunk;
    size_t bytes = 0;
    bool header_sent = false;
    auto flush = [&]() -> absl::Status {
      if (chunk.records_size() == 0 && header_sent) return absl::OkStatus();
      if (context->IsCancelled()) return absl::CancelledError("the client went away");
      if (!writer->Write(chunk)) return absl::CancelledError("the client went away");
      header_sent = true;
      chunk.Clear();
      bytes = 0;
      return absl::OkStatus();
    };
    absl::StatusOr<std::vector<std::string>> ids = store_.archiver().SelectForExport(
        {request->device_ids().begin(), request->device_ids().end()}, request->from_unix_ms(), to);
    if (!ids.ok()) return ToGrpc(ids.status());
    auto* header = chunk.mutable_header();
    header->set_format(store::kArchiveFormat);
    header->set_created_unix_ms(now);
    header->set_from_unix_ms(request->from_unix_ms());
    header->set_to_unix_ms(to);
    header->set_selection(request->device_ids().empty() ? store::kSelectionByPeriod
                                                        : "the devices named, with the sterilisers their cycles came from");
    for (const auto& id : *ids) header->add_device_ids(id);
    absl::Status s = store_.archiver().ExportDevices(*ids, [&](const rollertrace::v1::ArchiveRecord& r) {
      *chunk.add_records() = r;
      ++records;
      bytes += r.key().size() + r.value().size();
      return bytes >= kChunkBytes ? flush() : absl::OkStatus();
    });
    if (s.ok()) s = flush();
    if (s.ok()) {
      // A chunk of its own, so that an archive cut at any chunk boundary lacks it.
      chunk.mutable_trailer()->set_records(records);
      header_sent = false;
      s = flush();
    }
    if (!s.ok()) return ToGrpc(s);
    return grpc::Status::OK;
  }();
  metrics_.Audited("export", status.ok());
  metrics_.archive_records.Add({{"direction", "export"}}).Increment(static_cast<double>(records));
  return status;
}

grpc::Status ComplianceServiceImpl::Import(grpc::ServerContext* context,
                                           grpc::ServerReader<rollertrace::v1::ArchiveChunk>* reader,
                                           rollertrace::v1::ImportResult* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kAdmin}, "Import"); !denied.ok()) return denied;
  uint64_t records = 0;
  const grpc::Status status = [&]() -> grpc::Status {
    rollertrace::v1::ArchiveChunk chunk;
    if (!reader->Read(&chunk)) return {grpc::StatusCode::INVALID_ARGUMENT, "an empty archive"};
    if (chunk.header().format() != store::kArchiveFormat) {
      return {grpc::StatusCode::INVALID_ARGUMENT,
              util::Cat("not a RollerTrace archive of this version (format '", chunk.header().format(),
                        "', expected ", store::kArchiveFormat, ")")};
    }
    const std::vector<std::string> devices(chunk.header().device_ids().begin(), chunk.header().device_ids().end());
    // The whole archive is checked before anything is written, so it is held
    // here until its trailer arrives; a stream that ends without one was cut.
    std::vector<rollertrace::v1::ArchiveRecord> held;
    size_t bytes = 0;
    // In a cluster the import is one command of the replicated log, which bounds it.
    const size_t max_bytes = committer_.MaxCommandBytes() != 0
                                 ? std::min(kMaxImportBytes, committer_.MaxCommandBytes() / 2)
                                 : kMaxImportBytes;
    bool complete = false;
    do {
      if (complete) {
        return {grpc::StatusCode::INVALID_ARGUMENT, "the archive goes on after its trailer; nothing was imported"};
      }
      for (auto& r : *chunk.mutable_records()) {
        bytes += r.key().size() + r.value().size();
        if (bytes > max_bytes) {
          return {grpc::StatusCode::RESOURCE_EXHAUSTED,
                  util::Cat("the archive is larger than ", max_bytes >> 20,
                            " MiB, the most one import holds; export fewer devices; nothing was imported")};
        }
        held.push_back(std::move(r));
      }
      if (chunk.has_trailer()) {
        if (chunk.trailer().records() != held.size()) {
          return {grpc::StatusCode::INVALID_ARGUMENT,
                  util::Cat("the archive's trailer counts ", chunk.trailer().records(), " records but ", held.size(),
                            " arrived; nothing was imported")};
        }
        complete = true;
      }
    } while (reader->Read(&chunk));
    if (context->IsCancelled()) return {grpc::StatusCode::CANCELLED, "the import was cancelled; nothing was imported"};
    if (!complete) {
      return {grpc::StatusCode::INVALID_ARGUMENT,
              "the archive ends without its trailer: it is cut short; nothing was imported"};
    }
    if (absl::Status w = committer_.StoreWritable(); !w.ok()) return ToGrpc(w);
    if (absl::Status s = store::Import(store_, devices, held, clock_()); !s.ok()) return ToGrpc(s);
    if (absl::Status d = committer_.AwaitDurable(); !d.ok()) return ToGrpc(d);
    records = held.size();
    response->set_records(records);
    response->set_devices(static_cast<uint32_t>(devices.size()));
    return grpc::Status::OK;
  }();
  metrics_.Audited("import", status.ok());
  metrics_.archive_records.Add({{"direction", "import"}}).Increment(static_cast<double>(records));
  return status;
}

grpc::Status ComplianceServiceImpl::Backup(grpc::ServerContext* context, const rollertrace::v1::BackupRequest* request,
                                           rollertrace::v1::BackupResult* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kAdmin}, "Backup"); !denied.ok()) return denied;
  absl::StatusOr<rollertrace::v1::BackupResult> r = store_.archiver().Backup(request->directory(), backup_root_);
  metrics_.Audited("backup", r.ok());
  if (!r.ok()) return ToGrpc(r.status());
  *response = std::move(*r);
  return grpc::Status::OK;
}

grpc::Status ComplianceServiceImpl::Report(grpc::ServerContext* context, const rollertrace::v1::ReportRequest* request,
                                           rollertrace::v1::PeriodReport* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kAuditor, Role::kAdmin}, "Report"); !denied.ok()) return denied;
  absl::StatusOr<rollertrace::v1::PeriodReport> r =
      store_.audit().Report(request->from_unix_ms(), request->to_unix_ms(), clock_());
  metrics_.Audited("report", r.ok());
  if (!r.ok()) return ToGrpc(r.status());
  *response = std::move(*r);
  return grpc::Status::OK;
}

grpc::Status ComplianceServiceImpl::ListViolations(grpc::ServerContext* context,
                                                   const rollertrace::v1::ViolationsRequest* request,
                                                   rollertrace::v1::ViolationsResponse* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kAuditor, Role::kAdmin}, "ListViolations"); !denied.ok()) return denied;
  store::ViolationFilter f;
  f.from_unix_ms = request->from_unix_ms();
  f.to_unix_ms = request->to_unix_ms();
  f.rule = request->rule();
  f.device_id = request->device_id();
  f.severity = request->severity();
  f.limit = std::min<size_t>(request->limit() == 0 ? kViolationsPage : request->limit(), codec::Limits::kHistoryPage);
  if (!request->page_token().empty()) {
    std::optional<std::string> key = FromHex(request->page_token());
    if (!key) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page_token is not one this server gave");
    f.after_key = std::move(*key);
  }
  absl::StatusOr<store::ViolationPage> v = store_.audit().ListViolations(f);
  if (!v.ok()) return ToGrpc(v.status());
  for (auto& x : v->violations) *response->add_violations() = std::move(x);
  if (!v->next_key.empty()) response->set_next_page_token(util::Hex(v->next_key));
  return grpc::Status::OK;
}

grpc::Status ComplianceServiceImpl::Recall(grpc::ServerContext* context, const rollertrace::v1::RecallRequest* request,
                                           rollertrace::v1::RecallReport* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kAuditor, Role::kAdmin}, "Recall"); !denied.ok()) return denied;
  absl::StatusOr<rollertrace::v1::RecallReport> r = store_.audit().GetRecall(request->steriliser_id(), request->cycle_number());
  if (!r.ok()) return ToGrpc(r.status());
  *response = *r;
  return grpc::Status::OK;
}

grpc::Status ComplianceServiceImpl::GetRollerTrail(grpc::ServerContext* context,
                                                   const rollertrace::v1::RollerTrailRequest* request,
                                                   rollertrace::v1::RollerTrail* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kAuditor, Role::kAdmin}, "GetRollerTrail"); !denied.ok()) return denied;
  absl::StatusOr<rollertrace::v1::RollerTrail> t = store_.audit().RollerTrail(
      request->device_id(), std::min<size_t>(request->events_limit(), codec::Limits::kHistoryPage));
  if (!t.ok()) return ToGrpc(t.status());
  *response = std::move(*t);
  codec::FitTrailLists(response);
  return grpc::Status::OK;
}

grpc::Status ComplianceServiceImpl::GetPatientTrail(grpc::ServerContext* context,
                                                    const rollertrace::v1::PatientTrailRequest* request,
                                                    rollertrace::v1::PatientTrail* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kAuditor, Role::kAdmin}, "GetPatientTrail"); !denied.ok()) return denied;
  std::string pseudonym = request->patient_pseudonym();
  if (!request->patient_ref().empty()) pseudonym = pseudonymizer_.Pseudonym(request->patient_ref());
  if (pseudonym.empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "give the patient's pseudonym or the clinic's reference");
  }
  if (!pseudonym::Pseudonymizer::IsPseudonym(pseudonym)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "not a patient pseudonym: pseudonyms are 'p-' and 64 hex digits (or give --ref, the clinic's "
                        "reference)");
  }
  absl::StatusOr<rollertrace::v1::PatientTrail> t = store_.audit().PatientTrail(pseudonym);
  if (!t.ok()) return ToGrpc(t.status());
  *response = std::move(*t);
  codec::FitTrailLists(response);
  return grpc::Status::OK;
}

grpc::Status ComplianceServiceImpl::Verify(grpc::ServerContext* context, const rollertrace::v1::VerifyRequest* request,
                                           rollertrace::v1::VerifyReport* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kAuditor, Role::kAdmin}, "Verify"); !denied.ok()) return denied;
  absl::StatusOr<rollertrace::v1::VerifyReport> r = store_.verifier().Verify(request->device_id(), trusted_key_);
  metrics_.Audited("verify", r.ok());
  if (!r.ok()) return ToGrpc(r.status());
  if (request->device_id().empty()) metrics_.Verified(*r, clock_());
  *response = std::move(*r);
  return grpc::Status::OK;
}

grpc::Status ComplianceServiceImpl::GetCycleTrail(grpc::ServerContext* context, const rollertrace::v1::CycleRequest* request,
                                                  rollertrace::v1::CycleTrail* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kAuditor, Role::kAdmin}, "GetCycleTrail"); !denied.ok()) return denied;
  absl::StatusOr<rollertrace::v1::CycleTrail> t = store_.audit().CycleTrail(request->steriliser_id(), request->cycle_number());
  if (!t.ok()) return ToGrpc(t.status());
  *response = std::move(*t);
  codec::FitTrailLists(response);
  return grpc::Status::OK;
}

grpc::Status ComplianceServiceImpl::History(grpc::ServerContext* context, const rollertrace::v1::HistoryRequest* request,
                                            rollertrace::v1::HistoryResponse* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kAuditor, Role::kAdmin}, "History"); !denied.ok()) return denied;
  if (absl::Status s = store_.audit().GetDevice(request->device_id()).status(); !s.ok()) return ToGrpc(s);
  absl::StatusOr<rollertrace::v1::HistoryResponse> history =
      store_.audit().History(request->device_id(), request->from_sequence(), request->limit());
  if (!history.ok()) return ToGrpc(history.status());
  *response = std::move(*history);
  codec::FitHistoryPage(response);
  return grpc::Status::OK;
}

grpc::Status ComplianceServiceImpl::Gaps(grpc::ServerContext* context, const rollertrace::v1::GapsRequest* request,
                                         rollertrace::v1::GapsResponse* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kAuditor, Role::kAdmin}, "Gaps"); !denied.ok()) return denied;
  absl::StatusOr<std::vector<rollertrace::v1::Gap>> gaps = store_.audit().Gaps(request->device_id());
  if (!gaps.ok()) return ToGrpc(gaps.status());
  for (auto& g : *gaps) *response->add_gaps() = std::move(g);
  return grpc::Status::OK;
}

grpc::Status ComplianceServiceImpl::WhoAmI(grpc::ServerContext* context, const rollertrace::v1::WhoAmIRequest*,
                                           rollertrace::v1::WhoAmIResponse* response) {
  Role role;
  if (grpc::Status known = access_.RoleOf(context, &role); !known.ok()) return known;
  response->set_role(RoleName(role));
  return grpc::Status::OK;
}

}  // namespace rollertrace::ingest
