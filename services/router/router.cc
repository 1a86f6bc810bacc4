#include "router/router.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <thread>

#include "codec/report_lists.h"
#include "router/command_indexes.h"
#include "util/cat.h"

namespace rollertrace::router {
namespace {

using grpc::ServerContext;
using grpc::Status;
using grpc::StatusCode;
namespace v1 = rollertrace::v1;

// The most of one archive the router holds while it finds the archive's shard.
constexpr size_t kMaxImportBytes = size_t{256} << 20;
// The archive kind of a device's definition (lib/store/schema.cc, "devices").
constexpr std::string_view kDeviceRecordKind = "devices";

Status ToGrpc(const absl::Status& s) {
  StatusCode code = StatusCode::INTERNAL;
  if (absl::IsNotFound(s)) code = StatusCode::NOT_FOUND;
  if (absl::IsInvalidArgument(s)) code = StatusCode::INVALID_ARGUMENT;
  if (absl::IsUnavailable(s)) code = StatusCode::UNAVAILABLE;
  if (absl::IsFailedPrecondition(s)) code = StatusCode::FAILED_PRECONDITION;
  if (absl::IsPermissionDenied(s)) code = StatusCode::PERMISSION_DENIED;
  if (absl::IsUnauthenticated(s)) code = StatusCode::UNAUTHENTICATED;
  return {code, std::string(s.message())};
}

absl::Status FromGrpc(const Status& s) {
  switch (s.error_code()) {
    case StatusCode::OK: return absl::OkStatus();
    case StatusCode::NOT_FOUND: return absl::NotFoundError(s.error_message());
    case StatusCode::INVALID_ARGUMENT: return absl::InvalidArgumentError(s.error_message());
    case StatusCode::PERMISSION_DENIED: return absl::PermissionDeniedError(s.error_message());
    case StatusCode::UNAUTHENTICATED: return absl::UnauthenticatedError(s.error_message());
    default: return absl::UnavailableError(s.error_message());
  }
}

// Calls `call` on shard i with the caller's token; counted.
template <typename F>
Status Forward(Shards& shards, size_t i, const ServerContext& context, const char* method, F call) {
  std::unique_ptr<grpc::ClientContext> c = Shards::Forwarded(context);
  Status s = call(c.get());
  shards.Counted(i, method, s);
  return s;
}

template <typename F>
Status ByDevice(Shards& shards, const ServerContext& context, const std::string& device_id, const char* method,
                F call) {
  absl::StatusOr<size_t> i = shards.ShardOfDevice(device_id);
  if (!i.ok()) return ToGrpc(i.status());
  return Forward(shards, *i, context, method, [&](grpc::ClientContext* c) { return call(*i, c); });
}

// Every shard; the first error other than NOT_FOUND wins, else NOT_FOUND when
// every shard said so, else OK. visit merges one shard's answer.
template <typename Resp, typename F, typename M>
Status FanOut(Shards& shards, const ServerContext& context, const char* method, F call, M merge) {
  Status not_found;
  size_t found = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    Resp one;
    Status s = Forward(shards, i, context, method, [&](grpc::ClientContext* c) { return call(i, c, &one); });
    if (s.error_code() == StatusCode::NOT_FOUND) {
      not_found = s;
      continue;
    }
    if (!s.ok()) {
      return {s.error_code(), util::Cat("shard ", shards.shard(i).name, ": ", s.error_message())};
    }
    ++found;
    merge(std::move(one));
  }
  return found == 0 && !not_found.ok() ? not_found : Status::OK;
}

}  // namespace

Shards::Shards(cluster::ShardMap map, const std::shared_ptr<grpc::ChannelCredentials>& credentials,
               std::string lookup_token, metrics::Metrics& metrics)
    : map_(std::move(map)),
      lookup_token_(std::move(lookup_token)),
      forwarded_(metrics.Counter("rollertrace_router_calls_total", "Calls the router forwarded, by shard, method and "
                                                                   "outcome")),
      lookups_(metrics.Counter("rollertrace_router_device_lookups_total",
                               "Devices the router had to look up on the shards (not yet remembered)")
                   .Add({})) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 * 1024 * 1024);
  // A shard that restarts is reached again within a second, not after gRPC's
  // default back-off of up to two minutes.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  for (const auto& s : map_.shards()) {
    auto channel = grpc::CreateCustomChannel(s.address, credentials, args);
    shards_.push_back({v1::IngestService::NewStub(channel), v1::RegistryService::NewStub(channel),
                       v1::ComplianceService::NewStub(channel)});
  }
}

