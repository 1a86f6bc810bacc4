#include "store/event_store.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include <openssl/sha.h>
#include <rocksdb/db.h>
#include <rocksdb/table.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/write_batch.h>

#include "util/cat.h"
#include "codec/codec.h"
#include "rules/registration.h"
#include "store/keys.h"


namespace rollertrace::store {
namespace {

using rollertrace::v1::Device;
using rollertrace::v1::DeviceAck;
using rollertrace::v1::DeviceRecord;
using rollertrace::v1::DeviceState;
using rollertrace::v1::Event;
using rollertrace::v1::EventBatch;
using rollertrace::v1::Gap;
using rollertrace::v1::SequenceRange;

constexpr const char* kColumnFamilies[] = {"default",  "events",         "devices",    "gaps",     "cycles",
                                           "sessions", "cycle_sessions", "violations", "decisions", "recalls",
                                           "patient_sessions", "roller_cycles", "device_violations", "device_log",
                                           "checkpoints", "ledger", "sessions_by_time", "cycles_by_time",
                                           "findings"};
constexpr uint32_t kDefaultPageSize = 1000;

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::InternalError(util::Cat(what, ": ", s.ToString()));
}

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

// SHA-256 of a || b, with OpenSSL's one-shot call (no per-call context or algorithm fetch).
std::string Sha256Of(std::string_view a, std::string_view b) {
  std::string input;
  input.reserve(a.size() + b.size());
  input.append(a).append(b);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  return std::string(reinterpret_cast<char*>(digest), sizeof digest);
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

void Reject(size_t batch_index, const Event& event, std::string_view reason, std::string detail,
            AppendResult* result) {
  auto& rejected = result->rejections.emplace_back();
  rejected.batch_index = batch_index;
  auto& r = rejected.rejection;
  r.set_device_id(event.device_id());
  r.set_sequence(event.sequence());
  r.set_reason(std::string(reason));
  r.set_detail(std::move(detail));
}

}  // namespace

std::string Sha256(std::string_view bytes) { return Sha256Of(bytes, {}); }

std::string LedgerHash(const rollertrace::v1::LedgerEntry& entry) {
  rollertrace::v1::LedgerEntry unhashed = entry;
  unhashed.clear_hash();
  return Sha256Of(entry.prev_hash(), unhashed.SerializeAsString());
}

std::string EventChainHash(std::string_view prev_hash, uint64_t chain_index, int64_t receive_unix_ms,
                           std::string_view event_bytes) {
  std::string head(prev_hash);
  AppendBigEndian64(&head, chain_index);
  AppendBigEndian64(&head, static_cast<uint64_t>(receive_unix_ms));
  return Sha256Of(head, event_bytes);
}

std::string ChainHash(const rollertrace::v1::StoredEvent& stored) {
  return EventChainHash(stored.prev_hash(), stored.chain_index(), stored.receive_unix_ms(),
                        stored.event().SerializeAsString());
}

void EncodeStoredEvent(const Event& event, int64_t receive_unix_ms, DeviceState* state, std::string* out) {
  const std::string event_bytes = event.SerializeAsString();
  const uint64_t index = state->chain_length() + 1;
  std::string hash = EventChainHash(state->chain_head(), index, receive_unix_ms, event_bytes);
  // StoredEvent's wire form without a copy of the event: field 1 (the event)
  // followed by the other fields; protobuf reads the concatenation as one message.
  out->clear();
  out->push_back(static_cast<char>((1 << 3) | 2));
  for (uint64_t n = event_bytes.size(); ; n >>= 7) {
    if (n < 0x80) {
      out->push_back(static_cast<char>(n));
      break;
    }
    out->push_back(static_cast<char>((n & 0x7f) | 0x80));
  }
  out->append(event_bytes);
  rollertrace::v1::StoredEvent rest;
  rest.set_receive_unix_ms(receive_unix_ms);
  rest.set_chain_index(index);
  rest.set_prev_hash(state->chain_head());
  rest.set_hash(hash);
  rest.AppendToString(out);
  state->set_chain_length(index);
  state->set_chain_head(std::move(hash));
}

absl::StatusOr<std::unique_ptr<EventStore>> EventStore::Open(const std::string& path, StoreOptions options) {
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.IncreaseParallelism(2);
  rocksdb::ColumnFamilyOptions cf_options;
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const char* name : kColumnFamilies) descriptors.emplace_back(name, cf_options);
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return absl::UnavailableError(util::Cat("cannot create the store directory ", path, ": ", ec.message()));
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, path, descriptors, &handles, &raw);
  if (!s.ok()) return absl::UnavailableError(util::Cat("cannot open store at ", path, ": ", s.ToString()));
  return std::unique_ptr<EventStore>(new EventStore(std::unique_ptr<rocksdb::DB>(raw), std::move(handles), options));
}

