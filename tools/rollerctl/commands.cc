#include "rollerctl/commands.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <iomanip>
#include <sstream>

#include "codec/codec.h"
#include "rollerctl/format.h"
#include "util/cat.h"

namespace rollertrace::rollerctl {

std::unique_ptr<grpc::ClientContext> Call(const Context& ctx) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + ctx.timeout);
  c->set_wait_for_ready(true);  // an ingestd still starting gets until the deadline
  if (!ctx.token.empty()) c->AddMetadata("authorization", "Bearer " + ctx.token);
  return c;
}

int Fail(const Context& ctx, const grpc::Status& s) {
  if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED || s.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
    *ctx.err << "rollerctl: not allowed: " << s.error_message() << "\n";
    return 6;
  }
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE || s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    *ctx.err << "rollerctl: cannot reach ingestd: " << s.error_message() << "\n";
    return 3;
  }
  *ctx.err << "rollerctl: " << s.error_message() << "\n";
  return 1;
}

void PrintJson(const Context& ctx, const google::protobuf::Message& m) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = false;  // the protobuf JSON mapping: lowerCamelCase
  (void)google::protobuf::util::MessageToJsonString(m, &json, options);
  *ctx.out << json;
}

namespace {

using rollertrace::v1::ComplianceService;
using rollertrace::v1::RegistryService;

std::string Wear(const rollertrace::v1::DeviceRecord& r) {
  const auto& d = r.device();
  if (d.kind() != rollertrace::v1::DEVICE_KIND_ROLLER || d.rated_penetrations() == 0) return "-";
  const double wear = static_cast<double>(r.state().total_revolutions()) * d.needle_count() / d.rated_penetrations();
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << wear * 100 << " %";
  return out.str();
}

std::string Ranges(const google::protobuf::RepeatedPtrField<rollertrace::v1::SequenceRange>& ranges) {
  std::string out;
  for (const auto& r : ranges) {
    if (!out.empty()) out += ", ";
    out += r.first() == r.last() ? std::to_string(r.first()) : util::Cat(r.first(), "-", r.last());
  }
  return out.empty() ? "-" : out;
}

}  // namespace

int Register(const Context& ctx, const rollertrace::v1::Device& device) {
  auto stub = RegistryService::NewStub(ctx.channel);
  rollertrace::v1::RegisterRequest request;
  *request.mutable_device() = device;
  rollertrace::v1::Device response;
  grpc::Status s = stub->Register(Call(ctx).get(), request, &response);
  if (!s.ok()) return Fail(ctx, s);
  if (ctx.json) {
    PrintJson(ctx, response);
  } else {
    *ctx.out << "registered " << KindName(response.kind()) << " " << response.device_id() << " at "
             << FormatTime(response.registered_unix_ms()) << "\n";
  }
  return 0;
}

int List(const Context& ctx, rollertrace::v1::DeviceKind kind) {
  auto stub = RegistryService::NewStub(ctx.channel);
  rollertrace::v1::ListDevicesRequest request;
  request.set_kind(kind);
  rollertrace::v1::ListDevicesResponse response;
  grpc::Status s = stub->List(Call(ctx).get(), request, &response);
  if (!s.ok()) return Fail(ctx, s);
  if (ctx.json) {
    PrintJson(ctx, response);
    return 0;
  }
  Table table({"DEVICE", "KIND", "MODEL", "STATE", "EVENTS", "LAST SEQ", "COMPLETE TO", "OPEN GAPS", "SESSIONS",
               "WEAR", "LAST RECEIVED"});
  for (const auto& r : response.devices()) {
    const auto& st = r.state();
    table.Add({r.device().device_id(), KindName(r.device().kind()), r.device().model(),
               LifecycleName(r.device().lifecycle()), std::to_string(st.events_stored()),
               std::to_string(st.highest_sequence()), std::to_string(st.contiguous_through()),
               std::to_string(st.open_gaps_size()), std::to_string(st.sessions_started()), Wear(r),
               FormatTime(st.last_receive_unix_ms())});
  }
  table.Print(*ctx.out);
  *ctx.out << table.size() << " devices\n";
  return 0;
}

