#include "agent/spool.h"

#include <rocksdb/db.h>

#include <filesystem>
#include <iostream>
#include <rocksdb/write_batch.h>

#include "store/keys.h"
#include "util/cat.h"

namespace rollertrace::edge {
namespace {

using rollertrace::v1::Event;

// Sequence 0 is never an event's, so its key holds the device's SpoolMeta;
// nor is the highest, whose key holds the agent's state.
constexpr uint64_t kMetaSequence = 0;
constexpr uint64_t kAgentStateSequence = UINT64_MAX;
// Corrupt events are moved here: "\0quarantine\0" + the event's own key.
// (A leading '\0': no device's keys start so, every device id being non-empty.)
const std::string kQuarantine("\0quarantine\0", 12);

}  // namespace

absl::StatusOr<std::unique_ptr<SpoolDb>> SpoolDb::Open(const std::string& path) {
  rocksdb::Options options;
  options.create_if_missing = true;
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return absl::UnavailableError(util::Cat("cannot create the spool directory ", path, ": ", ec.message()));
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, &raw);
  if (!s.ok()) return absl::UnavailableError(util::Cat("cannot open spool at ", path, ": ", s.ToString()));
  return std::unique_ptr<SpoolDb>(new SpoolDb(std::unique_ptr<rocksdb::DB>(raw)));
}

SpoolDb::SpoolDb(std::unique_ptr<rocksdb::DB> db) : db_(std::move(db)) {}

SpoolDb::~SpoolDb() { db_->Close(); }

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(SpoolDb& db, std::string device_id) {
  std::unique_ptr<Spool> spool(new Spool(db, std::move(device_id)));
  const std::string prefix = store::DevicePrefix(spool->device_id_);
  std::unique_ptr<rocksdb::Iterator> it(spool->db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    auto key = store::DecodeDeviceSequenceKey(std::string_view(it->key().data(), it->key().size()));
    if (!key) continue;
    if (key->sequence == kMetaSequence) {
      if (!spool->meta_.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return absl::DataLossError(util::Cat("spool bookkeeping of ", spool->device_id_, " is corrupt"));
      }
      continue;
    }
    if (key->sequence == kAgentStateSequence) continue;
    if (spool->pending_.empty()) {
      Event first;
      if (first.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        spool->oldest_pending_unix_ms_ = first.device_time_unix_ms();
      }
    }
    spool->pending_.insert(key->sequence);
  }
  if (!it->status().ok()) return absl::DataLossError(util::Cat("cannot read spool: ", it->status().ToString()));
  if (spool->meta_.next_sequence() == 0) spool->meta_.set_next_sequence(1);
  // Never reuse a sequence: without its bookkeeping (lost, or older than the
  // events), the next one follows the highest still spooled.
  if (!spool->pending_.empty() && spool->meta_.next_sequence() <= *spool->pending_.rbegin()) {
    std::cerr << "spool: bookkeeping of " << spool->device_id_ << " is missing or behind its events (next "
              << spool->meta_.next_sequence() << ", spooled up to " << *spool->pending_.rbegin()
              << "): continuing after the highest" << std::endl;
    spool->meta_.set_next_sequence(*spool->pending_.rbegin() + 1);
  }
  return spool;
}

absl::StatusOr<Event> Spool::Append(Event event, uint64_t source_cursor) {
  std::lock_guard<std::mutex> lock(mu_);
  event.set_device_id(device_id_);
  event.set_sequence(meta_.next_sequence());
  rollertrace::v1::SpoolMeta next = meta_;
  next.set_next_sequence(meta_.next_sequence() + 1);
  next.set_source_cursor(source_cursor);
  rocksdb::WriteBatch batch;
  batch.Put(store::DeviceSequenceKey(device_id_, event.sequence()), event.SerializeAsString());
  batch.Put(store::DeviceSequenceKey(device_id_, kMetaSequence), next.SerializeAsString());
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::Status s = db_->Write(wo, &batch);
  if (!s.ok()) return absl::UnavailableError(util::Cat("spool write failed: ", s.ToString()));
  meta_ = next;
  if (pending_.empty()) oldest_pending_unix_ms_ = event.device_time_unix_ms();
  pending_.insert(event.sequence());
  return event;
}