std::unique_ptr<grpc::ClientContext> Shards::Forwarded(const grpc::ServerContext& from, bool deadline) {
  auto c = std::make_unique<grpc::ClientContext>();
  // A shard briefly away (a restart) is waited for, up to the deadline.
  c->set_wait_for_ready(true);
  const auto& md = from.client_metadata();
  if (auto it = md.find("authorization"); it != md.end()) {
    c->AddMetadata("authorization", std::string(it->second.data(), it->second.size()));
  }
  if (!deadline) return c;
  if (from.deadline() != std::chrono::system_clock::time_point::max()) {
    c->set_deadline(from.deadline());
  } else {
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  }
  return c;
}

void Shards::Counted(size_t shard, const char* method, const grpc::Status& s) {
  forwarded_.Add({{"shard", map_.shards()[shard].name}, {"method", method}, {"outcome", s.ok() ? "ok" : "error"}})
      .Increment();
}

void Shards::Remember(const std::string& device_id, size_t shard) {
  std::lock_guard<std::mutex> lock(mu_);
  owner_[device_id] = shard;
  unknown_until_.erase(device_id);
}

absl::StatusOr<size_t> Shards::ShardOfDevice(const std::string& device_id) {
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = owner_.find(device_id); it != owner_.end()) return it->second;
    if (auto it = unknown_until_.find(device_id); it != unknown_until_.end() && it->second > now) {
      return absl::NotFoundError(util::Cat("device ", device_id, " is not registered on any shard"));
    }
  }
  lookups_.Increment();
  absl::Status failure;
  for (size_t i = 0; i < shards_.size(); ++i) {
    grpc::ClientContext c;
    if (!lookup_token_.empty()) c.AddMetadata("authorization", "Bearer " + lookup_token_);
    c.set_wait_for_ready(true);
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::GetDeviceRequest request;
    request.set_device_id(device_id);
    v1::DeviceRecord record;
    Status s = shards_[i].registry->Get(&c, request, &record);
    if (s.ok()) {
      Remember(device_id, i);
      return i;
    }
    if (s.error_code() == StatusCode::INVALID_ARGUMENT) return FromGrpc(s);
    if (s.error_code() != StatusCode::NOT_FOUND) {
      failure = absl::UnavailableError(
          util::Cat("cannot ask shard ", map_.shards()[i].name, " where device ", device_id, " is: ", s.error_message()));
    }
  }
  if (!failure.ok()) return failure;
  std::lock_guard<std::mutex> lock(mu_);
  if (unknown_until_.size() > 100000) unknown_until_.clear();  // bounded: hostile ids cannot fill it
  unknown_until_[device_id] = now + std::chrono::seconds(5);
  return absl::NotFoundError(util::Cat("device ", device_id, " is not registered on any shard"));
}

// ---- Ingest ----

v1::IngestResponse IngestRouter::Route(const ServerContext& context, const v1::IngestRequest& request) {
  v1::IngestResponse response;
  response.set_request_id(request.request_id());
  std::map<size_t, v1::IngestRequest> parts;
  std::string unavailable;
  for (const auto& batch : request.batches()) {
    absl::StatusOr<size_t> i = shards_.ShardOfDevice(batch.device_id());
    size_t shard = 0;
    if (i.ok()) {
      shard = *i;
    } else if (absl::IsNotFound(i.status()) || absl::IsInvalidArgument(i.status())) {
      shard = shards_.ShardOfClinic("");  // the default shard refuses it, counted, as one ingestd would
    } else {
      unavailable = std::string(i.status().message());
      continue;
    }
    v1::IngestRequest& part = parts[shard];
    part.set_request_id(request.request_id());
    part.set_bridge_received_unix_ms(request.bridge_received_unix_ms());
    *part.add_batches() = batch;
  }
  std::vector<std::pair<size_t, std::future<std::pair<Status, v1::IngestResponse>>>> calls;
  for (auto& [shard, part] : parts) {
    calls.emplace_back(shard, std::async(std::launch::async, [this, &context, shard = shard, &part = part] {
                         v1::IngestResponse r;
                         Status s = Forward(shards_, shard, context, "IngestBatch", [&](grpc::ClientContext* c) {
                           return shards_.ingest(shard).IngestBatch(c, part, &r);
                         });
                         return std::make_pair(s, std::move(r));
                       }));
  }
  for (auto& [shard, call] : calls) {
    auto [s, r] = call.get();
    for (auto& a : *r.mutable_acks()) *response.add_acks() = std::move(a);
    for (auto& j : *r.mutable_rejections()) *response.add_rejections() = std::move(j);
    for (auto& c : *r.mutable_commands()) *response.add_commands() = std::move(c);
    if (!s.ok()) {
      unavailable = util::Cat("shard ", shards_.shard(shard).name, ": ", s.error_message());
    } else if (!r.unavailable().empty()) {
      unavailable = util::Cat("shard ", shards_.shard(shard).name, ": ", r.unavailable());
    }
  }
  if (!unavailable.empty()) {
    // Sending the whole request again is safe: what a shard stored is acknowledged again, not stored twice.
    response.set_unavailable(unavailable);
    response.set_retry_after_ms(500);
  }
  return response;
}