int Show(const Context& ctx, const std::string& device_id) {
  auto stub = RegistryService::NewStub(ctx.channel);
  rollertrace::v1::GetDeviceRequest request;
  request.set_device_id(device_id);
  rollertrace::v1::DeviceRecord r;
  grpc::Status s = stub->Get(Call(ctx).get(), request, &r);
  if (!s.ok()) return Fail(ctx, s);
  if (ctx.json) {
    PrintJson(ctx, r);
    return 0;
  }
  const auto& d = r.device();
  const auto& st = r.state();
  auto& out = *ctx.out;
  out << "device        " << d.device_id() << " (" << KindName(d.kind()) << ", " << d.model() << ")\n";
  out << "clinic        " << (d.clinic().empty() ? "-" : d.clinic()) << "\n";
  out << "state         " << LifecycleName(d.lifecycle());
  if (d.lifecycle() == rollertrace::v1::LIFECYCLE_RETIRED) {
    out << " since " << FormatTime(d.retired_unix_ms()) << ": " << d.retired_reason();
  }
  out << "\nregistered    " << FormatTime(d.registered_unix_ms()) << "\n";
  if (d.kind() == rollertrace::v1::DEVICE_KIND_ROLLER) {
    out << "needles       " << d.needle_count() << " x " << d.needle_length_mm() << " mm, rated "
        << d.rated_penetrations() << " penetrations\n";
    out << "usage         " << st.sessions_started() << " sessions, " << st.total_revolutions()
        << " revolutions, wear " << Wear(r) << "\n";
  }
  out << "events        " << st.events_stored() << " stored, " << st.duplicates() << " duplicates ignored\n";
  out << "sequence      complete to " << st.contiguous_through() << ", highest " << st.highest_sequence() << ", "
      << st.open_gaps_size() << " open gaps (" << st.gaps_opened() << " ever)\n";
  out << "last received " << FormatTime(st.last_receive_unix_ms()) << " (device time "
      << FormatTime(st.last_device_time_unix_ms()) << ")\n";
  return 0;
}

int History(const Context& ctx, const std::string& device_id, uint64_t from, uint64_t limit) {
  auto stub = ComplianceService::NewStub(ctx.channel);
  rollertrace::v1::HistoryResponse all;
  uint64_t next = std::max<uint64_t>(from, 1);
  while (next != 0 && (limit == 0 || static_cast<uint64_t>(all.events_size()) < limit)) {
    rollertrace::v1::HistoryRequest request;
    request.set_device_id(device_id);
    request.set_from_sequence(next);
    const uint64_t want = limit == 0 ? 1000 : std::min<uint64_t>(1000, limit - all.events_size());
    request.set_limit(static_cast<uint32_t>(want));
    rollertrace::v1::HistoryResponse page;
    grpc::Status s = stub->History(Call(ctx).get(), request, &page);
    if (!s.ok()) return Fail(ctx, s);
    for (auto& e : *page.mutable_events()) *all.add_events() = std::move(e);
    next = page.next_sequence();
  }
  all.set_next_sequence(next);
  if (ctx.json) {
    PrintJson(ctx, all);
    return 0;
  }
  Table table({"SEQ", "DEVICE TIME", "RECEIVED", "TYPE", "DETAIL"});
  for (const auto& se : all.events()) {
    table.Add({std::to_string(se.event().sequence()), FormatTime(se.event().device_time_unix_ms()),
               FormatTime(se.receive_unix_ms()), std::string(codec::EventType(se.event())),
               DescribeEvent(se.event())});
  }
  table.Print(*ctx.out);
  *ctx.out << table.size() << " events" << (next ? util::Cat("; more from sequence ", next) : "") << "\n";
  return 0;
}

int Gaps(const Context& ctx, const std::string& device_id) {
  auto stub = ComplianceService::NewStub(ctx.channel);
  rollertrace::v1::GapsRequest request;
  request.set_device_id(device_id);
  rollertrace::v1::GapsResponse response;
  grpc::Status s = stub->Gaps(Call(ctx).get(), request, &response);
  if (!s.ok()) return Fail(ctx, s);
  if (ctx.json) {
    PrintJson(ctx, response);
    return 0;
  }
  Table table({"GAP", "OPENED", "CLOSED", "STILL MISSING"});
  for (const auto& g : response.gaps()) {
    table.Add({util::Cat(g.first(), "-", g.last()), FormatTime(g.opened_unix_ms()),
               g.closed_unix_ms() ? FormatTime(g.closed_unix_ms()) : "open", Ranges(g.missing())});
  }
  table.Print(*ctx.out);
  *ctx.out << table.size() << " gaps; the record of " << device_id
           << (table.size() == 0 ? " has never had a gap\n" : " is complete only where every gap is closed\n");
  return 0;
}

int Retire(const Context& ctx, const std::string& device_id, const std::string& reason) {
  auto stub = RegistryService::NewStub(ctx.channel);
  rollertrace::v1::RetireRequest request;
  request.set_device_id(device_id);
  request.set_reason(reason);
  rollertrace::v1::Device response;
  grpc::Status s = stub->Retire(Call(ctx).get(), request, &response);
  if (!s.ok()) return Fail(ctx, s);
  if (ctx.json) {
    PrintJson(ctx, response);
  } else {
    *ctx.out << "retired " << response.device_id() << " at " << FormatTime(response.retired_unix_ms()) << ": "
             << response.retired_reason() << "\n";
  }
  return 0;
}

