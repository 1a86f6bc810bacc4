// rollerctl export, import and backup.
//
// An archive file is a sequence of size-delimited ArchiveChunk messages (the
// protobuf "delimited" framing); the first carries the ArchiveHeader.
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <google/protobuf/util/delimited_message_util.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "rollerctl/commands.h"
#include "util/cat.h"

namespace rollertrace::rollerctl {
namespace {

using Clock = std::chrono::steady_clock;

// Prints "<verb> N records (M MB)" to err at most every two seconds.
class Progress {
 public:
  Progress(const Context& ctx, const char* verb) : ctx_(ctx), verb_(verb) {}
  void Add(const rollertrace::v1::ArchiveChunk& chunk) {
    records_ += chunk.records_size();
    bytes_ += chunk.ByteSizeLong();
    if (Clock::now() - last_ < std::chrono::seconds(2)) return;
    last_ = Clock::now();
    *ctx_.err << verb_ << " " << records_ << " records (" << bytes_ / 1'000'000 << " MB) ...\n";
  }
  uint64_t records() const { return records_; }
  uint64_t bytes() const { return bytes_; }

 private:
  const Context& ctx_;
  const char* verb_;
  uint64_t records_ = 0;
  uint64_t bytes_ = 0;
  Clock::time_point last_ = Clock::now();
};

std::unique_ptr<grpc::ClientContext> LongCall(const Context& ctx) {
  auto call = Call(ctx);
  call->set_deadline(std::chrono::system_clock::now() + std::max(ctx.timeout, std::chrono::seconds(3600)));
  return call;
}

}  // namespace

int Export(const Context& ctx, const rollertrace::v1::ExportRequest& request, const std::string& path) {
  const std::string partial = path + ".partial";
  std::ofstream file(partial, std::ios::binary | std::ios::trunc);
  if (!file) {
    *ctx.err << "rollerctl: cannot write " << partial << "\n";
    return 1;
  }
  auto stub = rollertrace::v1::ComplianceService::NewStub(ctx.channel);
  auto call = LongCall(ctx);
  auto reader = stub->Export(call.get(), request);
  rollertrace::v1::ArchiveChunk chunk;
  rollertrace::v1::ArchiveHeader header;
  Progress progress(ctx, "exported");
  bool write_failed = false;
  while (reader->Read(&chunk)) {
    if (chunk.has_header()) header = chunk.header();
    progress.Add(chunk);
    if (!google::protobuf::util::SerializeDelimitedToOstream(chunk, &file)) write_failed = true;
  }
  grpc::Status s = reader->Finish();
  file.close();
  if (!s.ok() || write_failed || !file) {
    std::filesystem::remove(partial);
    if (!s.ok()) return Fail(ctx, s);
    *ctx.err << "rollerctl: writing " << path << " failed (disk full?)\n";
    return 1;
  }
  std::filesystem::rename(partial, path);
  *ctx.out << "exported " << header.device_ids_size() << " devices, " << progress.records() << " records ("
           << progress.bytes() / 1000 << " kB) to " << path << "\n";
  std::string ids;
  for (const auto& id : header.device_ids()) ids += " " + id;
  *ctx.out << "devices:" << (ids.empty() ? " none" : ids) << "\n";
  if (!header.selection().empty()) *ctx.out << "chosen: " << header.selection() << "\n";
  return 0;
}

int Import(const Context& ctx, const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    *ctx.err << "rollerctl: cannot read " << path << "\n";
    return 2;
  }
  google::protobuf::io::IstreamInputStream input(&file);
  auto stub = rollertrace::v1::ComplianceService::NewStub(ctx.channel);
  auto call = LongCall(ctx);
  rollertrace::v1::ImportResult result;
  auto writer = stub->Import(call.get(), &result);
  rollertrace::v1::ArchiveChunk chunk;
  Progress progress(ctx, "imported");
  bool clean_eof = false;
  bool first = true;
  bool server_stopped = false;
  // ParseDelimited merges into the message: each chunk starts from empty.
  while ((chunk.Clear(), google::protobuf::util::ParseDelimitedFromZeroCopyStream(&chunk, &input, &clean_eof))) {
    if (first && chunk.header().format().rfind("rollertrace-archive/", 0) != 0) {
      *ctx.err << "rollerctl: " << path << " is not a RollerTrace archive (made by rollerctl export)\n";
      writer->WritesDone();
      call->TryCancel();
      return 2;
    }
    first = false;
    progress.Add(chunk);
    if (!writer->Write(chunk)) {  // the server stopped reading: Finish says why
      server_stopped = true;
      break;
    }
  }
  if (!server_stopped && (first || !clean_eof)) {
    // Cancel, never close normally: ingestd then writes nothing of it.
    *ctx.err << "rollerctl: " << path << (first ? " is empty or not an archive" : " is cut short or corrupt")
             << "; import cancelled, nothing was imported\n";
    call->TryCancel();
    (void)writer->Finish();
    return 2;
  }
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  if (!s.ok()) return Fail(ctx, s);
  *ctx.out << "imported " << result.devices() << " devices, " << result.records()
           << " records; check them with: rollerctl verify\n";
  return 0;
}

int Backup(const Context& ctx, const std::string& directory) {
  auto stub = rollertrace::v1::ComplianceService::NewStub(ctx.channel);
  rollertrace::v1::BackupRequest request;
  request.set_directory(directory);
  rollertrace::v1::BackupResult result;
  grpc::Status s = stub->Backup(LongCall(ctx).get(), request, &result);
  if (!s.ok()) return Fail(ctx, s);
  if (ctx.json) {
    PrintJson(ctx, result);
    return 0;
  }
  *ctx.out << "backup written by ingestd to " << result.directory() << ": " << result.files() << " files, "
           << result.bytes() / 1000 << " kB, consistent at RocksDB sequence " << result.sequence() << "\n"
           << "restore: stop ingestd, copy the directory to its --data-dir (empty), start ingestd, rollerctl verify\n";
  return 0;
}

}  // namespace rollertrace::rollerctl
