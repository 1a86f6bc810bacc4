// rollertrace-console: the compliance officer's web console.
#include <CLI/CLI.hpp>
#include <iostream>
#include <thread>

#include "console/console.h"
#include "console/html.h"
#include "process/shutdown.h"
#include "rpc/credentials.h"

int main(int argc, char** argv) {
  rollertrace::process::BlockShutdownSignals();
  CLI::App app{
      "rollertrace-console - the audit in a browser: fleet, rollers, patients, cycles, violations, the period\n"
      "report and the ledger's verification, live. Users sign in with their ingestd role token (auditor or\n"
      "admin); every page is read from ingestd's gRPC API with that token, so the console can do nothing the\n"
      "user may not. Admins may record biological-indicator results, unlock and retire rollers."};
  rollertrace::console::ConsoleOptions options;
  std::string ingestd = "127.0.0.1:50051";
  std::string ingestd_ca;
  std::string metrics_listen = "127.0.0.1:9468";
  std::string zone = "UTC";
  int ttl_minutes = 30;
  app.add_option("--listen", options.listen, "HTTP(S) address; port 0 picks a free one")->capture_default_str();
  app.add_option("--ingestd", ingestd, "ingestd's gRPC address")->capture_default_str();
  app.add_option("--ingestd-tls-ca", ingestd_ca, "ingestd serves TLS: trust this CA certificate (PEM)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-cert", options.tls_cert, "Serve HTTPS with this certificate chain (PEM)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-key", options.tls_key, "...and this private key (PEM)")->check(CLI::ExistingFile);
  app.add_option("--time-zone", zone, "The clinic's time zone for display, e.g. Europe/Berlin (exports stay UTC)")
      ->capture_default_str();
  app.add_option("--session-minutes", ttl_minutes, "Sign a browser out after this long idle")
      ->capture_default_str()
      ->check(CLI::Range(1, 24 * 60));
  app.add_option("--metrics", metrics_listen, "Prometheus /metrics address")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    std::cerr << "rollertrace-console: give --tls-cert and --tls-key together" << std::endl;
    return 2;
  }
  if (!rollertrace::console::SetDisplayZone(zone)) {
    std::cerr << "rollertrace-console: --time-zone " << zone << ": no such zone in /usr/share/zoneinfo" << std::endl;
    return 2;
  }
  options.session_ttl = std::chrono::minutes(ttl_minutes);
  auto credentials = rollertrace::rpc::ClientCredentials(ingestd_ca);
  if (!credentials.ok()) {
    std::cerr << "rollertrace-console: " << credentials.status().message() << std::endl;
    return 2;
  }
  auto metrics = rollertrace::metrics::Metrics::Create(metrics_listen);
  if (!metrics.ok()) {
    std::cerr << "rollertrace-console: " << metrics.status().message() << std::endl;
    return 1;
  }
  rollertrace::console::Console console(grpc::CreateChannel(ingestd, *credentials), options, **metrics);
  if (absl::Status s = console.Bind(); !s.ok()) {
    std::cerr << "rollertrace-console: " << s.message() << std::endl;
    return 1;
  }
  const auto colon = options.listen.rfind(':');
  std::cerr << "rollertrace-console: serving " << (options.tls_cert.empty() ? "http" : "https") << "://"
            << options.listen.substr(0, colon) << ":" << console.port() << "/ (ingestd " << ingestd << ", times in "
            << zone << ", metrics on " << metrics_listen << ")" << std::endl;
  std::thread server([&] { console.Serve(); });
  rollertrace::process::WaitForShutdownSignal();
  std::cerr << "rollertrace-console: stopping" << std::endl;
  console.Stop();
  server.join();
  return 0;
}
