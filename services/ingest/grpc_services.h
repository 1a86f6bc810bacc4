// ingestd's gRPC services over the EventStore and the GroupCommitter: ingest
// and registry in grpc_services.cc, compliance in compliance_service.cc.
#pragma once

#include <functional>

#include "ingest/access.h"
#include "ingest/group_committer.h"
#include "rollertrace/v1/services.grpc.pb.h"
#include "store/event_store.h"

namespace rollertrace::ingest {

class IngestServiceImpl final : public rollertrace::v1::IngestService::Service {
 public:
  IngestServiceImpl(GroupCommitter& committer, const AccessControl& access)
      : committer_(committer), access_(access) {}

  // Reads and answers concurrently: requests keep flowing while earlier ones
  // wait for their commit; responses keep request order.
  grpc::Status Ingest(grpc::ServerContext* context,
                      grpc::ServerReaderWriter<rollertrace::v1::IngestResponse, rollertrace::v1::IngestRequest>*
                          stream) override;
  grpc::Status IngestBatch(grpc::ServerContext* context, const rollertrace::v1::IngestRequest* request,
                           rollertrace::v1::IngestResponse* response) override;

 private:
  GroupCommitter& committer_;
  const AccessControl& access_;
};

class RegistryServiceImpl final : public rollertrace::v1::RegistryService::Service {
 public:
  RegistryServiceImpl(store::EventStore& store, GroupCommitter& committer, const AccessControl& access,
                      std::function<int64_t()> clock)
      : store_(store), committer_(committer), access_(access), clock_(std::move(clock)) {}

  grpc::Status Register(grpc::ServerContext*, const rollertrace::v1::RegisterRequest* request,
                        rollertrace::v1::Device* response) override;
  grpc::Status Get(grpc::ServerContext*, const rollertrace::v1::GetDeviceRequest* request,
                   rollertrace::v1::DeviceRecord* response) override;
  grpc::Status List(grpc::ServerContext*, const rollertrace::v1::ListDevicesRequest* request,
                    rollertrace::v1::ListDevicesResponse* response) override;
  grpc::Status Retire(grpc::ServerContext*, const rollertrace::v1::RetireRequest* request,
                      rollertrace::v1::Device* response) override;
  grpc::Status Unlock(grpc::ServerContext*, const rollertrace::v1::UnlockRequest* request,
                      rollertrace::v1::Device* response) override;

 private:
  store::EventStore& store_;
  GroupCommitter& committer_;
  const AccessControl& access_;
  std::function<int64_t()> clock_;
};

class ComplianceServiceImpl final : public rollertrace::v1::ComplianceService::Service {
 public:
  ComplianceServiceImpl(store::EventStore& store, GroupCommitter& committer,
                        const pseudonym::Pseudonymizer& pseudonymizer, IngestMetrics& metrics,
                        const AccessControl& access, std::function<int64_t()> clock, std::string backup_root = {})
      : store_(store),
        committer_(committer),
        access_(access),
        pseudonymizer_(pseudonymizer),
        metrics_(metrics),
        clock_(std::move(clock)),
        backup_root_(std::move(backup_root)) {}

  grpc::Status AuthorizeUse(grpc::ServerContext*, const rollertrace::v1::AuthorizeRequest* request,
                            rollertrace::v1::Decision* response) override;
  grpc::Status RecordBiologicalIndicator(grpc::ServerContext*,
                                         const rollertrace::v1::BiologicalIndicatorRequest* request,
                                         rollertrace::v1::BiologicalIndicatorResponse* response) override;
  grpc::Status GetCycle(grpc::ServerContext*, const rollertrace::v1::CycleRequest* request,
                        rollertrace::v1::CycleRecord* response) override;
  grpc::Status Export(grpc::ServerContext*, const rollertrace::v1::ExportRequest* request,
                      grpc::ServerWriter<rollertrace::v1::ArchiveChunk>* writer) override;
  grpc::Status Import(grpc::ServerContext*, grpc::ServerReader<rollertrace::v1::ArchiveChunk>* reader,
                      rollertrace::v1::ImportResult* response) override;
  grpc::Status Backup(grpc::ServerContext*, const rollertrace::v1::BackupRequest* request,
                      rollertrace::v1::BackupResult* response) override;
  grpc::Status Report(grpc::ServerContext*, const rollertrace::v1::ReportRequest* request,
                      rollertrace::v1::PeriodReport* response) override;
  grpc::Status ListViolations(grpc::ServerContext*, const rollertrace::v1::ViolationsRequest* request,
                              rollertrace::v1::ViolationsResponse* response) override;
  grpc::Status Recall(grpc::ServerContext*, const rollertrace::v1::RecallRequest* request,
                      rollertrace::v1::RecallReport* response) override;
  grpc::Status GetRollerTrail(grpc::ServerContext*, const rollertrace::v1::RollerTrailRequest* request,
                              rollertrace::v1::RollerTrail* response) override;
  grpc::Status GetPatientTrail(grpc::ServerContext*, const rollertrace::v1::PatientTrailRequest* request,
                               rollertrace::v1::PatientTrail* response) override;
  grpc::Status Verify(grpc::ServerContext*, const rollertrace::v1::VerifyRequest* request,
                      rollertrace::v1::VerifyReport* response) override;
  // Verify also checks the latest checkpoint against this Ed25519 public key.
  void TrustCheckpointsSignedBy(std::string public_key) { trusted_key_ = std::move(public_key); }
  grpc::Status GetCycleTrail(grpc::ServerContext*, const rollertrace::v1::CycleRequest* request,
                             rollertrace::v1::CycleTrail* response) override;

  grpc::Status History(grpc::ServerContext*, const rollertrace::v1::HistoryRequest* request,
                       rollertrace::v1::HistoryResponse* response) override;
  grpc::Status Gaps(grpc::ServerContext*, const rollertrace::v1::GapsRequest* request,
                    rollertrace::v1::GapsResponse* response) override;
  grpc::Status WhoAmI(grpc::ServerContext*, const rollertrace::v1::WhoAmIRequest* request,
                      rollertrace::v1::WhoAmIResponse* response) override;

 private:
  store::EventStore& store_;
  GroupCommitter& committer_;
  const AccessControl& access_;
  const pseudonym::Pseudonymizer& pseudonymizer_;
  IngestMetrics& metrics_;
  std::function<int64_t()> clock_;
  std::string backup_root_;  // backups go only under it; empty: refused
  std::string trusted_key_;
};

// absl::Status -> grpc::Status with the same code and message.
grpc::Status ToGrpc(const absl::Status& status);

}  // namespace rollertrace::ingest