Status IngestRouter::IngestBatch(ServerContext* context, const v1::IngestRequest* request, v1::IngestResponse* response) {
  *response = Route(*context, *request);
  if (!response->unavailable().empty()) return {StatusCode::RESOURCE_EXHAUSTED, response->unavailable()};
  return Status::OK;
}

Status IngestRouter::Ingest(ServerContext* context,
                            grpc::ServerReaderWriter<v1::IngestResponse, v1::IngestRequest>* stream) {
  // Requests are routed side by side; answers go back in request order.
  constexpr size_t kInFlight = 64;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::future<v1::IngestResponse>> answers;
  bool reading = true;
  bool write_failed = false;
  std::thread writer([&] {
    while (true) {
      std::future<v1::IngestResponse> next;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return !answers.empty() || !reading; });
        if (answers.empty()) return;
        next = std::move(answers.front());
        answers.pop_front();
      }
      cv.notify_all();
      v1::IngestResponse r = next.get();
      if (!write_failed && !stream->Write(r)) write_failed = true;
    }
  });
  // Commands a shard pushes (a lock, an unlock, a recall) come back on a
  // companion stream per shard, opened with this bridge's token, and go out
  // on this bridge's stream as the shard's own would (request_id 0).
  std::atomic<bool> stopping{false};
  std::mutex companions_mu;
  std::vector<grpc::ClientContext*> companions(shards_.size(), nullptr);
  using Companion = grpc::ClientReaderWriter<v1::IngestRequest, v1::IngestResponse>;
  std::vector<Companion*> companion_streams(shards_.size(), nullptr);  // guarded by companions_mu
  // Outbox indexes are each shard's own: the bridge is given the router's
  // (unique on this stream), and its confirmations go back to the shard that
  // raised the command under the shard's index.
  std::mutex owed_mu;
  CommandIndexes owed;  // guarded by owed_mu
  std::vector<std::thread> relays;
  for (size_t i = 0; i < shards_.size(); ++i) {
    relays.emplace_back([&, i] {
      while (!stopping) {
        std::unique_ptr<grpc::ClientContext> c = Shards::Forwarded(*context, /*deadline=*/false);
        {
          std::lock_guard<std::mutex> lock(companions_mu);
          if (stopping) return;
          companions[i] = c.get();
        }
        auto companion = shards_.ingest(i).Ingest(c.get());
        {
          std::lock_guard<std::mutex> lock(companions_mu);
          companion_streams[i] = companion.get();
        }
        v1::IngestResponse pushed;
        while (companion->Read(&pushed)) {
          if (pushed.commands_size() == 0) continue;
          pushed.set_request_id(0);
          {
            std::lock_guard<std::mutex> lock(owed_mu);
            for (auto& command : *pushed.mutable_commands()) {
              if (command.outbox_index() == 0) continue;
              command.set_outbox_index(owed.Number(i, command.outbox_index()));
            }
          }
          std::promise<v1::IngestResponse> ready;
          ready.set_value(std::move(pushed));
          {
            std::lock_guard<std::mutex> lock(mu);
            answers.push_back(ready.get_future());
          }
          cv.notify_all();
          pushed.Clear();
        }
        {
          std::lock_guard<std::mutex> lock(companions_mu);
          companions[i] = nullptr;
          companion_streams[i] = nullptr;
        }
        (void)companion->Finish();
        // The shard went away (a restart): open it again shortly.
        for (int k = 0; k < 10 && !stopping; ++k) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  }
  v1::IngestRequest request;
  while (!write_failed && stream->Read(&request)) {
    if (request.commands_published_size() > 0) {
      // Confirmations go to the shards that raised the commands, on their
      // companion streams (the shard sends a command again if its stream
      // closed before the confirmation came).
      std::map<size_t, v1::IngestRequest> confirm;
      {
        std::lock_guard<std::mutex> lock(owed_mu);
        for (uint64_t index : request.commands_published()) {
          if (std::optional<CommandIndexes::Owner> owner = owed.Confirm(index)) {
            confirm[owner->shard].add_commands_published(owner->index);
          }
        }
      }
      std::lock_guard<std::mutex> lock(companions_mu);
      for (const auto& [shard, c] : confirm) {
        if (companion_streams[shard] != nullptr) (void)companion_streams[shard]->Write(c);
      }
      request.clear_commands_published();
    }
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return answers.size() < kInFlight; });
    answers.push_back(std::async(std::launch::async, [this, context, r = std::move(request)] { return Route(*context, r); }));
    lock.unlock();
    cv.notify_all();
    request.Clear();
  }
  {
    std::lock_guard<std::mutex> lock(companions_mu);
    stopping = true;
    for (auto* c : companions) {
      if (c != nullptr) c->TryCancel();
    }
  }
  for (auto& t : relays) t.join();
  {
    std::lock_guard<std::mutex> lock(mu);
    reading = false;
  }
  cv.notify_all();
  writer.join();
  return Status::OK;
}

