#include "store/commands.h"

#include <algorithm>

#include "store/signer.h"

namespace rollertrace::store {
namespace {

void MergeAck(const rollertrace::v1::DeviceAck& from, rollertrace::v1::DeviceAck* into) {
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const rollertrace::v1::DeviceAck* a : {static_cast<const rollertrace::v1::DeviceAck*>(into), &from}) {
    for (const auto& r : a->committed()) ranges.emplace_back(r.first(), r.last());
  }
  std::sort(ranges.begin(), ranges.end());
  into->clear_committed();
  for (const auto& [first, last] : ranges) {
    const int n = into->committed_size();
    if (n > 0 && into->committed(n - 1).last() + 1 >= first) {
      into->mutable_committed(n - 1)->set_last(std::max(last, into->committed(n - 1).last()));
      continue;
    }
    auto* r = into->add_committed();
    r->set_first(first);
    r->set_last(last);
  }
  into->set_contiguous_through(from.contiguous_through());
}

template <typename T>
void AppendAll(std::vector<T>& from, std::vector<T>* into) {
  for (auto& x : from) into->push_back(std::move(x));
}

}  // namespace

rollertrace::v1::StoreCommand NewCommand(const EventStore& store, int64_t now) {
  rollertrace::v1::StoreCommand c;
  c.set_judged_unix_ms(now);
  c.set_policy_version(store.policy().first);
  return c;
}

rollertrace::v1::StoreCommand IngestCommand(const EventStore& store, const rollertrace::v1::EventBatch& batch,
                                            int64_t now) {
  rollertrace::v1::StoreCommand c = NewCommand(store, now);
  *c.mutable_ingest() = batch;
  return c;
}

rollertrace::v1::StoreCommand DecisionCommand(const EventStore& store, const RecordedDecision& decision, int64_t now) {
  rollertrace::v1::StoreCommand c = NewCommand(store, now);
  *c.mutable_decision()->mutable_decision() = decision.decision;
  c.mutable_decision()->set_counter(decision.counter);
  return c;
}

absl::StatusOr<rollertrace::v1::Device> Register(EventStore& store, rollertrace::v1::Device device, int64_t now) {
  rollertrace::v1::StoreCommand c = NewCommand(store, now);
  *c.mutable_register_()->mutable_device() = std::move(device);
  absl::StatusOr<CommandResult> r = store.Execute(c);
  if (!r.ok()) return r.status();
  return r->device;
}

absl::StatusOr<rollertrace::v1::Device> Retire(EventStore& store, std::string_view device_id, std::string_view reason,
                                               int64_t now) {
  rollertrace::v1::StoreCommand c = NewCommand(store, now);
  c.mutable_retire()->set_device_id(std::string(device_id));
  c.mutable_retire()->set_reason(std::string(reason));
  absl::StatusOr<CommandResult> r = store.Execute(c);
  if (!r.ok()) return r.status();
  return r->device;
}

rollertrace::v1::StoreCommand CommandsPublishedCommand(const EventStore& store, std::span<const uint64_t> outbox_indexes,
                                                       int64_t now) {
  rollertrace::v1::StoreCommand c = NewCommand(store, now);
  for (uint64_t index : outbox_indexes) c.mutable_commands_published()->add_outbox_indexes(index);
  return c;
}

absl::StatusOr<rollertrace::v1::Device> Unlock(EventStore& store, std::string_view device_id, std::string_view reason,
                                               std::string_view by, int64_t now, rollertrace::v1::Command* command) {
  rollertrace::v1::StoreCommand c = NewCommand(store, now);
  c.mutable_unlock()->set_device_id(std::string(device_id));
  c.mutable_unlock()->set_reason(std::string(reason));
  c.mutable_unlock()->set_by(std::string(by));
  absl::StatusOr<CommandResult> r = store.Execute(c);
  if (!r.ok()) return r.status();
  if (command != nullptr && !r->commands.empty()) *command = r->commands.front();
  return r->device;
}