EventStore::EventStore(std::unique_ptr<rocksdb::DB> db, std::vector<rocksdb::ColumnFamilyHandle*> handles,
                       StoreOptions options)
    : db_(std::move(db)),
      handles_(std::move(handles)),
      events_(handles_[1]),
      devices_(handles_[2]),
      gaps_(handles_[3]),
      cycles_(handles_[4]),
      sessions_(handles_[5]),
      cycle_sessions_(handles_[6]),
      violations_(handles_[7]),
      decisions_(handles_[8]),
      recalls_(handles_[9]),
      patient_sessions_(handles_[10]),
      roller_cycles_(handles_[11]),
      device_violations_(handles_[12]),
      device_log_(handles_[13]),
      checkpoints_(handles_[14]),
      ledger_(handles_[15]),
      sessions_by_time_(handles_[16]),
      cycles_by_time_(handles_[17]),
      findings_(handles_[18]),
      options_(std::move(options)) {}

EventStore::~EventStore() {
  for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
  db_->Close();
}

rocksdb::ColumnFamilyHandle* EventStore::Family(std::string_view name) const {
  for (auto* h : handles_) {
    if (h->GetName() == name) return h;
  }
  return nullptr;
}

absl::StatusOr<bool> EventStore::LoadDevice(std::string_view device_id, DeviceRecord* record) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), devices_, rocksdb::Slice(device_id.data(), device_id.size()),
                               &value);
  if (s.IsNotFound()) return false;
  if (!s.ok()) return FromRocks(s, "read device");
  if (!record->ParseFromString(value)) {
    return absl::DataLossError(util::Cat("device record of ", device_id, " is corrupt"));
  }
  return true;
}

absl::StatusOr<bool> EventStore::LoadDeviceForWrite(const std::string& device_id, DeviceRecord* record) {
  if (auto it = write_cache_.find(device_id); it != write_cache_.end()) {
    *record = it->second;
    return true;
  }
  absl::StatusOr<bool> found = LoadDevice(device_id, record);
  if (found.ok() && *found) write_cache_[device_id] = *record;
  return found;
}

void EventStore::LinkRecord(rocksdb::WriteBatch& wb, DeviceRecord* owner, const std::string& kind,
                            const std::string& key, std::string content_hash, int64_t now) {
  DeviceState* state = owner->mutable_state();
  rollertrace::v1::LedgerEntry entry;
  entry.set_index(state->records_length() + 1);
  entry.set_kind(kind);
  entry.set_key(key);
  entry.set_content_hash(std::move(content_hash));
  entry.set_unix_ms(now);
  entry.set_prev_hash(state->records_head());
  entry.set_hash(LedgerHash(entry));
  wb.Put(ledger_, DeviceSequenceKey(owner->device().device_id(), entry.index()), entry.SerializeAsString());
  state->set_records_length(entry.index());
  state->set_records_head(entry.hash());
}

void EventStore::PutRecord(rocksdb::WriteBatch& wb, DeviceRecord* owner, rocksdb::ColumnFamilyHandle* cf,
                           const std::string& key, const std::string& value, int64_t now) {
  wb.Put(cf, key, value);
  LinkRecord(wb, owner, cf->GetName(), key, Sha256(value), now);
}

void EventStore::StageDevice(rocksdb::WriteBatch& wb, DeviceRecord& record, int64_t now) {
  const std::string& id = record.device().device_id();
  // After registration only the lifecycle and the retirement of a definition
  // change (Register is the one writer of the rest): compare those, cheaply.
  auto before = write_cache_.find(id);
  const rollertrace::v1::Device& now_def = record.device();
  if (before == write_cache_.end() || before->second.device().lifecycle() != now_def.lifecycle() ||
      before->second.device().retired_unix_ms() != now_def.retired_unix_ms() ||
      before->second.device().retired_reason() != now_def.retired_reason()) {
    LinkRecord(wb, &record, devices_->GetName(), id, Sha256(now_def.SerializeAsString()), now);
  }
  wb.Put(devices_, id, record.SerializeAsString());
}

