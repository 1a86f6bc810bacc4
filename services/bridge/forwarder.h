// Forwarder: the bridge's queue of decoded batches and its gRPC stream to
// ingestd.
//
// Batches wait in a bounded queue (Enqueue); WaitForRoom holds the event
// reader while the queue is full, so the bridge stops reading from the broker
// (backpressure) instead of discarding anything. One thread
// ("bridge-forward") sends the queue in requests of up to max_request_events
// events, at most max_inflight_requests of them unanswered, on one long-lived
// Ingest stream; a second ("bridge-answers") reads the answers: their acks go
// to `publish_acks`, their commands to `publish_command`, and a request
// ingestd could not store (its store took no writes) goes back to the head
// of the queue unacked, with a pause before anything is sent again. A broken
// stream is opened again, and what it took without answering is sent first,
// in order. Commands the broker acknowledged are confirmed to ingestd on
// whichever stream is open (CommandPublished).
//
// What a bridge that dies loses is what this object holds: the queue and the
// in-flight requests (docs/ARCHITECTURE.md).
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bridge/ack_publisher.h"
#include "codec/codec.h"
#include "metrics/metrics.h"
#include "rollertrace/v1/services.grpc.pb.h"

namespace rollertrace::bridge {

class Forwarder {
 public:
  struct Options {
    std::shared_ptr<grpc::Channel> channel;
    // Bearer token of role "device" for ingestd; empty when it runs without access control.
    std::string token;
    // Events per request, and how long to wait to fill one.
    size_t max_request_events = 2048;
    std::chrono::milliseconds linger{2};
    // Requests sent and not yet answered; beyond this the forwarder waits.
    size_t max_inflight_requests = 8;
    // Events queued; at this many WaitForRoom waits.
    size_t max_queued_events = 8192;
    // Publishes an answer's acks (on the answers' thread; may wait, which
    // holds the next answers back: backpressure).
    std::function<void(const std::vector<AckPublisher::Ack>&)> publish_acks;
    // Publishes a command ingestd sent. Its owner then calls CommandPublished
    // once the broker has it, or CommandNotPublished when it could not hand
    // it on (may be called from within).
    std::function<void(const rollertrace::v1::Command&)> publish_command;
    // Whether commands not published may be tried again now (the control
    // connection is up).
    std::function<bool()> can_publish_commands;
    // Runs first on the forwarding thread, before the stream is opened
    // (the bridge lowers the thread's priority there).
    std::function<void()> on_thread_start;
  };

  Forwarder(Options options, metrics::Metrics& metrics);
  // Stops and joins.
  ~Forwarder();
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  void Start();
  // Ends the stream (what is queued or in flight is not sent) and wakes
  // WaitForRoom.
  void Stop();

  // Waits while the queue is full (the time is counted); false once stopping.
  bool WaitForRoom();
  // Queues a decoded batch; never refuses (the caller waited for room).
  void Enqueue(codec::TopicKind kind, rollertrace::v1::EventBatch batch, int64_t received_unix_ms);
  // The broker has the command of this outbox index: ingestd is told.
  void CommandPublished(uint64_t outbox_index);
  // The command could not be handed to the broker: published again once
  // can_publish_commands says so.
  void CommandNotPublished(rollertrace::v1::Command command);

 private:
  struct Queued {
    codec::TopicKind kind;
    rollertrace::v1::EventBatch batch;
    int64_t received_unix_ms;
  };
  struct Inflight {
    // Shared with the stream's Write, so a request is not copied to be sent.
    std::shared_ptr<const rollertrace::v1::IngestRequest> request;
    std::map<std::string, codec::TopicKind> kinds;
  };
  void Run();
  // One stream's life: resend in-flight, then forward until it breaks.
  void ServeStream(rollertrace::v1::IngestService::Stub& stub);
  // After ingestd held a request back, nothing is sent until every request
  // in flight is answered: the ones it also holds back go back into the
  // queue behind it, ahead of anything newer (their order kept); under mu_.
  bool HoldingBackLocked() const;
  // A request may be sent now: queued events, room in flight, no pause,
  // not holding back; under mu_.
  bool MaySendLocked() const;
  // The next request from the queue, registered in flight; under mu_.
  std::shared_ptr<const rollertrace::v1::IngestRequest> TakeRequestLocked();
  void HandleResponse(const rollertrace::v1::IngestResponse& response);
  // Puts a request ingestd held back at the head of the queue, behind those
  // held back before it; under mu_.
  void RequeueLocked(const Inflight& inflight, uint32_t retry_after_ms, const std::string& why);

  Options options_;
  prometheus::Family<prometheus::Counter>& ingest_rejected_;
  prometheus::Counter& forwarded_;
  prometheus::Counter& blocked_seconds_;
  prometheus::Counter& stream_restarts_;
  prometheus::Gauge& queue_depth_;
  prometheus::Gauge& inflight_depth_;
  prometheus::Counter& held_back_;

  std::mutex mu_;
  std::condition_variable cv_;       // work for the forwarding thread
  std::condition_variable room_cv_;  // the queue has room again
  std::deque<Queued> queue_;
  size_t queued_events_ = 0;
  // Batches at the head of the queue that ingestd held back, in their order.
  size_t requeued_ = 0;
  std::map<uint64_t, Inflight> inflight_;  // by request id, in send order
  uint64_t next_request_id_ = 1;
  bool stream_broken_ = false;
  std::atomic<bool> stopping_{false};  // set under mu_
  // ingestd's store takes no writes: send nothing new before this.
  std::chrono::steady_clock::time_point paused_until_{};
  bool holding_ = false;  // the latest answer was "held back"
  // Outbox indexes of commands the broker acknowledged, to tell ingestd
  // (IngestRequest.commands_published) on whichever stream is open.
  std::vector<uint64_t> published_commands_;
  std::vector<rollertrace::v1::Command> unpublished_commands_;
  std::thread thread_;
};

}  // namespace rollertrace::bridge
