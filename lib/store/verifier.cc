#include "store/verifier.h"

#include <rocksdb/db.h>

#include <algorithm>
#include <map>

#include "store/chain.h"
#include "store/keys.h"
#include "store/signer.h"
#include "util/cat.h"
#include "util/hex.h"

namespace rollertrace::store {
namespace {

rollertrace::v1::ChainBreak* Break(rollertrace::v1::VerifyReport* report, const std::string& device,
                                   uint64_t sequence, uint64_t index, const char* problem, std::string detail) {
  auto* b = report->add_breaks();
  b->set_device_id(device);
  b->set_sequence(sequence);
  b->set_chain_index(index);
  b->set_problem(problem);
  b->set_detail(std::move(detail));
  b->set_chain("events");
  return b;
}

// A public key as a person can compare it: its first bytes in hex.
std::string KeyName(std::string_view key) {
  return "key " + util::Hex(key.substr(0, 8)) + "…";
}

// A record of ingestd's named for a person, from its column family and key;
// `sequence` gets the device sequence the record is about, when it has one.
std::string DescribeRecord(std::string_view kind, std::string_view key, uint64_t* sequence) {
  *sequence = 0;
  if (kind == "devices") return util::Cat("the definition of device ", key);
  if (kind == "violations") {
    if (auto parts = DecodeTimeKey(key)) {
      *sequence = parts->sequence;
      return util::Cat("violation ", parts->suffix, " at sequence ", parts->sequence);
    }
  }
  if (kind == "decisions" || kind == "device_log") {
    if (auto k = DecodeTimedKey(key)) {
      return util::Cat(kind == "decisions" ? "decision" : "device log entry", " made at unix ms ", k->unix_ms);
    }
  }
  if (kind == "findings") {
    if (auto k = DecodeFindingKey(key)) {
      *sequence = k->sequence;
      return util::Cat("finding ", k->kind, " at sequence ", k->sequence);
    }
  }
  if (auto k = DecodeDeviceSequenceKey(key)) {
    if (kind == "sessions") *sequence = k->sequence;
    if (kind == "sessions") return util::Cat("session starting at sequence ", k->sequence);
    if (kind == "cycles") return util::Cat("cycle ", k->device_id, "#", k->sequence);
    if (kind == "recalls") return util::Cat("recall of cycle ", k->device_id, "#", k->sequence);
    if (kind == "gaps") return util::Cat("gap from sequence ", k->sequence);

  }
  return util::Cat("a ", kind, " record");
}

// What of `state` disagrees with the device's events (in commit order), or "".
std::string StateMismatch(const rollertrace::v1::DeviceState& state,
                          const std::map<uint64_t, std::pair<uint64_t, rollertrace::v1::StoredEvent>>& chain) {
  uint64_t highest = 0, revolutions = 0;
  uint32_t sessions = 0;
  double wear = 0;
  std::string patient;
  for (const auto& [index, entry] : chain) {
    const auto& e = entry.second.event();
    highest = std::max(highest, e.sequence());
    if (e.has_usage_sample()) revolutions += e.usage_sample().revolutions();
    if (e.has_wear_measured()) wear = std::max(wear, e.wear_measured().wear_fraction());
    if (e.has_session_started()) {
      ++sessions;
      if (patient.empty()) patient = e.session_started().patient_pseudonym();
    }
  }
  auto differs = [](const char* what, auto on_record, auto from_events) {
    return util::Cat(what, " ", on_record, " on record, ", from_events, " from the events");
  };
  if (state.events_stored() != chain.size()) return differs("events stored", state.events_stored(), chain.size());
  if (state.highest_sequence() != highest) return differs("highest sequence", state.highest_sequence(), highest);
  if (state.total_revolutions() != revolutions) {
    return differs("total revolutions (needle wear)", state.total_revolutions(), revolutions);
  }
  if (state.sessions_started() != sessions) return differs("sessions started", state.sessions_started(), sessions);
  if (state.roller().measured_wear() != wear) return differs("measured wear", state.roller().measured_wear(), wear);
  if (state.roller().bound_patient() != patient) {
    return util::Cat("the roller is bound to patient ", state.roller().bound_patient().substr(0, 18),
                     " on record but its first session was with ", patient.substr(0, 18));
  }
  return {};
}

// Recomputes one device's record chain; true when intact.
bool VerifyRecords(const ReadView& view, const rollertrace::v1::DeviceRecord& record,
                   const rollertrace::v1::ChainHead* signed_head, std::map<std::string, std::string>* chained_keys,
                   rollertrace::v1::VerifyReport* report);

absl::StatusOr<std::vector<rollertrace::v1::DeviceRecord>> AllDevices(const ReadView& view) {
  std::vector<rollertrace::v1::DeviceRecord> out;
  absl::Status s = view.ScanRecords<rollertrace::v1::DeviceRecord>(
      Family::kDevices, {}, [&](std::string_view, rollertrace::v1::DeviceRecord& d) -> absl::StatusOr<bool> {
        out.push_back(std::move(d));
        return true;
      });
  if (!s.ok()) return s;
  return out;
}

}  // namespace

absl::StatusOr<rollertrace::v1::Checkpoint> Verifier::MakeCheckpoint(const Signer& signer, int64_t now) const {
  absl::StatusOr<std::vector<rollertrace::v1::DeviceRecord>> devices = AllDevices(SnapshotView(db_));
  if (!devices.ok()) return devices.status();
  rollertrace::v1::Checkpoint cp;
  cp.set_unix_ms(now);
  for (const auto& d : *devices) {
    auto* head = cp.add_heads();
    head->set_device_id(d.device().device_id());
    head->set_length(d.state().chain_length());
    head->set_hash(d.state().chain_head());
    head->set_records_length(d.state().records_length());
    head->set_records_hash(d.state().records_head());
  }
  cp.set_public_key(signer.public_key());
  cp.set_signature(signer.Sign(cp.SerializeAsString()));
  return cp;
}

absl::StatusOr<rollertrace::v1::VerifyReport> Verifier::Verify(std::string_view only,
                                                               std::string_view trusted_public_key) const {
  SnapshotView view(db_);
  rollertrace::v1::VerifyReport report;
  // The latest checkpoint, when a trusted key is given.
  std::map<std::string, rollertrace::v1::ChainHead> signed_heads;
  if (!trusted_public_key.empty()) {
    std::unique_ptr<rocksdb::Iterator> it = (view.Iterate(Family::kCheckpoints));
    it->SeekToLast();
    if (it->Valid()) {
      rollertrace::v1::Checkpoint cp;
      bool good = cp.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()));
      std::string why = "the latest checkpoint is not readable any more: checkpoints were tampered with";
      if (good) {
        rollertrace::v1::Checkpoint unsigned_cp = cp;
        unsigned_cp.clear_signature();
        const std::string bytes = unsigned_cp.SerializeAsString();
        if (cp.public_key() != trusted_public_key && Signer::Verify(cp.public_key(), bytes, cp.signature())) {
          // Intact, but someone else's: say so rather than cry tampering.
          good = false;
          why = util::Cat("the latest checkpoint is signed by another key (", KeyName(cp.public_key()),
                          ") than the one trusted here (", KeyName(trusted_public_key),
                          "): the store was signed by another ingestd, or --signing-key changed");
        } else if (!Signer::Verify(trusted_public_key, bytes, cp.signature())) {
          good = false;
          why = "the latest checkpoint's signature does not match this ingestd's key: checkpoints were tampered with";
        }
      }
      if (!good) {
        Break(&report, "(checkpoint)", 0, 0, "changed", why);
      } else {
        for (const auto& h : cp.heads()) signed_heads[h.device_id()] = h;
      }
    }
  }
  std::vector<rollertrace::v1::DeviceRecord> devices;
  if (only.empty()) {
    absl::StatusOr<std::vector<rollertrace::v1::DeviceRecord>> all = AllDevices(view);
    if (!all.ok()) return all.status();
    devices = std::move(*all);
  } else {
    rollertrace::v1::DeviceRecord one;
    absl::StatusOr<bool> found = view.Read(Family::kDevices, only, &one);
    if (!found.ok()) return found.status();
    if (!*found) return absl::NotFoundError(util::Cat("device ", only, " is not registered"));
    devices.push_back(std::move(one));
  }
  // Every key some record chain vouches for, by "kind\0key" (for the scan for records no chain holds).
  std::map<std::string, std::string> chained_keys;
  for (const auto& record : devices) {
    const std::string& id = record.device().device_id();
    report.set_devices_checked(report.devices_checked() + 1);
    auto signed_head = signed_heads.find(id);
    VerifyRecords(view, record, signed_head == signed_heads.end() ? nullptr : &signed_head->second, &chained_keys, &report);
    // chain index -> (sequence under which it is stored, the record)
    std::map<uint64_t, std::pair<uint64_t, rollertrace::v1::StoredEvent>> chain;
    bool broken = false;
    const std::string prefix = DevicePrefix(id);
    std::unique_ptr<rocksdb::Iterator> it = (view.Iterate(Family::kEvents));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix) && !broken; it->Next()) {
      auto key = DecodeDeviceSequenceKey(std::string_view(it->key().data(), it->key().size()));
      rollertrace::v1::StoredEvent stored;
      report.set_records_checked(report.records_checked() + 1);
      if (!key || !stored.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        Break(&report, id, key ? key->sequence : 0, 0, "changed", "the record is not a readable event any more");
        broken = true;
        break;
      }
      if (stored.event().sequence() != key->sequence || stored.event().device_id() != id) {
        Break(&report, id, key->sequence, stored.chain_index(), "reordered",
              util::Cat("the record stored as sequence ", key->sequence, " holds sequence ", stored.event().sequence(),
                        " of ", stored.event().device_id()));
        broken = true;
        break;
      }
      if (stored.chain_index() == 0) {
        Break(&report, id, key->sequence, 0, "unchained", "the record is not part of the device's chain");
        broken = true;
        break;
      }
      if (ChainHash(stored) != stored.hash()) {
        Break(&report, id, key->sequence, stored.chain_index(), "changed",
              util::Cat("sequence ", key->sequence, " no longer matches its hash"));
        broken = true;
        break;
      }
      const uint64_t index = stored.chain_index();
      if (!chain.emplace(index, std::make_pair(key->sequence, std::move(stored))).second) {
        Break(&report, id, key->sequence, index, "changed",
              util::Cat("sequence ", key->sequence, " claims a chain position another record holds"));
        broken = true;
        break;
      }
    }
    if (!broken && !it->status().ok()) {
      return absl::InternalError(util::Cat("read the events of ", id, ": ", it->status().ToString()));
    }
    if (broken) continue;
    // Walk the chain in commit order: every link present and pointing at its predecessor.
    std::string prev;
    uint64_t expected = 1;
    for (const auto& [index, entry] : chain) {
      const auto& [sequence, stored] = entry;
      if (index != expected) {
        Break(&report, id, sequence, expected, "deleted",
              util::Cat("chain position ", expected, " is missing: a record committed before sequence ", sequence,
                        " was removed"));
        broken = true;
        break;
      }
      if (stored.prev_hash() != prev) {
        Break(&report, id, sequence, index, "changed",
              util::Cat("sequence ", sequence, " does not follow the record before it in the chain"));
        broken = true;
        break;
      }
      prev = stored.hash();
      ++expected;
    }
    if (broken) continue;
    if (auto h = signed_heads.find(id); h != signed_heads.end() && h->second.length() > 0) {
      auto at = chain.find(h->second.length());
      if (at == chain.end() || at->second.second.hash() != h->second.hash()) {
        Break(&report, id, at == chain.end() ? 0 : at->second.first, h->second.length(), "deleted",
              util::Cat("the signed checkpoint saw ", h->second.length(),
                        " records in this chain; the chain on disk no longer holds that head"));
        continue;
      }
    }
    if (expected - 1 != record.state().chain_length() || prev != record.state().chain_head()) {
      Break(&report, id, 0, expected, "deleted",
            util::Cat("the chain ends at position ", expected - 1, " but ", record.state().chain_length(),
                      " records were committed: the latest were removed"));
      continue;
    }
    // The state the rules read must follow from the (intact) events.
    if (std::string mismatch = StateMismatch(record.state(), chain); !mismatch.empty()) {
      Break(&report, id, 0, 0, "changed", util::Cat("the device's state no longer follows from its events: ", mismatch))
          ->set_chain("state");
    }
  }
  if (only.empty()) {
    // Records that no chain vouches for were written around ingestd.
    for (Family family : {Family::kSessions, Family::kViolations, Family::kDecisions, Family::kDeviceLog,
                          Family::kCycles, Family::kRecalls, Family::kGaps, Family::kFindings}) {
      const std::string kind(KindOf(family));
      std::unique_ptr<rocksdb::Iterator> it = view.Iterate(family);
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        const std::string key = it->key().ToString();
        if (chained_keys.count(util::Cat(kind, std::string(1, '\0'), key))) continue;
        uint64_t sequence = 0;
        std::string what = DescribeRecord(kind, key, &sequence);
        auto* b = Break(&report, "(unknown)", sequence, 0, "unchained",
                        util::Cat(what, " is in the store but in no device's record chain: it was added around ingestd"));
        b->set_chain("records");
        b->set_record(what);
        if (family == Family::kViolations) {
          if (auto parts = DecodeTimeKey(key)) b->set_device_id(parts->device_id);
        } else if (auto k = DecodeDeviceSequenceKey(key)) {
          b->set_device_id(k->device_id);
        } else if (auto owner = KeyOwner(key)) {
          b->set_device_id(*owner);
        }
        break;  // the first of each kind is enough to name
      }
    }
  }
  report.set_intact(report.breaks_size() == 0);
  return report;
}

}  // namespace rollertrace::store

