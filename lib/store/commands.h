// Building the store's commands, and running the common ones: each builder
// stamps the time the command is judged at and the policy version in force
// (EventStore::policy()); each Run* call applies one command in its own write.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "store/event_store.h"

namespace rollertrace::store {

class Signer;

// A new command (index 0) judged at `now` under `store`'s current policy.
rollertrace::v1::StoreCommand NewCommand(const EventStore& store, int64_t now);
rollertrace::v1::StoreCommand IngestCommand(const EventStore& store, const rollertrace::v1::EventBatch& batch,
                                            int64_t now);
// The bridges published these device commands (Command.outbox_index).
rollertrace::v1::StoreCommand CommandsPublishedCommand(const EventStore& store, std::span<const uint64_t> outbox_indexes,
                                                       int64_t now);
rollertrace::v1::StoreCommand DecisionCommand(const EventStore& store, const RecordedDecision& decision, int64_t now);

absl::StatusOr<rollertrace::v1::Device> Register(EventStore& store, rollertrace::v1::Device device, int64_t now);
// FailedPrecondition when already retired: a retired device never returns.
absl::StatusOr<rollertrace::v1::Device> Retire(EventStore& store, std::string_view device_id,
                                               std::string_view reason, int64_t now);
// Releases a locked roller; FailedPrecondition when it is not locked.
absl::StatusOr<rollertrace::v1::Device> Unlock(EventStore& store, std::string_view device_id,
                                               std::string_view reason, std::string_view by, int64_t now,
                                               rollertrace::v1::Command* command);
// The lab's result (DOMAIN.md, "Whose word counts"): result.cycle is the cycle
// as it now is, result.recalls the recall it started, if any.
absl::StatusOr<CommandResult> RecordBiologicalIndicator(EventStore& store,
                                                        const rollertrace::v1::BiologicalIndicatorRequest& request,
                                                        int64_t now);
// Decide, and store the decision before returning.
absl::StatusOr<rollertrace::v1::Decision> Authorize(EventStore& store,
                                                    const rollertrace::v1::AuthorizeRequest& request, int64_t now);
// Checks a whole archive, then writes its records as they were, and the
// indexes derived from them, in one atomic write (archiver.h, CheckArchive).
absl::Status Import(EventStore& store, const std::vector<std::string>& device_ids,
                    const std::vector<rollertrace::v1::ArchiveRecord>& records, int64_t now);
// Signs the heads of every device's chains and stores the checkpoint.
absl::Status WriteCheckpoint(EventStore& store, const Signer& signer, int64_t now);
// Appends every batch (one ingest command each) and stores the decisions,
// all in one write; the results merged as one (acks merged per device).
absl::StatusOr<CommandResult> Append(EventStore& store, std::span<const rollertrace::v1::EventBatch* const> batches,
                                     int64_t now, std::span<const RecordedDecision> decisions = {});

// `into` += `from`: acks of one device merged (committed ranges joined, the
// latest contiguous_through), every list appended, counts added.
void MergeResult(CommandResult from, CommandResult* into);

}  // namespace rollertrace::store
