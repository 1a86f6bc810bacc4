// Ingest: a device's batch of events. Each new (device, sequence) is stored,
// chained, applied to its device's state (gaps, counters) and to the rules
// (apply_domain.cc); a repeated one is acknowledged again but not stored.
#include <algorithm>
#include <set>

#include "codec/codec.h"
#include "store/apply_internal.h"
#include "store/chain.h"
#include "util/cat.h"

namespace rollertrace::store::apply {
namespace {

using rollertrace::v1::DeviceAck;
using rollertrace::v1::DeviceRecord;
using rollertrace::v1::DeviceState;
using rollertrace::v1::Event;
using rollertrace::v1::Gap;
using rollertrace::v1::SequenceRange;

// Removes `sequence` from the missing ranges of `gap`; true if it was missing.
bool FillGap(Gap* gap, uint64_t sequence) {
  auto* missing = gap->mutable_missing();
  for (int i = 0; i < missing->size(); ++i) {
    SequenceRange& r = (*missing)[i];
    if (sequence < r.first() || sequence > r.last()) continue;
    if (r.first() == r.last()) {
      missing->DeleteSubrange(i, 1);
    } else if (sequence == r.first()) {
      r.set_first(sequence + 1);
    } else if (sequence == r.last()) {
      r.set_last(sequence - 1);
    } else {
      SequenceRange tail;
      tail.set_first(sequence + 1);
      tail.set_last(r.last());
      r.set_last(sequence - 1);
      missing->Add(std::move(tail));
      std::sort(missing->begin(), missing->end(),
                [](const SequenceRange& a, const SequenceRange& b) { return a.first() < b.first(); });
    }
    return true;
  }
  return false;
}

bool IsMissing(const DeviceState& state, uint64_t sequence) {
  for (const Gap& gap : state.open_gaps()) {
    for (const SequenceRange& r : gap.missing()) {
      if (sequence >= r.first() && sequence <= r.last()) return true;
    }
  }
  return false;
}

// Applies a new (not duplicate) event to the device's state. Gaps that close
// are appended to `closed`.
void ApplyEvent(const Event& event, int64_t now, DeviceState* state, std::vector<Gap>* closed, uint64_t* opened) {
  const uint64_t seq = event.sequence();
  if (seq > state->highest_sequence()) {
    if (seq > state->highest_sequence() + 1) {
      Gap* gap = state->add_open_gaps();
      gap->set_device_id(event.device_id());
      gap->set_first(state->highest_sequence() + 1);
      gap->set_last(seq - 1);
      SequenceRange* r = gap->add_missing();
      r->set_first(gap->first());
      r->set_last(gap->last());
      gap->set_opened_unix_ms(now);
      state->set_gaps_opened(state->gaps_opened() + 1);
      ++*opened;
    }
    state->set_highest_sequence(seq);
  } else {
    auto* gaps = state->mutable_open_gaps();
    for (int i = 0; i < gaps->size(); ++i) {
      if (!FillGap(&(*gaps)[i], seq)) continue;
      if ((*gaps)[i].missing_size() == 0) {
        (*gaps)[i].set_closed_unix_ms(now);
        closed->push_back((*gaps)[i]);
        gaps->DeleteSubrange(i, 1);
      }
      break;
    }
  }
  uint64_t contiguous = state->highest_sequence();
  for (const Gap& gap : state->open_gaps()) {
    if (gap.missing_size() > 0) contiguous = std::min(contiguous, gap.missing(0).first() - 1);
  }
  state->set_contiguous_through(contiguous);
  state->set_events_stored(state->events_stored() + 1);
  state->set_last_receive_unix_ms(now);
  state->set_last_device_time_unix_ms(std::max(state->last_device_time_unix_ms(), event.device_time_unix_ms()));
  if (event.has_usage_sample()) {
    state->set_total_revolutions(state->total_revolutions() + event.usage_sample().revolutions());
  } else if (event.has_session_started()) {
    state->set_sessions_started(state->sessions_started() + 1);
  }
}

void AddRanges(std::vector<uint64_t> sequences, DeviceAck* ack) {
  std::sort(sequences.begin(), sequences.end());
  sequences.erase(std::unique(sequences.begin(), sequences.end()), sequences.end());
  for (uint64_t seq : sequences) {
    if (ack->committed_size() > 0 && ack->committed(ack->committed_size() - 1).last() + 1 == seq) {
      ack->mutable_committed(ack->committed_size() - 1)->set_last(seq);
    } else {
      SequenceRange* r = ack->add_committed();
      r->set_first(seq);
      r->set_last(seq);
    }
  }
}

void Reject(const Event& event, std::string_view reason, std::string detail, CommandResult* result) {
  auto& r = result->rejections.emplace_back();
  r.set_device_id(event.device_id());
  r.set_sequence(event.sequence());
  r.set_reason(std::string(reason));
  r.set_detail(std::move(detail));
}

// Why `event` of `record` is refused, or "" when it is not.
std::pair<const char*, std::string> Refusal(const Event& event, const DeviceRecord& record) {
  if (event.has_session_started() && !event.session_started().patient_ref().empty()) {
    return {"unpseudonymised", "a raw patient reference never reaches the store"};
  }
  if (event.has_session_started() && event.session_started().patient_pseudonym().empty()) {
    return {"no_patient", "a session start needs the patient's reference"};
  }
  const bool is_cycle = event.has_sterilisation_cycle();
  const bool is_steriliser = record.device().kind() == rollertrace::v1::DEVICE_KIND_STERILISER;
  if (is_cycle != is_steriliser) {
    return {"wrong_device_kind", util::Cat("device ", event.device_id(), " is registered as a ",
                                           is_steriliser ? "steriliser" : "roller", " and cannot send ",
                                           codec::EventType(event))};
  }
  return {nullptr, {}};
}

}  // namespace

absl::Status Ingest(Context& c, const rollertrace::v1::EventBatch& batch) {
  struct Seen {
    DeviceRecord* record;
    std::vector<uint64_t> committed;
    std::vector<Gap> closed_gaps;
  };
  std::map<std::string, Seen> seen;  // by device id: acks in id order
  std::set<std::string> unknown;
  std::string key;
  std::string value;
  for (const Event& event : batch.events()) {
    const std::string& id = event.device_id();
    auto it = seen.find(id);
    if (it == seen.end()) {
      if (unknown.count(id)) {
        Reject(event, "unknown_device", util::Cat("device ", id, " is not registered"), c.result);
        continue;
      }
      absl::StatusOr<DeviceRecord*> record = c.txn.Device(id);
      if (!record.ok()) return record.status();
      if (*record == nullptr) {
        unknown.insert(id);
        Reject(event, "unknown_device", util::Cat("device ", id, " is not registered"), c.result);
        continue;
      }
      it = seen.emplace(id, Seen{*record, {}, {}}).first;
    }
    Seen& s = it->second;
    if (auto [reason, detail] = Refusal(event, *s.record); reason != nullptr) {
      Reject(event, reason, std::move(detail), c.result);
      continue;
    }
    DeviceState* state = s.record->mutable_state();
    if (event.sequence() > state->highest_sequence() + c.policy.max_sequence_jump) {
      // It would open a gap no device can fill: refused, not stored, not acked.
      Reject(event, "sequence_jump",
             util::Cat("sequence ", event.sequence(), " is more than ", c.policy.max_sequence_jump,
                       " ahead of the highest stored (", state->highest_sequence(), ")"),
             c.result);
      continue;
    }
    s.committed.push_back(event.sequence());
    key = DeviceSequenceKey(id, event.sequence());
    if (event.sequence() <= state->highest_sequence() && !IsMissing(*state, event.sequence())) {
      // A repeat. The same content is a resend; other content would rewrite
      // the device's history: refused, the stored event kept, and the attempt
      // kept as a finding (the sequence is acked: the store holds it).
      absl::StatusOr<std::optional<std::string>> stored = c.txn.StoredEventBytes(event, key);
      if (!stored.ok()) return stored.status();
      const std::string received = event.SerializeAsString();
      if (*stored && **stored != received) {
        ++c.result->conflicts;
        Reject(event, "conflicting_resend",
               util::Cat("sequence ", event.sequence(), " of ", id, " was stored with other content; the stored event is kept"),
               c.result);
        rollertrace::v1::Finding f;
        f.set_device_id(id);
        f.set_sequence(event.sequence());
        f.set_kind(kFindingEventConflict);
        f.set_detail(util::Cat("sequence ", event.sequence(), " sent again with other content (",
                               codec::EventType(event), "); the stored event is kept"));
        f.set_stored_hash(Sha256(**stored));
        f.set_received_hash(Sha256(received));
        RecordFinding(c, s.record, std::move(f));
        continue;
      }
      ++c.result->duplicates;
      state->set_duplicates(state->duplicates() + 1);
      continue;
    }
    EncodeStoredEvent(event, c.now, state, &value);
    c.txn.PutEvent(key, value, &event);
    if (absl::Status d = ApplyDomain(c, event, *s.record); !d.ok()) return d;
    ApplyEvent(event, c.now, state, &s.closed_gaps, &c.result->gaps_opened);
    ++c.result->stored_by_type[codec::EventType(event)];
  }
  for (auto& [id, s] : seen) {
    for (const Gap& gap : s.closed_gaps) {
      c.txn.PutRecord(s.record, Family::kGaps, DeviceSequenceKey(id, gap.first()), gap.SerializeAsString(), c.now);
    }
    if (s.committed.empty()) continue;
    DeviceAck& ack = c.result->acks.emplace_back();
    ack.set_device_id(id);
    ack.set_contiguous_through(s.record->state().contiguous_through());
    AddRanges(std::move(s.committed), &ack);
  }
  return absl::OkStatus();
}

}  // namespace rollertrace::store::apply
