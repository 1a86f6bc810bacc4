// What the router's services share to pass a call on to a shard: status
// conversions and the three ways of forwarding (to one shard, to a device's
// shard, to every shard). Internal to services/router.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "router/router.h"
#include "util/cat.h"

namespace rollertrace::router {

grpc::Status ToGrpc(const absl::Status& s);
absl::Status FromGrpc(const grpc::Status& s);

// Calls `call` on shard i with the caller's token; counted.
template <typename F>
grpc::Status Forward(Shards& shards, size_t i, const grpc::ServerContext& context, const char* method, F call) {
  std::unique_ptr<grpc::ClientContext> c = Shards::Forwarded(context);
  grpc::Status s = call(c.get());
  shards.Counted(i, method, s);
  return s;
}

template <typename F>
grpc::Status ByDevice(Shards& shards, const grpc::ServerContext& context, const std::string& device_id,
                      const char* method, F call) {
  absl::StatusOr<size_t> i = shards.ShardOfDevice(device_id);
  if (!i.ok()) return ToGrpc(i.status());
  return Forward(shards, *i, context, method, [&](grpc::ClientContext* c) { return call(*i, c); });
}

// Every shard; the first error other than NOT_FOUND wins, else NOT_FOUND when
// every shard said so, else OK. visit merges one shard's answer.
template <typename Resp, typename F, typename M>
grpc::Status FanOut(Shards& shards, const grpc::ServerContext& context, const char* method, F call, M merge) {
  grpc::Status not_found;
  size_t found = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    Resp one;
    grpc::Status s = Forward(shards, i, context, method, [&](grpc::ClientContext* c) { return call(i, c, &one); });
    if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
      not_found = s;
      continue;
    }
    if (!s.ok()) {
      return {s.error_code(), util::Cat("shard ", shards.shard(i).name, ": ", s.error_message())};
    }
    ++found;
    merge(std::move(one));
  }
  return found == 0 && !not_found.ok() ? not_found : grpc::Status::OK;
}

}  // namespace rollertrace::router