namespace rollertrace::store {
namespace {

bool VerifyRecords(const ReadView& view, const rollertrace::v1::DeviceRecord& record,
                               const rollertrace::v1::ChainHead* signed_head,
                               std::map<std::string, std::string>* chained_keys,
                               rollertrace::v1::VerifyReport* report) {
  const std::string& id = record.device().device_id();
  auto fail = [&](uint64_t index, const char* problem, std::string_view kind, std::string_view key,
                  std::string detail) {
    uint64_t sequence = 0;
    std::string what = kind.empty() ? std::string("a record-chain entry") : DescribeRecord(kind, key, &sequence);
    auto* b = Break(report, id, sequence, index, problem, util::Cat(what, ": ", detail));
    b->set_chain("records");
    b->set_record(what);
    return false;
  };
  // "kind\0key" -> (content hash the chain holds last, index of that entry)
  std::map<std::string, std::pair<std::string, uint64_t>> latest;
  std::string prev;
  uint64_t expected = 1;
  bool intact = true;
  const std::string prefix = DevicePrefix(id);
  std::unique_ptr<rocksdb::Iterator> it = (view.Iterate(Family::kLedger));
  // After the first break the walk goes on only to learn which records the
  // chain names, so that they are not reported again as unchained.
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    auto key = DecodeDeviceSequenceKey(std::string_view(it->key().data(), it->key().size()));
    rollertrace::v1::LedgerEntry entry;
    const bool readable = key && entry.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()));
    if (readable) (*chained_keys)[util::Cat(entry.kind(), std::string(1, '\0'), entry.key())] = id;
    if (!intact) continue;
    report->set_records_checked(report->records_checked() + 1);
    if (!readable) {
      intact = fail(key ? key->sequence : 0, "changed", {}, {}, "the entry is not readable any more");
    } else if (key->sequence != expected || entry.index() != expected) {
      intact = key->sequence > expected
                   ? fail(expected, "deleted", {}, {},
                          util::Cat("record-chain position ", expected, " was removed (the next entry is position ",
                                    key->sequence, ")"))
                   : fail(expected, "reordered", entry.kind(), entry.key(),
                          util::Cat("record-chain position ", expected, " holds entry ", entry.index()));
    } else if (entry.prev_hash() != prev || LedgerHash(entry) != entry.hash()) {
      intact = fail(expected, "changed", entry.kind(), entry.key(),
                    util::Cat("record-chain entry ", expected, " no longer matches its hash"));
    } else {
      latest[util::Cat(entry.kind(), std::string(1, '\0'), entry.key())] = {entry.content_hash(), entry.index()};
      prev = entry.hash();
      ++expected;
    }
  }
  if (intact && !it->status().ok()) {
    return fail(expected, "changed", {}, {}, util::Cat("the record chain cannot be read: ", it->status().ToString()));
  }
  if (!intact) return false;
  const uint64_t length = expected - 1;
  if (signed_head != nullptr && signed_head->records_length() > 0 &&
      (length < signed_head->records_length() ||
       (length == signed_head->records_length() && prev != signed_head->records_hash()))) {
    return fail(signed_head->records_length(), "deleted", {}, {},
                util::Cat("the signed checkpoint saw ", signed_head->records_length(),
                          " entries in this record chain; the chain on disk no longer holds that head"));
  }
  if (length != record.state().records_length() || prev != record.state().records_head()) {
    return fail(expected, "deleted", {}, {},
                util::Cat("the record chain ends at position ", length, " but ", record.state().records_length(),
                          " entries were committed: the latest were removed"));
  }
  // Every record the chain vouches for must still hold what was written.
  std::map<std::string, std::string> key_of_content;
  for (const auto& [kind_key, held] : latest) key_of_content[held.first] = kind_key;
  for (const auto& [kind_key, held] : latest) {
    const size_t nul = kind_key.find('\0');
    const std::string kind = kind_key.substr(0, nul);
    const std::string key = kind_key.substr(nul + 1);
    const std::optional<Family> family = FamilyOfKind(kind);
    if (!family) return fail(held.second, "changed", kind, key, "the chain names an unknown kind of record");
    std::string value;
    absl::StatusOr<bool> found = view.Get(*family, key, &value);
    if (!found.ok()) return fail(held.second, "changed", kind, key, std::string(found.status().message()));
    if (!*found) return fail(held.second, "deleted", kind, key, "the record was removed from the store");
    if (kind == "devices") {
      rollertrace::v1::DeviceRecord stored;
      if (stored.ParseFromString(value)) value = stored.device().SerializeAsString();
    }
    const std::string actual = Sha256(value);
    if (actual == held.first) continue;
    if (auto other = key_of_content.find(actual); other != key_of_content.end()) {
      uint64_t other_sequence = 0;
      return fail(held.second, "reordered", kind, key,
                  util::Cat("it holds the content of ",
                            DescribeRecord(other->second.substr(0, other->second.find('\0')),
                                           other->second.substr(other->second.find('\0') + 1), &other_sequence)));
    }
    return fail(held.second, "changed", kind, key, "the stored content no longer matches its record-chain entry");
  }
  return true;
}

}  // namespace
}  // namespace rollertrace::store