// ---- Registry ----

Status RegistryRouter::Register(ServerContext* context, const v1::RegisterRequest* request, v1::Device* response) {
  const size_t i = shards_.ShardOfClinic(request->device().clinic());
  Status s = Forward(shards_, i, *context, "Register",
                     [&](grpc::ClientContext* c) { return shards_.registry(i).Register(c, *request, response); });
  if (s.ok()) shards_.Remember(request->device().device_id(), i);
  return s;
}

Status RegistryRouter::Get(ServerContext* context, const v1::GetDeviceRequest* request, v1::DeviceRecord* response) {
  return ByDevice(shards_, *context, request->device_id(), "Get", [&](size_t i, grpc::ClientContext* c) {
    return shards_.registry(i).Get(c, *request, response);
  });
}

Status RegistryRouter::List(ServerContext* context, const v1::ListDevicesRequest* request,
                            v1::ListDevicesResponse* response) {
  Status s = FanOut<v1::ListDevicesResponse>(
      shards_, *context, "List",
      [&](size_t i, grpc::ClientContext* c, v1::ListDevicesResponse* one) { return shards_.registry(i).List(c, *request, one); },
      [&](v1::ListDevicesResponse one) {
        for (auto& d : *one.mutable_devices()) *response->add_devices() = std::move(d);
      });
  std::sort(response->mutable_devices()->begin(), response->mutable_devices()->end(),
            [](const v1::DeviceRecord& a, const v1::DeviceRecord& b) { return a.device().device_id() < b.device().device_id(); });
  return s;
}

Status RegistryRouter::Retire(ServerContext* context, const v1::RetireRequest* request, v1::Device* response) {
  return ByDevice(shards_, *context, request->device_id(), "Retire", [&](size_t i, grpc::ClientContext* c) {
    return shards_.registry(i).Retire(c, *request, response);
  });
}

Status RegistryRouter::Unlock(ServerContext* context, const v1::UnlockRequest* request, v1::Device* response) {
  return ByDevice(shards_, *context, request->device_id(), "Unlock", [&](size_t i, grpc::ClientContext* c) {
    return shards_.registry(i).Unlock(c, *request, response);
  });
}

// ---- Compliance ----

Status ComplianceRouter::WhoAmI(ServerContext* context, const v1::WhoAmIRequest* request, v1::WhoAmIResponse* response) {
  return Forward(shards_, 0, *context, "WhoAmI",
                 [&](grpc::ClientContext* c) { return shards_.compliance(0).WhoAmI(c, *request, response); });
}

