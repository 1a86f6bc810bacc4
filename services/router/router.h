// rollertrace-router: the one gRPC address of a cluster (docs/ARCHITECTURE.md,
// "The router"). Stateless: forwards every call, with the caller's bearer
// token, to the shard that owns it (a device's clinic, from the shard map),
// and fans cross-clinic reads out to every shard and merges the answers.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cluster/shard_map.h"
#include "metrics/metrics.h"
#include "rollertrace/v1/services.grpc.pb.h"

namespace rollertrace::router {

// The shards, their stubs, and which shard owns which device.
class Shards {
 public:
  // lookup_token: a bearer token (auditor or admin) the router uses to ask
  // the shards where a device is; empty with shards run --insecure-no-auth.
  Shards(cluster::ShardMap map, const std::shared_ptr<grpc::ChannelCredentials>& credentials,
         std::string lookup_token, metrics::Metrics& metrics);

  size_t size() const { return shards_.size(); }
  const cluster::Shard& shard(size_t i) const { return map_.shards()[i]; }
  size_t ShardOfClinic(const std::string& clinic) const { return map_.ShardOf(clinic); }
  rollertrace::v1::IngestService::Stub& ingest(size_t i) { return *shards_[i].ingest; }
  rollertrace::v1::RegistryService::Stub& registry(size_t i) { return *shards_[i].registry; }
  rollertrace::v1::ComplianceService::Stub& compliance(size_t i) { return *shards_[i].compliance; }

  // The shard holding `device_id`: asked once, then remembered (a device
  // never changes clinic). NotFound when no shard has it.
  absl::StatusOr<size_t> ShardOfDevice(const std::string& device_id);
  void Remember(const std::string& device_id, size_t shard);

  // A client context carrying the caller's token and (unless `deadline` is
  // false: a stream that lives as long as the caller's) its deadline.
  static std::unique_ptr<grpc::ClientContext> Forwarded(const grpc::ServerContext& from, bool deadline = true);
  void Counted(size_t shard, const char* method, const grpc::Status& s);

 private:
  struct Stubs {
    std::unique_ptr<rollertrace::v1::IngestService::Stub> ingest;
    std::unique_ptr<rollertrace::v1::RegistryService::Stub> registry;
    std::unique_ptr<rollertrace::v1::ComplianceService::Stub> compliance;
  };
  cluster::ShardMap map_;
  std::vector<Stubs> shards_;
  std::string lookup_token_;
  prometheus::Family<prometheus::Counter>& forwarded_;
  prometheus::Counter& lookups_;
  std::mutex mu_;
  std::map<std::string, size_t> owner_;  // guarded by mu_
  std::map<std::string, std::chrono::steady_clock::time_point> unknown_until_;  // guarded by mu_
};

class IngestRouter final : public rollertrace::v1::IngestService::Service {
 public:
  explicit IngestRouter(Shards& shards) : shards_(shards) {}
  grpc::Status Ingest(grpc::ServerContext* context,
                      grpc::ServerReaderWriter<rollertrace::v1::IngestResponse, rollertrace::v1::IngestRequest>* stream)
      override;
  grpc::Status IngestBatch(grpc::ServerContext* context, const rollertrace::v1::IngestRequest* request,
                           rollertrace::v1::IngestResponse* response) override;

 private:
  // Splits the request by shard, sends each part, merges the answers.
  rollertrace::v1::IngestResponse Route(const grpc::ServerContext& context, const rollertrace::v1::IngestRequest& request);
  Shards& shards_;
};

class RegistryRouter final : public rollertrace::v1::RegistryService::Service {
 public:
  explicit RegistryRouter(Shards& shards) : shards_(shards) {}
  grpc::Status Register(grpc::ServerContext*, const rollertrace::v1::RegisterRequest*, rollertrace::v1::Device*) override;
  grpc::Status Get(grpc::ServerContext*, const rollertrace::v1::GetDeviceRequest*, rollertrace::v1::DeviceRecord*) override;
  grpc::Status List(grpc::ServerContext*, const rollertrace::v1::ListDevicesRequest*,
                    rollertrace::v1::ListDevicesResponse*) override;
  grpc::Status Retire(grpc::ServerContext*, const rollertrace::v1::RetireRequest*, rollertrace::v1::Device*) override;
  grpc::Status Unlock(grpc::ServerContext*, const rollertrace::v1::UnlockRequest*, rollertrace::v1::Device*) override;