absl::StatusOr<size_t> Spool::Acknowledge(const rollertrace::v1::DeviceAck& ack) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint64_t> covered;
  for (auto it = pending_.begin(); it != pending_.end() && *it <= ack.contiguous_through(); ++it) {
    covered.push_back(*it);
  }
  for (const auto& range : ack.committed()) {
    for (auto it = pending_.lower_bound(range.first()); it != pending_.end() && *it <= range.last(); ++it) {
      covered.push_back(*it);
    }
  }
  if (covered.empty()) return size_t{0};
  rocksdb::WriteBatch batch;
  for (uint64_t seq : covered) batch.Delete(store::DeviceSequenceKey(device_id_, seq));
  // Not synced: if the deletes are lost in a crash the events are sent again,
  // and ingestd stores them once.
  rocksdb::Status s = db_->Write(rocksdb::WriteOptions(), &batch);
  if (!s.ok()) return absl::UnavailableError(util::Cat("spool delete failed: ", s.ToString()));
  size_t removed = 0;
  for (uint64_t seq : covered) removed += pending_.erase(seq);
  oldest_pending_unix_ms_ = 0;
  if (!pending_.empty()) {
    std::string value;
    Event first;
    if (db_->Get(rocksdb::ReadOptions(), store::DeviceSequenceKey(device_id_, *pending_.begin()), &value).ok() &&
        first.ParseFromString(value)) {
      oldest_pending_unix_ms_ = first.device_time_unix_ms();
    }
  }
  return removed;
}

std::vector<Event> Spool::Pending(uint64_t after, size_t limit) {
  std::vector<Event> out;
  std::lock_guard<std::mutex> lock(mu_);
  std::string value;
  std::vector<uint64_t> corrupt;
  for (auto it = pending_.upper_bound(after); it != pending_.end() && out.size() < limit; ++it) {
    const std::string key = store::DeviceSequenceKey(device_id_, *it);
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), key, &value);
    if (s.IsNotFound()) {
      corrupt.push_back(*it);  // gone from under us: nothing to send
      continue;
    }
    if (!s.ok()) break;  // a read error: try again on the next pump
    if (!out.emplace_back().ParseFromString(value) || out.back().sequence() != *it) {
      out.pop_back();
      // Kept aside with its bytes, out of the pending set: reported, never silently skipped.
      rocksdb::WriteBatch batch;
      batch.Put(kQuarantine + key, value);
      batch.Delete(key);
      rocksdb::WriteOptions wo;
      wo.sync = true;
      if (db_->Write(wo, &batch).ok()) {
        std::cerr << "spool: event " << *it << " of " << device_id_
                  << " is corrupt in the spool: quarantined (its sequence stays a gap at ingestd)" << std::endl;
        corrupt.push_back(*it);
        ++quarantined_;
      }
    }
  }
  for (uint64_t seq : corrupt) pending_.erase(seq);
  return out;
}

absl::StatusOr<std::optional<rollertrace::v1::AgentState>> Spool::LoadAgentState() const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), store::DeviceSequenceKey(device_id_, kAgentStateSequence), &value);
  if (s.IsNotFound()) return std::optional<rollertrace::v1::AgentState>();
  if (!s.ok()) return absl::UnavailableError(util::Cat("cannot read the agent state: ", s.ToString()));
  rollertrace::v1::AgentState state;
  if (!state.ParseFromString(value)) return absl::DataLossError(util::Cat("agent state of ", device_id_, " is corrupt"));
  return state;
}

absl::Status Spool::SaveAgentState(const rollertrace::v1::AgentState& state, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  rocksdb::Status s =
      db_->Put(wo, store::DeviceSequenceKey(device_id_, kAgentStateSequence), state.SerializeAsString());
  if (!s.ok()) return absl::UnavailableError(util::Cat("cannot save the agent state: ", s.ToString()));
  return absl::OkStatus();
}

uint64_t Spool::quarantined() const {
  std::lock_guard<std::mutex> lock(mu_);
  return quarantined_;
}

size_t Spool::pending_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.size();
}

bool Spool::AnyPending(uint64_t first, uint64_t last) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pending_.lower_bound(first);
  return it != pending_.end() && *it <= last;
}

int64_t Spool::oldest_pending_unix_ms() const {
  std::lock_guard<std::mutex> lock(mu_);
  return oldest_pending_unix_ms_;
}

rollertrace::v1::SpoolMeta Spool::meta() const {
  std::lock_guard<std::mutex> lock(mu_);
  return meta_;
}

}  // namespace rollertrace::edge