Status ComplianceRouter::Export(ServerContext* context, const v1::ExportRequest* request,
                                grpc::ServerWriter<v1::ArchiveChunk>* writer) {
  std::set<size_t> owners;
  for (const auto& id : request->device_ids()) {
    absl::StatusOr<size_t> i = shards_.ShardOfDevice(id);
    if (!i.ok()) return ToGrpc(i.status());
    owners.insert(*i);
  }
  if (request->device_ids().empty()) return ExportPeriod(*context, *request, writer);
  if (owners.size() != 1) {
    return {StatusCode::FAILED_PRECONDITION,
            "these devices are on different shards: export each shard's devices separately"};
  }
  const size_t i = *owners.begin();
  return Forward(shards_, i, *context, "Export", [&](grpc::ClientContext* c) {
    auto reader = shards_.compliance(i).Export(c, *request);
    v1::ArchiveChunk chunk;
    while (reader->Read(&chunk)) {
      if (!writer->Write(chunk)) {
        c->TryCancel();
        break;
      }
    }
    return reader->Finish();
  });
}

// A period spans every shard: each shard's archive of the period, one after
// the other under one header, as one archive. Every record belongs to one
// device and every device to one shard, so the archive is what one ingestd
// holding every clinic would have exported; it imports into a single-machine
// ingestd (through the router it is refused as spanning shards).
Status ComplianceRouter::ExportPeriod(const ServerContext& context, const v1::ExportRequest& request,
                                      grpc::ServerWriter<v1::ArchiveChunk>* writer) {
  v1::ExportRequest one = request;
  if (one.to_unix_ms() <= 0) {  // every shard's "now" the same
    one.set_to_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count());
  }
  struct Part {
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<grpc::ClientReader<v1::ArchiveChunk>> reader;
    v1::ArchiveChunk first;
  };
  std::vector<Part> parts(shards_.size());
  auto failed = [&](size_t i, Status s) {
    shards_.Counted(i, "Export", s);
    for (Part& p : parts) {
      if (p.context) p.context->TryCancel();
    }
    return Status{s.error_code(), util::Cat("shard ", shards_.shard(i).name, ": ", s.error_message())};
  };
  // The headers first: the archive's names every device of every shard.
  v1::ArchiveChunk head;
  for (size_t i = 0; i < parts.size(); ++i) {
    Part& p = parts[i];
    p.context = Shards::Forwarded(context);
    p.reader = shards_.compliance(i).Export(p.context.get(), one);
    if (!p.reader->Read(&p.first) || !p.first.has_header()) {
      Status s = p.reader->Finish();
      return failed(i, s.ok() ? Status{StatusCode::INTERNAL, "its archive has no header"} : s);
    }
    v1::ArchiveHeader* h = head.mutable_header();
    if (i == 0) {
      *h = p.first.header();
      h->clear_device_ids();
    }
    h->set_created_unix_ms(std::max(h->created_unix_ms(), p.first.header().created_unix_ms()));
    for (const std::string& id : p.first.header().device_ids()) h->add_device_ids(id);
  }
  std::sort(head.mutable_header()->mutable_device_ids()->begin(), head.mutable_header()->mutable_device_ids()->end());
  if (!writer->Write(head)) return failed(0, {StatusCode::CANCELLED, "the client went away"});
  uint64_t records = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    Part& p = parts[i];
    uint64_t mine = 0;
    bool trailer = false;
    v1::ArchiveChunk chunk = std::move(p.first);
    chunk.clear_header();
    do {
      if (chunk.has_trailer()) {
        trailer = chunk.trailer().records() == mine + static_cast<uint64_t>(chunk.records_size());
        chunk.clear_trailer();
      }
      mine += static_cast<uint64_t>(chunk.records_size());
      if (chunk.records_size() > 0 && !writer->Write(chunk)) {
        return failed(i, {StatusCode::CANCELLED, "the client went away"});
      }
    } while (p.reader->Read(&chunk));
    Status s = p.reader->Finish();
    if (s.ok() && !trailer) s = {StatusCode::INTERNAL, "its archive ended without a matching trailer"};
    if (!s.ok()) return failed(i, s);
    shards_.Counted(i, "Export", s);
    records += mine;
  }
  v1::ArchiveChunk tail;
  tail.mutable_trailer()->set_records(records);
  if (!writer->Write(tail)) return {StatusCode::CANCELLED, "the client went away"};
  return Status::OK;
}

