// rollerctl: the compliance officer's and administrator's command line.
#include <CLI/CLI.hpp>
#include <iostream>

#include "rollerctl/commands.h"

int main(int argc, char** argv) {
  CLI::App app{
      "rollerctl - RollerTrace's command line for compliance officers and administrators.\n"
      "Talks to ingestd over gRPC. Tables by default; --json for the API's JSON."};
  app.require_subcommand(1);
  std::string server = "127.0.0.1:50051";
  bool json = false;
  int timeout_s = 10;
  app.add_option("--server", server, "ingestd gRPC address")->capture_default_str();
  app.add_flag("--json", json, "Print JSON (protobuf JSON mapping) instead of tables");
  app.add_option("--timeout", timeout_s, "Seconds to wait for each call")->capture_default_str()->check(CLI::Range(1, 3600));

  rollertrace::v1::Device device;
  std::string kind = "roller";
  std::string id, model, clinic, reason;
  uint32_t needles = 0;
  double needle_mm = 0;
  uint64_t rated = 0;
  auto* reg = app.add_subcommand("register", "Register a roller or steriliser");
  reg->add_option("device", id, "Device serial")->required();
  reg->add_option("--kind", kind, "roller or steriliser")->capture_default_str()->check(CLI::IsMember({"roller", "steriliser"}));
  reg->add_option("--model", model, "Model name");
  reg->add_option("--clinic", clinic, "Clinic the device belongs to");
  reg->add_option("--needles", needles, "Needle count (rollers: at least 192)");
  reg->add_option("--needle-mm", needle_mm, "Needle length in mm (rollers: 0.25-2.5)");
  reg->add_option("--rated-penetrations", rated, "Rated life in needle penetrations (revolutions x needles)");

  std::string list_kind = "all";
  auto* list = app.add_subcommand("list", "List devices with their ingest state");
  list->add_option("--kind", list_kind, "roller, steriliser or all")->capture_default_str()->check(CLI::IsMember({"roller", "steriliser", "all"}));

  auto* show = app.add_subcommand("show", "Show one device");
  show->add_option("device", id, "Device serial")->required();

  uint64_t from = 1, limit = 0;
  auto* history = app.add_subcommand("history", "A device's events in sequence order");
  history->add_option("device", id, "Device serial")->required();
  history->add_option("--from", from, "First sequence")->capture_default_str();
  history->add_option("--limit", limit, "At most this many events; 0 = all")->capture_default_str();

  auto* gaps = app.add_subcommand("gaps", "Sequence gaps of a device: when each opened, whether it closed");
  gaps->add_option("device", id, "Device serial")->required();

  auto* retire = app.add_subcommand("retire", "Retire a device for good");
  retire->add_option("device", id, "Device serial")->required();
  retire->add_option("--reason", reason, "Why (course finished, worn, recalled, ...)")->required();

  CLI11_PARSE(app, argc, argv);

  rollertrace::rollerctl::Context ctx;
  ctx.channel = grpc::CreateChannel(server, grpc::InsecureChannelCredentials());
  ctx.json = json;
  ctx.timeout = std::chrono::seconds(timeout_s);
  ctx.out = &std::cout;
  ctx.err = &std::cerr;

  if (*reg) {
    device.set_device_id(id);
    device.set_kind(kind == "steriliser" ? rollertrace::v1::DEVICE_KIND_STERILISER : rollertrace::v1::DEVICE_KIND_ROLLER);
    device.set_model(model);
    device.set_clinic(clinic);
    device.set_needle_count(needles);
    device.set_needle_length_mm(needle_mm);
    device.set_rated_penetrations(rated);
    return rollertrace::rollerctl::Register(ctx, device);
  }
  if (*list) {
    auto k = list_kind == "roller"       ? rollertrace::v1::DEVICE_KIND_ROLLER
             : list_kind == "steriliser" ? rollertrace::v1::DEVICE_KIND_STERILISER
                                         : rollertrace::v1::DEVICE_KIND_UNSPECIFIED;
    return rollertrace::rollerctl::List(ctx, k);
  }
  if (*show) return rollertrace::rollerctl::Show(ctx, id);
  if (*history) return rollertrace::rollerctl::History(ctx, id, from, limit);
  if (*gaps) return rollertrace::rollerctl::Gaps(ctx, id);
  if (*retire) return rollertrace::rollerctl::Retire(ctx, id, reason);
  return 2;
}
