#include "codec/report_lists.h"

namespace rollertrace::codec {

bool ListShare::Take(const google::protobuf::Message& element) {
  // The element's bytes and its tag and length on the wire.
  const size_t bytes = element.ByteSizeLong() + 6;
  if (omitted_ > 0 || bytes > left_) {
    ++omitted_;  // the list stays in order: nothing after a cut gets in
    return false;
  }
  left_ -= bytes;
  return true;
}

namespace {

template <typename T>
uint32_t Fit(google::protobuf::RepeatedPtrField<T>* list, size_t bytes) {
  ListShare share(bytes);
  int kept = 0;
  while (kept < list->size() && share.Take(list->Get(kept))) ++kept;
  const uint32_t cut = static_cast<uint32_t>(list->size() - kept);
  list->DeleteSubrange(kept, list->size() - kept);
  return cut;
}

}  // namespace

void FitReportLists(rollertrace::v1::PeriodReport* r) {
  using B = ReportListBytes;
  auto* o = r->mutable_omitted();
  o->set_violations(o->violations() + Fit(r->mutable_violation_list(), B::kViolations));
  o->set_cycles(o->cycles() + Fit(r->mutable_cycle_list(), B::kCycles));
  o->set_pending_indicators(o->pending_indicators() + Fit(r->mutable_pending_indicators(), B::kPendingIndicators));
  o->set_locked_rollers(o->locked_rollers() + Fit(r->mutable_locked_rollers(), B::kLockedRollers));
  o->set_retired_rollers(o->retired_rollers() + Fit(r->mutable_retired_rollers(), B::kRetiredRollers));
  o->set_recalls(o->recalls() + Fit(r->mutable_recalls(), B::kRecalls));
  o->set_findings(o->findings() + Fit(r->mutable_findings(), B::kFindings));
}

void FitTrailLists(rollertrace::v1::RollerTrail* t) {
  using B = TrailListBytes;
  auto* o = t->mutable_omitted();
  o->set_log(o->log() + Fit(t->mutable_log(), B::kOther));
  o->set_cycles(o->cycles() + Fit(t->mutable_cycles(), B::kOther));
  o->set_sessions(o->sessions() + Fit(t->mutable_sessions(), B::kSessions));
  o->set_violations(o->violations() + Fit(t->mutable_violations(), B::kOther));
  o->set_findings(o->findings() + Fit(t->mutable_findings(), B::kOther));
  if (Fit(t->mutable_events(), B::kEvents) > 0) {
    // History goes on after the last event kept.
    t->set_next_event_sequence(t->events_size() > 0 ? t->events(t->events_size() - 1).event().sequence() + 1 : 1);
  }
}

void FitTrailLists(rollertrace::v1::PatientTrail* t) {
  using B = TrailListBytes;
  auto* o = t->mutable_omitted();
  o->set_sessions(o->sessions() + Fit(t->mutable_sessions(), 2 * B::kSessions));
  o->set_cycles(o->cycles() + Fit(t->mutable_cycles(), B::kSessions));
}

void FitTrailLists(rollertrace::v1::CycleTrail* t) {
  using B = TrailListBytes;
  auto* o = t->mutable_omitted();
  o->set_sessions(o->sessions() + Fit(t->mutable_sessions(), 2 * B::kSessions));
  o->set_findings(o->findings() + Fit(t->mutable_findings(), B::kOther));
}

void FitHistoryPage(rollertrace::v1::HistoryResponse* page) {
  const uint64_t first = page->events_size() > 0 ? page->events(0).event().sequence() : 0;
  if (Fit(page->mutable_events(), TrailListBytes::kHistory) > 0) {
    page->set_next_sequence(page->events_size() > 0 ? page->events(page->events_size() - 1).event().sequence() + 1
                                                    : first + 1);
  }
}

}  // namespace rollertrace::codec