Status ComplianceRouter::Import(ServerContext* context, grpc::ServerReader<v1::ArchiveChunk>* reader,
                                v1::ImportResult* response) {
  // An archive goes to the shard of its devices' clinics: each device it
  // holds comes with its definition, which names the clinic. It is held here
  // until the whole archive has arrived (the shard checks it whole anyway),
  // and refused if its clinics live on different shards: one import is one
  // command of one shard's log.
  std::vector<v1::ArchiveChunk> held;
  size_t bytes = 0;
  std::map<size_t, std::set<std::string>> clinics;  // shard -> the archive's clinics on it
  v1::ArchiveChunk chunk;
  while (reader->Read(&chunk)) {
    bytes += chunk.ByteSizeLong();
    if (bytes > kMaxImportBytes) {
      return {StatusCode::RESOURCE_EXHAUSTED,
              util::Cat("the archive is larger than ", kMaxImportBytes >> 20,
                        " MiB, the most the router holds; import it into its shard directly; nothing was imported")};
    }
    for (const v1::ArchiveRecord& r : chunk.records()) {
      if (r.kind() != kDeviceRecordKind) continue;
      v1::DeviceRecord d;
      if (!d.ParseFromString(r.value())) continue;  // the shard names what is wrong with it
      clinics[shards_.ShardOfClinic(d.device().clinic())].insert(d.device().clinic());
    }
    held.push_back(std::move(chunk));
  }
  if (context->IsCancelled()) return {StatusCode::CANCELLED, "the import was cancelled; nothing was imported"};
  if (clinics.size() > 1) {
    std::string where;
    for (const auto& [i, names] : clinics) {
      where += util::Cat(where.empty() ? "" : "; ", shards_.shard(i).name, ":");
      for (const std::string& c : names) where += util::Cat(" ", c.empty() ? "(no clinic)" : c);
    }
    return {StatusCode::FAILED_PRECONDITION,
            util::Cat("the archive holds devices of clinics on different shards (", where,
                      "): export and import each shard's clinics separately; nothing was imported")};
  }
  // With no device definition at all the default shard says what is wrong.
  const size_t i = clinics.empty() ? shards_.ShardOfClinic("") : clinics.begin()->first;
  return Forward(shards_, i, *context, "Import", [&](grpc::ClientContext* c) {
    std::unique_ptr<grpc::ClientWriter<v1::ArchiveChunk>> writer = shards_.compliance(i).Import(c, response);
    for (const v1::ArchiveChunk& one : held) {
      if (!writer->Write(one)) break;  // the shard has answered: Finish says how
    }
    writer->WritesDone();
    Status s = writer->Finish();
    if (s.ok()) {
      for (const v1::ArchiveChunk& one : held) {
        for (const std::string& id : one.header().device_ids()) shards_.Remember(id, i);
      }
    }
    return s;
  });
}

Status ComplianceRouter::Backup(ServerContext* context, const v1::BackupRequest* request, v1::BackupResult* response) {
  // Each shard backs up its own store, into <directory>-<shard> on its own machine.
  for (size_t i = 0; i < shards_.size(); ++i) {
    v1::BackupRequest one = *request;
    one.set_directory(util::Cat(request->directory(), "-", shards_.shard(i).name));
    v1::BackupResult r;
    Status s = Forward(shards_, i, *context, "Backup",
                       [&](grpc::ClientContext* c) { return shards_.compliance(i).Backup(c, one, &r); });
    if (!s.ok()) return {s.error_code(), util::Cat("shard ", shards_.shard(i).name, ": ", s.error_message())};
    response->set_files(response->files() + r.files());
    response->set_bytes(response->bytes() + r.bytes());
  }
  response->set_directory(util::Cat(request->directory(), "-<shard>"));
  return Status::OK;
}

