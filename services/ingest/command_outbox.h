// CommandOutbox: the device commands ingestd owes the bridges (locks, unlocks,
// a recall's locks). Each is stored in the store's outbox with the change that
// raised it (Command.outbox_index) before it comes here. It is handed at once
// to one of the command sinks (the bridges' streams, round robin), else kept
// until one connects, and owed until a bridge says the broker acknowledged it
// (Published). A sink that closes gives its unconfirmed commands to the next;
// one not confirmed within `resend_after` is handed out again.
// docs/ARCHITECTURE.md, "Under load".
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "ingest/ingest_metrics.h"
#include "rollertrace/v1/records.pb.h"

namespace rollertrace::ingest {

class CommandOutbox {
 public:
  // Stores that the bridges published these (the outbox entries go).
  using StorePublished = std::function<void(std::vector<uint64_t>)>;
  // Borrows metrics; they must outlive this object.
  CommandOutbox(IngestMetrics& metrics, StorePublished store_published, std::chrono::milliseconds resend_after);
  ~CommandOutbox();
  CommandOutbox(const CommandOutbox&) = delete;
  CommandOutbox& operator=(const CommandOutbox&) = delete;

  // Newly raised commands (counted as issued). Thread-safe.
  void Enqueue(std::vector<rollertrace::v1::Command> commands);
  // The outbox the store kept across a restart: sent as Enqueue sends, not
  // counted as issued again.
  void Resume(std::vector<rollertrace::v1::Command> commands);
  // A bridge published these (the broker acknowledged them): forgotten, and
  // their outbox entries dropped (StorePublished). Thread-safe.
  void Published(const std::vector<uint64_t>& outbox_indexes);

  // Takes the commands and returns true, or returns false (leaving them) once
  // its stream has closed. Called without the outbox's lock held; it must not
  // block, and may be called after RemoveSink returned.
  using Sink = std::function<bool(std::vector<rollertrace::v1::Command>&)>;
  uint64_t AddSink(Sink sink);
  // The commands it took and did not confirm go to the next sink.
  void RemoveSink(uint64_t id);

 private:
  struct Sent {
    uint64_t sink;
    std::chrono::steady_clock::time_point at;
    rollertrace::v1::Command command;
  };
  void Deliver(std::vector<rollertrace::v1::Command> commands);
  // Takes the sent commands `which` picks, in outbox order. REQUIRES: mu_ held.
  std::vector<rollertrace::v1::Command> TakeSentLocked(const std::function<bool(const Sent&)>& which);
  void CountLocked();  // REQUIRES: mu_ held
  void RunResends();

  IngestMetrics& metrics_;
  StorePublished store_published_;
  std::chrono::milliseconds resend_after_;

  std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::vector<rollertrace::v1::Command> waiting_;  // for a sink
  std::map<uint64_t, Sent> sent_;                  // handed to a sink, not confirmed; by outbox index
  std::map<uint64_t, Sink> sinks_;
  uint64_t next_sink_ = 1;
  uint64_t last_sink_ = 0;
  std::thread resender_;
};

}  // namespace rollertrace::ingest