 private:
  Shards& shards_;
};

class ComplianceRouter final : public rollertrace::v1::ComplianceService::Service {
 public:
  explicit ComplianceRouter(Shards& shards) : shards_(shards) {}
  grpc::Status WhoAmI(grpc::ServerContext*, const rollertrace::v1::WhoAmIRequest*, rollertrace::v1::WhoAmIResponse*) override;
  grpc::Status Export(grpc::ServerContext*, const rollertrace::v1::ExportRequest*,
                      grpc::ServerWriter<rollertrace::v1::ArchiveChunk>*) override;
  grpc::Status Import(grpc::ServerContext*, grpc::ServerReader<rollertrace::v1::ArchiveChunk>*,
                      rollertrace::v1::ImportResult*) override;
  grpc::Status Backup(grpc::ServerContext*, const rollertrace::v1::BackupRequest*, rollertrace::v1::BackupResult*) override;
  grpc::Status Report(grpc::ServerContext*, const rollertrace::v1::ReportRequest*, rollertrace::v1::PeriodReport*) override;
  grpc::Status Verify(grpc::ServerContext*, const rollertrace::v1::VerifyRequest*, rollertrace::v1::VerifyReport*) override;
  grpc::Status GetRollerTrail(grpc::ServerContext*, const rollertrace::v1::RollerTrailRequest*,
                              rollertrace::v1::RollerTrail*) override;
  grpc::Status GetPatientTrail(grpc::ServerContext*, const rollertrace::v1::PatientTrailRequest*,
                               rollertrace::v1::PatientTrail*) override;
  grpc::Status GetCycleTrail(grpc::ServerContext*, const rollertrace::v1::CycleRequest*, rollertrace::v1::CycleTrail*) override;
  grpc::Status AuthorizeUse(grpc::ServerContext*, const rollertrace::v1::AuthorizeRequest*, rollertrace::v1::Decision*) override;
  grpc::Status RecordBiologicalIndicator(grpc::ServerContext*, const rollertrace::v1::BiologicalIndicatorRequest*,
                                         rollertrace::v1::BiologicalIndicatorResponse*) override;
  grpc::Status GetCycle(grpc::ServerContext*, const rollertrace::v1::CycleRequest*, rollertrace::v1::CycleRecord*) override;
  grpc::Status ListViolations(grpc::ServerContext*, const rollertrace::v1::ViolationsRequest*,
                              rollertrace::v1::ViolationsResponse*) override;
  grpc::Status Recall(grpc::ServerContext*, const rollertrace::v1::RecallRequest*, rollertrace::v1::RecallReport*) override;
  grpc::Status History(grpc::ServerContext*, const rollertrace::v1::HistoryRequest*, rollertrace::v1::HistoryResponse*) override;
  grpc::Status Gaps(grpc::ServerContext*, const rollertrace::v1::GapsRequest*, rollertrace::v1::GapsResponse*) override;

 private:
  grpc::Status ExportPeriod(const grpc::ServerContext& context, const rollertrace::v1::ExportRequest& request,
                            grpc::ServerWriter<rollertrace::v1::ArchiveChunk>* writer);
  Shards& shards_;
};

// Merging the answers of every shard (exposed for tests).
void MergeReport(const rollertrace::v1::PeriodReport& from, rollertrace::v1::PeriodReport* into);

}  // namespace rollertrace::router