absl::StatusOr<AppendResult> EventStore::Append(std::span<const EventBatch* const> batches, int64_t now,
                                                std::span<const RecordedDecision> decisions) {
  std::lock_guard<std::mutex> lock(write_mu_);
  AppendResult result;
  TouchedMap touched;
  std::set<std::string> unknown;
  rocksdb::WriteBatch wb;
  std::string key;
  std::string value;

  for (const RecordedDecision& d : decisions) {
    if (!d.store) continue;
    absl::StatusOr<Touched*> owner = Touch(touched, d.decision.device_id());
    if (!owner.ok()) return owner.status();
    if (*owner != nullptr) StoreDecision(wb, &(*owner)->record, d, now);
  }

  for (size_t b = 0; b < batches.size(); ++b) {
    for (const Event& event : batches[b]->events()) {
      const std::string& id = event.device_id();
      auto it = touched.find(id);
      if (it == touched.end()) {
        if (unknown.count(id)) {
          Reject(b, event, "unknown_device", util::Cat("device ", id, " is not registered"), &result);
          continue;
        }
        Touched t;
        absl::StatusOr<bool> found = LoadDeviceForWrite(id, &t.record);
        if (!found.ok()) return found.status();
        if (!*found) {
          unknown.insert(id);
          Reject(b, event, "unknown_device", util::Cat("device ", id, " is not registered"), &result);
          continue;
        }
        it = touched.emplace(id, std::move(t)).first;
      }
      if (event.has_session_started() && !event.session_started().patient_ref().empty()) {
        Reject(b, event, "unpseudonymised", "a raw patient reference never reaches the store", &result);
        continue;
      }
      if (event.has_session_started() && event.session_started().patient_pseudonym().empty()) {
        Reject(b, event, "no_patient", "a session start needs the patient's reference", &result);
        continue;
      }
      Touched& t = it->second;
      const bool is_cycle = event.has_sterilisation_cycle();
      const bool is_steriliser = t.record.device().kind() == rollertrace::v1::DEVICE_KIND_STERILISER;
      if (is_cycle != is_steriliser) {
        Reject(b, event, "wrong_device_kind",
               util::Cat("device ", id, " is registered as a ", is_steriliser ? "steriliser" : "roller",
                         " and cannot send ", codec::EventType(event)),
               &result);
        continue;
      }
      DeviceState* state = t.record.mutable_state();
      t.committed.push_back(event.sequence());
      if (event.sequence() <= state->highest_sequence() && !IsMissing(*state, event.sequence())) {
        ++result.duplicates;
        state->set_duplicates(state->duplicates() + 1);
        continue;
      }
      EncodeStoredEvent(event, now, state, &value);
      key = DeviceSequenceKey(id, event.sequence());
      wb.Put(events_, key, value);
      if (absl::Status s = ApplyDomain(event, now, t, touched, wb, &result); !s.ok()) return s;
      ApplyEvent(event, now, state, &t.closed_gaps, &result.gaps_opened);
      ++result.stored_by_type[std::string(codec::EventType(event))];
    }
  }

  for (auto& [id, t] : touched) {
    for (const Gap& gap : t.closed_gaps) {
      PutRecord(wb, &t.record, gaps_, DeviceSequenceKey(id, gap.first()), gap.SerializeAsString(), now);
    }
    StageDevice(wb, t.record, now);
    if (t.committed.empty()) continue;
    DeviceAck& ack = result.acks.emplace_back();
    ack.set_device_id(id);
    ack.set_contiguous_through(t.record.state().contiguous_through());
    AddRanges(std::move(t.committed), &ack);
  }
  if (wb.Count() > 0) {
    rocksdb::WriteOptions wo;
    wo.sync = options_.sync;
    if (absl::Status s = FromRocks(db_->Write(wo, &wb), "append events"); !s.ok()) return s;
  }
  for (auto& [id, t] : touched) write_cache_[id] = std::move(t.record);
  return result;
}