absl::StatusOr<CommandResult> RecordBiologicalIndicator(EventStore& store,
                                                        const rollertrace::v1::BiologicalIndicatorRequest& request,
                                                        int64_t now) {
  rollertrace::v1::StoreCommand c = NewCommand(store, now);
  *c.mutable_biological_indicator() = request;
  return store.Execute(c);
}

absl::StatusOr<rollertrace::v1::Decision> Authorize(EventStore& store, const rollertrace::v1::AuthorizeRequest& request,
                                                    int64_t now) {
  absl::StatusOr<RecordedDecision> d = store.Decide(request, now);
  if (!d.ok()) return d.status();
  if (d->store) {
    if (absl::StatusOr<CommandResult> r = store.Execute(DecisionCommand(store, *d, now)); !r.ok()) return r.status();
  }
  return d->decision;
}

absl::Status Import(EventStore& store, const std::vector<std::string>& device_ids,
                    const std::vector<rollertrace::v1::ArchiveRecord>& records, int64_t now) {
  rollertrace::v1::StoreCommand c = NewCommand(store, now);
  for (const auto& id : device_ids) c.mutable_import()->add_device_ids(id);
  for (const auto& r : records) *c.mutable_import()->add_records() = r;
  return store.Execute(c).status();
}

absl::Status WriteCheckpoint(EventStore& store, const Signer& signer, int64_t now) {
  absl::StatusOr<rollertrace::v1::Checkpoint> cp = store.verifier().MakeCheckpoint(signer, now);
  if (!cp.ok()) return cp.status();
  rollertrace::v1::StoreCommand c = NewCommand(store, now);
  *c.mutable_checkpoint()->mutable_checkpoint() = std::move(*cp);
  return store.Execute(c).status();
}

absl::StatusOr<CommandResult> Append(EventStore& store, std::span<const rollertrace::v1::EventBatch* const> batches,
                                     int64_t now, std::span<const RecordedDecision> decisions) {
  std::vector<rollertrace::v1::StoreCommand> commands;
  for (const RecordedDecision& d : decisions) {
    if (d.store) commands.push_back(DecisionCommand(store, d, now));
  }
  for (const auto* b : batches) commands.push_back(IngestCommand(store, *b, now));
  absl::StatusOr<std::vector<absl::StatusOr<CommandResult>>> results = store.ExecuteGroup(commands);
  if (!results.ok()) return results.status();
  CommandResult merged;
  for (auto& r : *results) {
    if (r.ok()) MergeResult(std::move(*r), &merged);
  }
  return merged;
}

void MergeResult(CommandResult from, CommandResult* into) {
  into->index = from.index;
  for (const auto& ack : from.acks) {
    auto it = std::find_if(into->acks.begin(), into->acks.end(),
                           [&](const rollertrace::v1::DeviceAck& a) { return a.device_id() == ack.device_id(); });
    if (it == into->acks.end()) {
      into->acks.push_back(ack);
    } else {
      MergeAck(ack, &*it);
    }
  }
  AppendAll(from.rejections, &into->rejections);
  for (const auto& [type, n] : from.stored_by_type) into->stored_by_type[type] += n;
  into->duplicates += from.duplicates;
  into->conflicts += from.conflicts;
  into->gaps_opened += from.gaps_opened;
  AppendAll(from.violations, &into->violations);
  AppendAll(from.decisions, &into->decisions);
  AppendAll(from.cycles, &into->cycles);
  AppendAll(from.findings, &into->findings);
  AppendAll(from.recalls, &into->recalls);
  AppendAll(from.commands, &into->commands);
  if (from.device.ByteSizeLong() > 0) into->device = std::move(from.device);
  if (from.cycle.ByteSizeLong() > 0) into->cycle = std::move(from.cycle);
}

}  // namespace rollertrace::store