void MergeReport(const v1::PeriodReport& from, v1::PeriodReport* into) {
  const auto* d = v1::PeriodReport::descriptor();
  const auto* r = v1::PeriodReport::GetReflection();
  for (int f = 0; f < d->field_count(); ++f) {
    const auto* field = d->field(f);
    if (field->is_repeated() && field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
      for (int k = 0; k < r->FieldSize(from, field); ++k) {
        r->AddMessage(into, field)->CopyFrom(r->GetRepeatedMessage(from, field, k));
      }
    } else if (field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_UINT32) {
      r->SetUInt32(into, field, r->GetUInt32(*into, field) + r->GetUInt32(from, field));  // the summary counts
    }
  }
  if (into->from_unix_ms() == 0) into->set_from_unix_ms(from.from_unix_ms());
  into->set_to_unix_ms(std::max(into->to_unix_ms(), from.to_unix_ms()));
  into->set_generated_unix_ms(std::max(into->generated_unix_ms(), from.generated_unix_ms()));
  into->set_bucket_ms(std::max(into->bucket_ms(), from.bucket_ms()));
  // One bucket per start, one count per rule.
  std::map<int64_t, v1::ReportBucket> buckets;
  for (const auto& b : into->buckets()) {
    v1::ReportBucket& m = buckets[b.start_unix_ms()];
    m.set_start_unix_ms(b.start_unix_ms());
    m.set_sessions(m.sessions() + b.sessions());
    m.set_sessions_denied(m.sessions_denied() + b.sessions_denied());
    m.set_violations(m.violations() + b.violations());
    m.set_cycles(m.cycles() + b.cycles());
    m.set_cycles_failed(m.cycles_failed() + b.cycles_failed());
  }
  into->clear_buckets();
  for (auto& [start, b] : buckets) *into->add_buckets() = b;
  auto merge_rules = [](google::protobuf::RepeatedPtrField<v1::RuleCount>* counts) {
    std::map<std::string, uint32_t> by_rule;
    for (const auto& c : *counts) by_rule[c.rule()] += c.count();
    counts->Clear();
    for (const auto& [rule, n] : by_rule) {
      auto* c = counts->Add();
      c->set_rule(rule);
      c->set_count(n);
    }
  };
  merge_rules(into->mutable_violations_by_rule());
  // What each shard left out, and what the merged lists must leave out to
  // stay one answer.
  const v1::ReportOmitted& cut = from.omitted();
  v1::ReportOmitted* o = into->mutable_omitted();
  o->set_violations(o->violations() + cut.violations());
  o->set_cycles(o->cycles() + cut.cycles());
  o->set_pending_indicators(o->pending_indicators() + cut.pending_indicators());
  o->set_locked_rollers(o->locked_rollers() + cut.locked_rollers());
  o->set_retired_rollers(o->retired_rollers() + cut.retired_rollers());
  o->set_recalls(o->recalls() + cut.recalls());
  o->set_findings(o->findings() + cut.findings());
  codec::FitReportLists(into);
  merge_rules(into->mutable_warnings_by_rule());
}

Status ComplianceRouter::Report(ServerContext* context, const v1::ReportRequest* request, v1::PeriodReport* response) {
  return FanOut<v1::PeriodReport>(
      shards_, *context, "Report",
      [&](size_t i, grpc::ClientContext* c, v1::PeriodReport* one) { return shards_.compliance(i).Report(c, *request, one); },
      [&](v1::PeriodReport one) { MergeReport(one, response); });
}

Status ComplianceRouter::Verify(ServerContext* context, const v1::VerifyRequest* request, v1::VerifyReport* response) {
  if (!request->device_id().empty()) {
    return ByDevice(shards_, *context, request->device_id(), "Verify", [&](size_t i, grpc::ClientContext* c) {
      return shards_.compliance(i).Verify(c, *request, response);
    });
  }
  response->set_intact(true);
  return FanOut<v1::VerifyReport>(
      shards_, *context, "Verify",
      [&](size_t i, grpc::ClientContext* c, v1::VerifyReport* one) { return shards_.compliance(i).Verify(c, *request, one); },
      [&](v1::VerifyReport one) {
        response->set_intact(response->intact() && one.intact());
        response->set_devices_checked(response->devices_checked() + one.devices_checked());
        response->set_records_checked(response->records_checked() + one.records_checked());
        for (auto& b : *one.mutable_breaks()) *response->add_breaks() = std::move(b);
      });
}

Status ComplianceRouter::GetRollerTrail(ServerContext* context, const v1::RollerTrailRequest* request,
                                        v1::RollerTrail* response) {
  return ByDevice(shards_, *context, request->device_id(), "GetRollerTrail", [&](size_t i, grpc::ClientContext* c) {
    return shards_.compliance(i).GetRollerTrail(c, *request, response);
  });
}

Status ComplianceRouter::GetPatientTrail(ServerContext* context, const v1::PatientTrailRequest* request,
                                         v1::PatientTrail* response) {
  // A patient is a clinic's, so one shard answers; every shard is asked.
  return FanOut<v1::PatientTrail>(
      shards_, *context, "GetPatientTrail",
      [&](size_t i, grpc::ClientContext* c, v1::PatientTrail* one) {
        return shards_.compliance(i).GetPatientTrail(c, *request, one);
      },
      [&](v1::PatientTrail one) {
        if (response->patient_pseudonym().empty()) response->set_patient_pseudonym(one.patient_pseudonym());
        for (auto& s : *one.mutable_sessions()) *response->add_sessions() = std::move(s);
        for (auto& c : *one.mutable_cycles()) *response->add_cycles() = std::move(c);
        response->mutable_omitted()->set_sessions(response->omitted().sessions() + one.omitted().sessions());
        response->mutable_omitted()->set_cycles(response->omitted().cycles() + one.omitted().cycles());
        codec::FitTrailLists(response);
      });
}

