// EventStore::Verify: recompute every device's event chain from disk.
#include <rocksdb/db.h>

#include <map>

#include "store/event_store.h"
#include "store/keys.h"
#include "store/signer.h"
#include "util/cat.h"

namespace rollertrace::store {
namespace {

void Break(rollertrace::v1::VerifyReport* report, const std::string& device, uint64_t sequence, uint64_t index,
           const char* problem, std::string detail) {
  auto* b = report->add_breaks();
  b->set_device_id(device);
  b->set_sequence(sequence);
  b->set_chain_index(index);
  b->set_problem(problem);
  b->set_detail(std::move(detail));
}

}  // namespace

absl::Status EventStore::WriteCheckpoint(const Signer& signer, int64_t now) {
  absl::StatusOr<std::vector<rollertrace::v1::DeviceRecord>> devices =
      ListDevices(rollertrace::v1::DEVICE_KIND_UNSPECIFIED);
  if (!devices.ok()) return devices.status();
  rollertrace::v1::Checkpoint cp;
  cp.set_unix_ms(now);
  for (const auto& d : *devices) {
    if (d.state().chain_length() == 0) continue;
    auto* head = cp.add_heads();
    head->set_device_id(d.device().device_id());
    head->set_length(d.state().chain_length());
    head->set_hash(d.state().chain_head());
  }
  cp.set_public_key(signer.public_key());
  cp.set_signature(signer.Sign(cp.SerializeAsString()));
  std::string key;
  AppendBigEndian64(&key, static_cast<uint64_t>(now));
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  rocksdb::Status s = db_->Put(wo, checkpoints_, key, cp.SerializeAsString());
  return s.ok() ? absl::OkStatus() : absl::InternalError(util::Cat("write checkpoint: ", s.ToString()));
}

absl::StatusOr<rollertrace::v1::VerifyReport> EventStore::Verify(std::string_view only,
                                                                 std::string_view trusted_public_key) const {
  rollertrace::v1::VerifyReport report;
  // The latest checkpoint, when a trusted key is given.
  std::map<std::string, rollertrace::v1::ChainHead> signed_heads;
  if (!trusted_public_key.empty()) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), checkpoints_));
    it->SeekToLast();
    if (it->Valid()) {
      rollertrace::v1::Checkpoint cp;
      bool good = cp.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()));
      if (good) {
        rollertrace::v1::Checkpoint unsigned_cp = cp;
        unsigned_cp.clear_signature();
        good = cp.public_key() == trusted_public_key &&
               Signer::Verify(trusted_public_key, unsigned_cp.SerializeAsString(), cp.signature());
      }
      if (!good) {
        Break(&report, "(checkpoint)", 0, 0, "changed",
              "the latest checkpoint is not signed by this ingestd's key: checkpoints were tampered with");
      } else {
        for (const auto& h : cp.heads()) signed_heads[h.device_id()] = h;
      }
    }
  }
  std::vector<rollertrace::v1::DeviceRecord> devices;
  if (only.empty()) {
    absl::StatusOr<std::vector<rollertrace::v1::DeviceRecord>> all = ListDevices(rollertrace::v1::DEVICE_KIND_UNSPECIFIED);
    if (!all.ok()) return all.status();
    devices = std::move(*all);
  } else {
    absl::StatusOr<rollertrace::v1::DeviceRecord> one = GetDevice(only);
    if (!one.ok()) return one.status();
    devices.push_back(std::move(*one));
  }
  for (const auto& record : devices) {
    const std::string& id = record.device().device_id();
    report.set_devices_checked(report.devices_checked() + 1);
    // chain index -> (sequence under which it is stored, the record)
    std::map<uint64_t, std::pair<uint64_t, rollertrace::v1::StoredEvent>> chain;
    bool broken = false;
    const std::string prefix = DevicePrefix(id);
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), events_));
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
    if (auto h = signed_heads.find(id); h != signed_heads.end()) {
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
    }
  }
  report.set_intact(report.breaks_size() == 0);
  return report;
}

}  // namespace rollertrace::store
