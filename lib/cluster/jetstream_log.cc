#include "cluster/jetstream_log.h"

#include <nats/nats.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <set>
#include <thread>

#include "util/cat.h"

namespace rollertrace::cluster {
namespace {

absl::Status NatsError(std::string_view what, natsStatus s, jsErrCode code = static_cast<jsErrCode>(0)) {
  std::string detail = natsStatus_GetText(s);
  if (const char* last = nats_GetLastError(nullptr); last != nullptr && *last != '\0') detail = last;
  std::string message = util::Cat(what, ": ", detail);
  if (code != 0) message = util::Cat(message, " (JetStream error ", static_cast<int>(code), ")");
  if (s == NATS_TIMEOUT || s == NATS_NO_SERVER || s == NATS_CONNECTION_CLOSED || s == NATS_NO_RESPONDERS ||
      s == NATS_CONNECTION_DISCONNECTED || TemporarilyUnavailable(code)) {
    return absl::UnavailableError(message);
  }
  return absl::InternalError(message);
}

// FNV-1a, 64 bits: stable across processes and versions, enough to tell two
// different commands at one index apart.
uint64_t Fingerprint(std::string_view bytes) {
  uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

bool TemporarilyUnavailable(int code) {
  switch (code) {
    case JSClusterNotAvailErr:  // "JetStream system temporarily unavailable"
    case JSClusterNotLeaderErr:
    case JSClusterNoPeersErr:
    case JSClusterIncompleteErr:
    case JSInsufficientResourcesErr:
    case JSStreamOfflineErr:
    case JSConsumerOfflineErr:
      return true;
    default:
      return false;
  }
}

struct JetStreamLog::Handles {
  natsOptions* options = nullptr;
  natsConnection* connection = nullptr;
  jsCtx* js = nullptr;

  // What the asynchronous acks of the current Publish said.
  std::mutex mu;
  std::set<uint64_t> acked;  // stream sequences
  absl::Status first_error;

  static void OnAck(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
    auto* self = static_cast<Handles*>(closure);
    {
      std::lock_guard<std::mutex> lock(self->mu);
      if (pa != nullptr) {
        self->acked.insert(pa->Sequence);
      } else if (pae != nullptr && self->first_error.ok()) {
        const std::string text = pae->ErrText != nullptr ? pae->ErrText : natsStatus_GetText(pae->Err);
        self->first_error = pae->ErrCode == JSStreamWrongLastSequenceErr
                                ? absl::FailedPreconditionError(util::Cat("the stream refused a publish: ", text))
                                : absl::UnavailableError(util::Cat("a publish was not acknowledged: ", text));
      }
    }
    natsMsg_Destroy(msg);
  }

  ~Handles() {
    if (js != nullptr) jsCtx_Destroy(js);
    if (connection != nullptr) {
      natsConnection_Close(connection);
      natsConnection_Destroy(connection);
    }
    if (options != nullptr) natsOptions_Destroy(options);
  }
};

JetStreamLog::JetStreamLog(LogOptions options, std::unique_ptr<Handles> handles)
    : options_(std::move(options)),
      stream_("RT_" + options_.shard),
      subject_("rollertrace.log." + options_.shard),
      h_(std::move(handles)) {}

JetStreamLog::~JetStreamLog() = default;

absl::StatusOr<std::unique_ptr<JetStreamLog>> JetStreamLog::Connect(const LogOptions& options) {
  if (options.servers.empty()) return absl::InvalidArgumentError("no NATS server given");
  if (options.shard.empty() || options.shard.find_first_of(". *>\t") != std::string::npos) {
    return absl::InvalidArgumentError(
        util::Cat("shard name '", options.shard, "' must be non-empty, without dots, spaces or wildcards"));
  }
  auto h = std::make_unique<Handles>();
  std::vector<const char*> urls;
  for (const auto& s : options.servers) urls.push_back(s.c_str());
  natsStatus s = natsOptions_Create(&h->options);
  if (s == NATS_OK) s = natsOptions_SetServers(h->options, urls.data(), static_cast<int>(urls.size()));
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(h->options, -1);  // for ever: the cluster comes back
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(h->options, 200);
  if (s == NATS_OK) s = natsOptions_SetTimeout(h->options, 2000);
  if (s == NATS_OK) s = natsOptions_SetName(h->options, ("ingestd-" + options.shard).c_str());
  if (s != NATS_OK) return NatsError("NATS options", s);
  const int64_t deadline = NowMs() + options.connect_timeout_ms;
  while (true) {
    s = natsConnection_Connect(&h->connection, h->options);
    if (s == NATS_OK) break;
    if (NowMs() >= deadline) return NatsError(util::Cat("cannot connect to NATS at ", options.servers.front()), s);
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = options.request_timeout_ms;
  jo.PublishAsync.MaxPending = 4096;
  jo.PublishAsync.AckHandler = &Handles::OnAck;
  jo.PublishAsync.AckHandlerClosure = h.get();
  if (s = natsConnection_JetStream(&h->js, h->connection, &jo); s != NATS_OK) return NatsError("JetStream", s);
  std::unique_ptr<JetStreamLog> log(new JetStreamLog(options, std::move(h)));
  // The stream may not be placeable yet (a cluster still electing its meta leader).
  while (true) {
    absl::Status ensured = log->EnsureStream();
    if (ensured.ok()) break;
    if (NowMs() >= deadline) return ensured;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return log;
}

absl::Status JetStreamLog::EnsureStream() {
  jsStreamInfo* info = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&info, h_->js, stream_.c_str(), nullptr, &code);
  if (s == NATS_OK) {
    const int64_t replicas = info->Config->Replicas;
    jsStreamInfo_Destroy(info);
    if (replicas != options_.replicas) {
      return absl::FailedPreconditionError(util::Cat("stream ", stream_, " has ", replicas,
                                                     " replicas, this shard expects ", options_.replicas));
    }
    return absl::OkStatus();
  }
  if (s != NATS_NOT_FOUND && code != JSStreamNotFoundErr) return NatsError(util::Cat("stream ", stream_), s, code);
  jsStreamConfig config;
  jsStreamConfig_Init(&config);
  const char* subjects[] = {subject_.c_str()};
  config.Name = stream_.c_str();
  config.Description = "RollerTrace: one shard's command log (sequence = command index)";
  config.Subjects = subjects;
  config.SubjectsLen = 1;
  config.Retention = js_LimitsPolicy;
  config.Discard = js_DiscardOld;
  config.Storage = js_FileStorage;
  config.Replicas = options_.replicas;
  config.MaxAge = options_.max_age_ms * 1000000;  // nanoseconds
  config.Duplicates = options_.duplicate_window_ms * 1000000;
  config.DenyDelete = true;  // a command is never taken out of the middle of the log
  code = static_cast<jsErrCode>(0);
  s = js_AddStream(&info, h_->js, &config, nullptr, &code);
  if (s != NATS_OK) return NatsError(util::Cat("cannot create stream ", stream_), s, code);
  jsStreamInfo_Destroy(info);
  return absl::OkStatus();
}

absl::StatusOr<StreamBounds> JetStreamLog::Bounds() {
  jsStreamInfo* info = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&info, h_->js, stream_.c_str(), nullptr, &code);
  if (s == NATS_NOT_FOUND || code == JSStreamNotFoundErr) {
    // The cluster lost the stream altogether: make it again, empty.
    if (absl::Status made = EnsureStream(); !made.ok()) return made;
    code = static_cast<jsErrCode>(0);
    s = js_GetStreamInfo(&info, h_->js, stream_.c_str(), nullptr, &code);
  }
  if (s != NATS_OK) return NatsError(util::Cat("stream ", stream_), s, code);
  StreamBounds b{info->State.FirstSeq, info->State.LastSeq, info->State.Msgs};
  jsStreamInfo_Destroy(info);
  return b;
}

PublishOutcome JetStreamLog::Publish(uint64_t first_index, std::span<const std::string> entries) {
  {
    std::lock_guard<std::mutex> lock(h_->mu);
    h_->acked.clear();
    h_->first_error = absl::OkStatus();
  }
  PublishOutcome out{first_index - 1, absl::OkStatus()};
  for (size_t i = 0; i < entries.size(); ++i) {
    const uint64_t index = first_index + i;
    // The id names the content too: the same command sent again is a
    // duplicate (its earlier ack was lost), another command at this index is
    // not, and meets the ExpectLastSeq fence instead.
    char fingerprint[17];
    std::snprintf(fingerprint, sizeof fingerprint, "%016llx",
                  static_cast<unsigned long long>(Fingerprint(entries[i])));
    const std::string id = util::Cat(options_.shard, "-", index, "-", fingerprint);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id.c_str();
    po.ExpectLastSeq = index - 1;  // 0 for the first: nothing to fence against
    natsMsg* msg = nullptr;
    natsStatus s = natsMsg_Create(&msg, subject_.c_str(), nullptr, entries[i].data(), static_cast<int>(entries[i].size()));
    if (s == NATS_OK) s = js_PublishMsgAsync(h_->js, &msg, &po);
    if (msg != nullptr) natsMsg_Destroy(msg);  // not taken on failure
    if (s != NATS_OK) {
      out.error = NatsError("publish", s);
      break;
    }
  }
  jsPubOptions wait;
  jsPubOptions_Init(&wait);
  wait.MaxWait = options_.request_timeout_ms;
  if (natsStatus s = js_PublishAsyncComplete(h_->js, &wait); s != NATS_OK && out.error.ok()) {
    out.error = NatsError("waiting for publish acknowledgements", s);
  }
  if (!out.error.ok()) {
    // Drop what is still pending: the caller learns the stream's state afresh.
    natsMsgList pending;
    if (js_PublishAsyncGetPendingList(&pending, h_->js) == NATS_OK) natsMsgList_Destroy(&pending);
  }
  std::lock_guard<std::mutex> lock(h_->mu);
  for (uint64_t seq = first_index; h_->acked.count(seq) != 0; ++seq) out.last = seq;
  if (out.error.ok()) out.error = h_->first_error;
  if (out.error.ok() && out.last != first_index - 1 + entries.size()) {
    out.error = absl::UnavailableError(util::Cat("the stream acknowledged through ", out.last, " of ", first_index,
                                                 "..", first_index - 1 + entries.size()));
  }
  return out;
}

absl::StatusOr<std::string> JetStreamLog::Get(uint64_t sequence) {
  natsMsg* msg = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = js_GetMsg(&msg, h_->js, stream_.c_str(), sequence, nullptr, &code);
  if (s == NATS_NOT_FOUND || code == JSNoMessageFoundErr) {
    if (msg != nullptr) natsMsg_Destroy(msg);
    return absl::NotFoundError(util::Cat("stream ", stream_, " has no message ", sequence));
  }
  if (s != NATS_OK) return NatsError(util::Cat("reading message ", sequence, " of ", stream_), s, code);
  std::string bytes(natsMsg_GetData(msg), static_cast<size_t>(natsMsg_GetDataLength(msg)));
  natsMsg_Destroy(msg);
  return bytes;
}

absl::Status JetStreamLog::Read(uint64_t from, uint64_t to,
                                const std::function<absl::Status(uint64_t, std::string_view)>& visit) {
  if (from > to) return absl::OkStatus();
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream_.c_str();
  so.Config.DeliverPolicy = js_DeliverByStartSequence;
  so.Config.OptStartSeq = from;
  so.Config.AckPolicy = js_AckNone;
  so.Config.InactiveThreshold = 60LL * 1000 * 1000 * 1000;  // an abandoned reader goes away
  natsSubscription* sub = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = js_PullSubscribe(&sub, h_->js, subject_.c_str(), nullptr, nullptr, &so, &code);
  if (s != NATS_OK) return NatsError(util::Cat("reading ", stream_, " from ", from), s, code);
  absl::Status result = absl::OkStatus();
  uint64_t next = from;
  int idle = 0;
  while (next <= to && result.ok()) {
    natsMsgList list{};
    const int batch = static_cast<int>(std::min<uint64_t>(to - next + 1, 512));
    s = natsSubscription_Fetch(&list, sub, batch, options_.request_timeout_ms, &code);
    if (s == NATS_TIMEOUT && ++idle < 3) continue;
    if (s != NATS_OK) {
      result = NatsError(util::Cat("reading ", stream_, " at ", next), s, code);
      break;
    }
    idle = 0;
    for (int i = 0; i < list.Count && result.ok(); ++i) {
      natsMsg* m = list.Msgs[i];
      jsMsgMetaData* meta = nullptr;
      if (natsMsg_GetMetaData(&meta, m) != NATS_OK) {
        result = absl::InternalError("a stream message without metadata");
        break;
      }
      const uint64_t seq = meta->Sequence.Stream;
      jsMsgMetaData_Destroy(meta);
      if (seq > to) break;
      if (seq != next) {
        result = absl::DataLossError(util::Cat("stream ", stream_, " skips from ", next, " to ", seq));
        break;
      }
      result = visit(seq, std::string_view(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m))));
      ++next;
    }
    natsMsgList_Destroy(&list);
  }
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  return result;
}

}  // namespace rollertrace::cluster