Status ComplianceRouter::GetCycleTrail(ServerContext* context, const v1::CycleRequest* request, v1::CycleTrail* response) {
  return ByDevice(shards_, *context, request->steriliser_id(), "GetCycleTrail", [&](size_t i, grpc::ClientContext* c) {
    return shards_.compliance(i).GetCycleTrail(c, *request, response);
  });
}

Status ComplianceRouter::AuthorizeUse(ServerContext* context, const v1::AuthorizeRequest* request, v1::Decision* response) {
  return ByDevice(shards_, *context, request->device_id(), "AuthorizeUse", [&](size_t i, grpc::ClientContext* c) {
    return shards_.compliance(i).AuthorizeUse(c, *request, response);
  });
}

Status ComplianceRouter::RecordBiologicalIndicator(ServerContext* context, const v1::BiologicalIndicatorRequest* request,
                                                   v1::BiologicalIndicatorResponse* response) {
  return ByDevice(shards_, *context, request->steriliser_id(), "RecordBiologicalIndicator",
                  [&](size_t i, grpc::ClientContext* c) {
                    return shards_.compliance(i).RecordBiologicalIndicator(c, *request, response);
                  });
}

Status ComplianceRouter::GetCycle(ServerContext* context, const v1::CycleRequest* request, v1::CycleRecord* response) {
  return ByDevice(shards_, *context, request->steriliser_id(), "GetCycle", [&](size_t i, grpc::ClientContext* c) {
    return shards_.compliance(i).GetCycle(c, *request, response);
  });
}

Status ComplianceRouter::ListViolations(ServerContext* context, const v1::ViolationsRequest* request,
                                        v1::ViolationsResponse* response) {
  if (!request->device_id().empty()) {
    return ByDevice(shards_, *context, request->device_id(), "ListViolations", [&](size_t i, grpc::ClientContext* c) {
      return shards_.compliance(i).ListViolations(c, *request, response);
    });
  }
  // The shards one after the other: the token is "<shard index>:<that shard's token>".
  size_t i = 0;
  std::string inner;
  if (!request->page_token().empty()) {
    const std::string& t = request->page_token();
    const size_t colon = t.find(':');
    size_t parsed = 0;
    if (colon == std::string::npos || colon == 0 ||
        std::from_chars(t.data(), t.data() + colon, parsed).ptr != t.data() + colon || parsed >= shards_.size()) {
      return {StatusCode::INVALID_ARGUMENT, "page_token is not one this router gave"};
    }
    i = parsed;
    inner = t.substr(colon + 1);
  }
  v1::ViolationsRequest one = *request;
  one.set_page_token(inner);
  Status s = Forward(shards_, i, *context, "ListViolations",
                     [&](grpc::ClientContext* c) { return shards_.compliance(i).ListViolations(c, one, response); });
  if (!s.ok()) return {s.error_code(), util::Cat("shard ", shards_.shard(i).name, ": ", s.error_message())};
  if (!response->next_page_token().empty()) {
    response->set_next_page_token(util::Cat(i, ":", response->next_page_token()));
  } else if (i + 1 < shards_.size()) {
    response->set_next_page_token(util::Cat(i + 1, ":"));
  }
  return Status::OK;
}

Status ComplianceRouter::Recall(ServerContext* context, const v1::RecallRequest* request, v1::RecallReport* response) {
  return ByDevice(shards_, *context, request->steriliser_id(), "Recall", [&](size_t i, grpc::ClientContext* c) {
    return shards_.compliance(i).Recall(c, *request, response);
  });
}

Status ComplianceRouter::History(ServerContext* context, const v1::HistoryRequest* request, v1::HistoryResponse* response) {
  return ByDevice(shards_, *context, request->device_id(), "History", [&](size_t i, grpc::ClientContext* c) {
    return shards_.compliance(i).History(c, *request, response);
  });
}

Status ComplianceRouter::Gaps(ServerContext* context, const v1::GapsRequest* request, v1::GapsResponse* response) {
  return ByDevice(shards_, *context, request->device_id(), "Gaps", [&](size_t i, grpc::ClientContext* c) {
    return shards_.compliance(i).Gaps(c, *request, response);
  });
}

}  // namespace rollertrace::router
