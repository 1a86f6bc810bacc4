#include "ingest/grpc_services.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "codec/codec.h"
#include "util/cat.h"

namespace rollertrace::ingest {

using rollertrace::v1::IngestRequest;
using rollertrace::v1::IngestResponse;

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

grpc::Status IngestServiceImpl::Ingest(grpc::ServerContext* context,
                                       grpc::ServerReaderWriter<IngestResponse, IngestRequest>* stream) {
  if (grpc::Status denied = access_.Check(context, {Role::kDevice, Role::kAdmin}, "Ingest"); !denied.ok()) return denied;
  // Responses in order: commits as they finish, and commands raised outside
  // ingestion as responses of their own (request id 0). Shared with the
  // command sink, which may outlive this call by a moment.
  struct Outgoing {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::future<IngestResponse>> pending;
    bool reading_done = false;
  };
  auto out = std::make_shared<Outgoing>();

  std::thread writer([&] {
    bool can_write = true;
    while (true) {
      std::future<IngestResponse> next;
      {
        std::unique_lock<std::mutex> lock(out->mu);
        out->cv.wait(lock, [&] { return out->reading_done || !out->pending.empty(); });
        if (out->pending.empty()) return;
        next = std::move(out->pending.front());
        out->pending.pop_front();
      }
      IngestResponse response = next.get();  // always wait: the commit must finish before we return
      if (can_write) can_write = stream->Write(response);
    }
  });
  const uint64_t sink = committer_.outbox().AddSink([out](std::vector<rollertrace::v1::Command>& commands) {
    std::lock_guard<std::mutex> lock(out->mu);
    if (out->reading_done) return false;
    IngestResponse response;
    for (auto& c : commands) *response.add_commands() = std::move(c);
    std::promise<IngestResponse> ready;
    ready.set_value(std::move(response));
    out->pending.push_back(ready.get_future());
    out->cv.notify_one();
    return true;
  });

  IngestRequest request;
  while (stream->Read(&request)) {
    if (request.commands_published_size() > 0) {
      committer_.outbox().Published({request.commands_published().begin(), request.commands_published().end()});
    }
    std::future<IngestResponse> answer = committer_.Submit(std::move(request));
    {
      std::lock_guard<std::mutex> lock(out->mu);
      out->pending.push_back(std::move(answer));
    }
    out->cv.notify_one();
    request.Clear();
  }
  committer_.outbox().RemoveSink(sink);
  {
    std::lock_guard<std::mutex> lock(out->mu);
    out->reading_done = true;
  }
  out->cv.notify_one();
  writer.join();
  return grpc::Status::OK;
}

grpc::Status IngestServiceImpl::IngestBatch(grpc::ServerContext* context, const IngestRequest* request,
                                            IngestResponse* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kDevice, Role::kAdmin}, "IngestBatch"); !denied.ok()) return denied;
  *response = committer_.SubmitAndWait(*request);
  // A gateway is told plainly: nothing of it was stored, send it again.
  if (!response->unavailable().empty()) return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, response->unavailable());
  return grpc::Status::OK;
}

grpc::Status RegistryServiceImpl::Register(grpc::ServerContext* context, const rollertrace::v1::RegisterRequest* request,
                                           rollertrace::v1::Device* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kAdmin}, "Register"); !denied.ok()) return denied;
  if (absl::Status w = committer_.StoreWritable(); !w.ok()) return ToGrpc(w);
  absl::StatusOr<rollertrace::v1::Device> device = store::Register(store_, request->device(), clock_());
  if (!device.ok()) return ToGrpc(device.status());
  if (absl::Status d = committer_.AwaitDurable(); !d.ok()) return ToGrpc(d);
  *response = *device;
  return grpc::Status::OK;
}

grpc::Status RegistryServiceImpl::Get(grpc::ServerContext* context, const rollertrace::v1::GetDeviceRequest* request,
                                      rollertrace::v1::DeviceRecord* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kAuditor, Role::kAdmin}, "Get"); !denied.ok()) return denied;
  absl::StatusOr<rollertrace::v1::DeviceRecord> record = store_.audit().GetDevice(request->device_id());
  if (!record.ok()) return ToGrpc(record.status());
  *response = *record;
  return grpc::Status::OK;
}

grpc::Status RegistryServiceImpl::List(grpc::ServerContext* context, const rollertrace::v1::ListDevicesRequest* request,
                                       rollertrace::v1::ListDevicesResponse* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kAuditor, Role::kAdmin}, "List"); !denied.ok()) return denied;
  absl::StatusOr<std::vector<rollertrace::v1::DeviceRecord>> records = store_.audit().ListDevices(request->kind());
  if (!records.ok()) return ToGrpc(records.status());
  for (auto& r : *records) *response->add_devices() = std::move(r);
  return grpc::Status::OK;
}

grpc::Status RegistryServiceImpl::Retire(grpc::ServerContext* context, const rollertrace::v1::RetireRequest* request,
                                         rollertrace::v1::Device* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kAdmin}, "Retire"); !denied.ok()) return denied;
  if (absl::Status w = committer_.StoreWritable(); !w.ok()) return ToGrpc(w);
  if (request->reason().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "a retirement needs a reason");
  }
  absl::StatusOr<rollertrace::v1::Device> device = store::Retire(store_, request->device_id(), request->reason(), clock_());
  if (!device.ok()) return ToGrpc(device.status());
  if (absl::Status d = committer_.AwaitDurable(); !d.ok()) return ToGrpc(d);
  *response = *device;
  return grpc::Status::OK;
}

grpc::Status RegistryServiceImpl::Unlock(grpc::ServerContext* context, const rollertrace::v1::UnlockRequest* request,
                                         rollertrace::v1::Device* response) {
  if (grpc::Status denied = access_.Check(context, {Role::kAdmin}, "Unlock"); !denied.ok()) return denied;
  if (absl::Status w = committer_.StoreWritable(); !w.ok()) return ToGrpc(w);
  rollertrace::v1::Command command;
  absl::StatusOr<rollertrace::v1::Device> device =
      store::Unlock(store_, request->device_id(), request->reason(), request->by(), clock_(), &command);
  if (!device.ok()) return ToGrpc(device.status());
  if (absl::Status d = committer_.AwaitDurable(); !d.ok()) return ToGrpc(d);
  committer_.outbox().Enqueue({command});
  *response = *device;
  return grpc::Status::OK;
}

}  // namespace rollertrace::ingest