int Unlock(const Context& ctx, const std::string& device_id, const std::string& reason, const std::string& by) {
  auto stub = RegistryService::NewStub(ctx.channel);
  rollertrace::v1::UnlockRequest request;
  request.set_device_id(device_id);
  request.set_reason(reason);
  request.set_by(by);
  rollertrace::v1::Device response;
  grpc::Status s = stub->Unlock(Call(ctx).get(), request, &response);
  if (!s.ok()) return Fail(ctx, s);
  if (ctx.json) {
    PrintJson(ctx, response);
  } else {
    *ctx.out << "unlocked " << response.device_id() << " (now " << LifecycleName(response.lifecycle()) << ") by "
             << by << ": " << reason << "\n";
  }
  return 0;
}

bool ParseCycleName(const std::string& text, CycleName* out) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return false;
  const std::string number = text.substr(colon + 1);
  if (number.find_first_not_of("0123456789") != std::string::npos || number.size() > 18) return false;
  out->steriliser_id = text.substr(0, colon);
  out->number = std::stoull(number);
  return out->number > 0;
}


int Cycle(const Context& ctx, const CycleName& cycle) {
  auto stub = ComplianceService::NewStub(ctx.channel);
  rollertrace::v1::CycleRequest request;
  request.set_steriliser_id(cycle.steriliser_id);
  request.set_cycle_number(cycle.number);
  rollertrace::v1::CycleRecord response;
  grpc::Status s = stub->GetCycle(Call(ctx).get(), request, &response);
  if (!s.ok()) return Fail(ctx, s);
  if (ctx.json) {
    PrintJson(ctx, response);
    return 0;
  }
  *ctx.out << CycleLine(response) << "\n";
  *ctx.out << "load: " << LoadList(response.cycle()) << "; loaded by " << response.cycle().loaded_by()
           << ", released by " << response.cycle().released_by() << "\n";
  return 0;
}

int BiologicalIndicator(const Context& ctx, const CycleName& cycle, bool pass, const std::string& by) {
  auto stub = ComplianceService::NewStub(ctx.channel);
  rollertrace::v1::BiologicalIndicatorRequest request;
  request.set_steriliser_id(cycle.steriliser_id);
  request.set_cycle_number(cycle.number);
  request.set_result(pass ? rollertrace::v1::INDICATOR_PASS : rollertrace::v1::INDICATOR_FAIL);
  request.set_recorded_by(by);
  rollertrace::v1::BiologicalIndicatorResponse response;
  grpc::Status s = stub->RecordBiologicalIndicator(Call(ctx).get(), request, &response);
  if (!s.ok()) return Fail(ctx, s);
  if (ctx.json) {
    PrintJson(ctx, response);
    return 0;
  }
  *ctx.out << "recorded biological indicator " << (pass ? "pass" : "FAIL") << " for " << cycle.steriliser_id << ":"
           << cycle.number << "\n";
  if (response.has_recall()) {
    *ctx.out << "RECALL started: " << response.recall().suspect_cycles_size() << " suspect loads, "
             << response.recall().sessions_at_risk_size() << " sessions at risk, "
             << response.recall().patients_size() << " patients to follow up, "
             << response.recall().locked_rollers_size() << " rollers locked; see rollerctl recall "
             << cycle.steriliser_id << ":" << cycle.number << "\n";
  }
  return 0;
}

int Recall(const Context& ctx, const CycleName& cycle) {
  auto stub = ComplianceService::NewStub(ctx.channel);
  rollertrace::v1::RecallRequest request;
  request.set_steriliser_id(cycle.steriliser_id);
  request.set_cycle_number(cycle.number);
  rollertrace::v1::RecallReport r;
  grpc::Status s = stub->Recall(Call(ctx).get(), request, &r);
  if (!s.ok()) return Fail(ctx, s);
  if (ctx.json) {
    PrintJson(ctx, r);
    return 0;
  }
  auto& out = *ctx.out;
  out << "Recall of " << r.steriliser_id() << ":" << r.failed_cycle() << " (biological indicator failed), started "
      << FormatTime(r.recalled_unix_ms()) << "\n";
  out << "Reaches back to "
      << (r.last_negative_cycle() ? util::Cat("the last negative indicator, cycle ", r.last_negative_cycle())
                                  : std::string("the steriliser's first recorded cycle (no negative indicator before)"))
      << "\n\nSuspect loads:\n";
  for (const auto& c : r.suspect_cycles()) {
    out << "  " << CycleLine(c) << "\n    load: " << LoadList(c.cycle()) << "\n";
  }
  Table sessions({"ROLLER", "SESSION", "STARTED", "PATIENT", "OPERATOR", "CYCLE"});
  for (const auto& x : r.sessions_at_risk()) {
    sessions.Add({x.device_id(), x.session_id(), FormatTime(x.start_unix_ms()), ShortPseudonym(x.patient_pseudonym()),
                  x.operator_id(), util::Cat(x.cycle().steriliser_id(), ":", x.cycle().cycle_number())});
  }
  out << "\nSessions at risk:\n";
  sessions.Print(out);
  out << "\nPatients to follow up (" << r.patients_size() << "):\n";
  for (const auto& p : r.patients()) out << "  " << p << "\n";
  out << "\nRollers locked (" << r.locked_rollers_size() << "):";
  for (const auto& x : r.locked_rollers()) out << " " << x;
  out << "\n";
  return 0;
}

