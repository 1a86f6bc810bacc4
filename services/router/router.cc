#include "router/router.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <optional>
#include <thread>

#include "router/command_indexes.h"
#include "router/forward.h"
#include "util/cat.h"

namespace rollertrace::router {

using grpc::ServerContext;
using grpc::Status;
using grpc::StatusCode;
namespace v1 = rollertrace::v1;

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
  // Authorisations and audit reads go to a shard on a connection of their
  // own, not multiplexed behind the bridges' event streams (gRPC would share
  // one connection among the channels to a target; docs/ARCHITECTURE.md,
  // "Authorisations do not queue behind bulk events").
  grpc::ChannelArguments own_connection = args;
  own_connection.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  for (const auto& s : map_.shards()) {
    auto channel = grpc::CreateCustomChannel(s.address, credentials, args);
    auto decisions = grpc::CreateCustomChannel(s.address, credentials, own_connection);
    shards_.push_back({v1::IngestService::NewStub(channel), v1::RegistryService::NewStub(channel),
                       v1::ComplianceService::NewStub(decisions)});
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

}  // namespace rollertrace::router