absl::StatusOr<Device> EventStore::Register(Device device, int64_t now) {
  if (absl::Status s = rules::ValidateRegistration(device); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(write_mu_);
  DeviceRecord record;
  absl::StatusOr<bool> found = LoadDeviceForWrite(device.device_id(), &record);
  if (!found.ok()) return found.status();
  if (*found) return absl::AlreadyExistsError(util::Cat("device ", device.device_id(), " is already registered"));
  device.set_registered_unix_ms(now);
  device.set_lifecycle(rollertrace::v1::LIFECYCLE_REGISTERED);
  device.clear_retired_reason();
  device.clear_retired_unix_ms();
  *record.mutable_device() = device;
  rocksdb::WriteBatch wb;
  Log(wb, &record, now, "registered", device.model(), "");
  StageDevice(wb, record, now);
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  if (absl::Status s = FromRocks(db_->Write(wo, &wb), "register"); !s.ok()) return s;
  write_cache_[device.device_id()] = record;
  return device;
}

absl::StatusOr<Device> EventStore::Retire(std::string_view device_id, std::string_view reason, int64_t now) {
  std::lock_guard<std::mutex> lock(write_mu_);
  DeviceRecord record;
  absl::StatusOr<bool> found = LoadDeviceForWrite(std::string(device_id), &record);
  if (!found.ok()) return found.status();
  if (!*found) return absl::NotFoundError(util::Cat("device ", device_id, " is not registered"));
  if (record.device().lifecycle() == rollertrace::v1::LIFECYCLE_RETIRED) {
    return absl::FailedPreconditionError(util::Cat("device ", device_id, " is already retired"));
  }
  Device* device = record.mutable_device();
  device->set_lifecycle(rollertrace::v1::LIFECYCLE_RETIRED);
  device->set_retired_reason(std::string(reason));
  device->set_retired_unix_ms(now);
  rocksdb::WriteBatch wb;
  Log(wb, &record, now, "retired", std::string(reason), "");
  StageDevice(wb, record, now);
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  if (absl::Status s = FromRocks(db_->Write(wo, &wb), "retire"); !s.ok()) return s;
  write_cache_[std::string(device_id)] = record;
  return *device;
}

absl::StatusOr<DeviceRecord> EventStore::GetDevice(std::string_view device_id) const {
  DeviceRecord record;
  absl::StatusOr<bool> found = LoadDevice(device_id, &record);
  if (!found.ok()) return found.status();
  if (!*found) return absl::NotFoundError(util::Cat("device ", device_id, " is not registered"));
  return record;
}

absl::StatusOr<std::vector<DeviceRecord>> EventStore::ListDevices(rollertrace::v1::DeviceKind kind) const {
  std::vector<DeviceRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), devices_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    DeviceRecord record;
    if (!record.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError(util::Cat("device record of ", it->key().ToString(), " is corrupt"));
    }
    if (kind == rollertrace::v1::DEVICE_KIND_UNSPECIFIED || record.device().kind() == kind) {
      out.push_back(std::move(record));
    }
  }
  if (absl::Status s = FromRocks(it->status(), "list devices"); !s.ok()) return s;
  return out;
}

absl::StatusOr<rollertrace::v1::HistoryResponse> EventStore::History(std::string_view device_id,
                                                                     uint64_t from_sequence, uint32_t limit) const {
  if (limit == 0) limit = kDefaultPageSize;
  rollertrace::v1::HistoryResponse response;
  const std::string prefix = DevicePrefix(device_id);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), events_));
  for (it->Seek(DeviceSequenceKey(device_id, std::max<uint64_t>(from_sequence, 1)));
       it->Valid() && it->key().starts_with(prefix); it->Next()) {
    if (static_cast<uint32_t>(response.events_size()) == limit) {
      auto decoded = DecodeDeviceSequenceKey(std::string_view(it->key().data(), it->key().size()));
      if (decoded) response.set_next_sequence(decoded->sequence);
      break;
    }
    if (!response.add_events()->ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError(util::Cat("event record of ", device_id, " is corrupt"));
    }
  }
  if (absl::Status s = FromRocks(it->status(), "read history"); !s.ok()) return s;
  return response;
}

absl::StatusOr<std::vector<Gap>> EventStore::Gaps(std::string_view device_id) const {
  absl::StatusOr<DeviceRecord> record = GetDevice(device_id);
  if (!record.ok()) return record.status();
  std::vector<Gap> gaps(record->state().open_gaps().begin(), record->state().open_gaps().end());
  const std::string prefix = DevicePrefix(device_id);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), gaps_));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    if (!gaps.emplace_back().ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError(util::Cat("gap record of ", device_id, " is corrupt"));
    }
  }
  if (absl::Status s = FromRocks(it->status(), "read gaps"); !s.ok()) return s;
  return gaps;
}

std::map<std::string, uint64_t> EventStore::Properties() const {
  std::map<std::string, uint64_t> out;
  for (const char* name : {"rocksdb.estimate-live-data-size", "rocksdb.estimate-pending-compaction-bytes",
                           "rocksdb.is-write-stopped", "rocksdb.actual-delayed-write-rate",
                           "rocksdb.total-sst-files-size", "rocksdb.cur-size-all-mem-tables"}) {
    uint64_t total = 0;
    for (auto* h : handles_) {
      uint64_t v = 0;
      if (db_->GetIntProperty(h, name, &v)) total += v;
    }
    out[name] = total;
  }
  return out;
}

}  // namespace rollertrace::store