int Violations(const Context& ctx, const rollertrace::v1::ViolationsRequest& filter) {
  auto stub = ComplianceService::NewStub(ctx.channel);
  // Every page, one after another.
  rollertrace::v1::ViolationsResponse response;
  rollertrace::v1::ViolationsRequest page = filter;
  do {
    rollertrace::v1::ViolationsResponse part;
    grpc::Status s = stub->ListViolations(Call(ctx).get(), page, &part);
    if (!s.ok()) return Fail(ctx, s);
    for (auto& v : *part.mutable_violations()) *response.add_violations() = std::move(v);
    page.set_page_token(part.next_page_token());
  } while (!page.page_token().empty());
  if (ctx.json) {
    PrintJson(ctx, response);
    return 0;
  }
  Table table({"DETECTED", "ROLLER", "SESSION", "SESSION START", "RULE", "SEVERITY", "LOCKED", "OFFLINE", "DETAIL"});
  for (const auto& v : response.violations()) {
    table.Add({FormatTime(v.detected_unix_ms()), v.device_id(), v.session_id(), FormatTime(v.session_start_unix_ms()),
               v.rule(), SeverityName(v.severity()), v.locked() ? "yes" : "no", v.offline_decision() ? "yes" : "no",
               v.detail()});
  }
  table.Print(*ctx.out);
  *ctx.out << table.size() << " violations\n";
  return 0;
}

int Verify(const Context& ctx, const std::string& device_id) {
  auto stub = ComplianceService::NewStub(ctx.channel);
  rollertrace::v1::VerifyRequest request;
  request.set_device_id(device_id);
  rollertrace::v1::VerifyReport r;
  auto call = Call(ctx);
  call->set_deadline(std::chrono::system_clock::now() + std::max(ctx.timeout, std::chrono::seconds(600)));
  grpc::Status s = stub->Verify(call.get(), request, &r);
  if (!s.ok()) return Fail(ctx, s);
  if (ctx.json) {
    PrintJson(ctx, r);
    return r.intact() ? 0 : 5;
  }
  if (r.intact()) {
    *ctx.out << "intact: " << r.records_checked() << " records of " << r.devices_checked()
             << " devices recomputed (events and ingestd's own records), every chain unbroken\n";
    return 0;
  }
  *ctx.out << "BROKEN: " << r.breaks_size() << " broken chain(s) among " << r.devices_checked() << " devices\n";
  for (const auto& b : r.breaks()) {
    if (b.chain() == "state") {
      *ctx.out << "  " << b.device_id() << ": " << b.problem() << " — " << b.detail() << "\n";
      continue;
    }
    if (b.chain() == "records") {
      *ctx.out << "  " << b.device_id() << ": first broken record " << b.record() << ", record-chain position "
               << b.chain_index() << ": " << b.problem() << " — " << b.detail() << "\n";
      continue;
    }
    *ctx.out << "  " << b.device_id() << ": first broken event "
             << (b.sequence() ? util::Cat("sequence ", b.sequence()) : std::string("(at the end of the chain)"))
             << ", chain position " << b.chain_index() << ": " << b.problem() << " — " << b.detail() << "\n";
  }
  return 5;
}

int Authorize(const Context& ctx, const rollertrace::v1::AuthorizeRequest& request) {
  auto stub = ComplianceService::NewStub(ctx.channel);
  rollertrace::v1::Decision d;
  grpc::Status s = stub->AuthorizeUse(Call(ctx).get(), request, &d);
  if (!s.ok()) return Fail(ctx, s);
  if (ctx.json) {
    PrintJson(ctx, d);
    return d.allowed() ? 0 : 4;
  }
  *ctx.out << (d.allowed() ? "ALLOW" : "DENY") << " " << d.device_id() << " (decision " << d.decision_id() << ")\n";
  for (const auto& h : d.hits()) *ctx.out << "  " << SeverityName(h.severity()) << " " << h.rule() << ": " << h.detail() << "\n";
  return d.allowed() ? 0 : 4;
}

}  // namespace rollertrace::rollerctl
