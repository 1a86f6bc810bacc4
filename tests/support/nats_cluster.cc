#include "support/nats_cluster.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>

namespace rollertrace::testing {

NatsCluster::~NatsCluster() {
  for (auto& n : nodes_) {
    if (n.process) n.process->Signal(SIGTERM);
  }
  for (auto& n : nodes_) n.process.reset();
}

void NatsCluster::StartAll() {
  for (int i = 0; i < 3; ++i) StartNode(i);
}

std::string NatsCluster::Urls() const {
  std::string urls;
  for (const auto& n : nodes_) {
    urls += (urls.empty() ? "" : ",") + std::string("nats://127.0.0.1:") + std::to_string(n.client_port);
  }
  return urls;
}

void NatsCluster::StartNode(int i) {
  Node& n = nodes_[i];
  const std::string base = dir_ + "/nats-" + std::to_string(i);
  std::ofstream out(base + ".conf");
  out << "server_name: n" << i << "\nlisten: 127.0.0.1:" << n.client_port << "\nmax_payload: 8MB\n"
      << "jetstream { store_dir: \"" << NodeDir(i) << "\", max_file_store: 1G, max_memory_store: 64M }\n"
      << "cluster { name: rt, listen: 127.0.0.1:" << n.cluster_port << ", routes: [";
  for (int k = 0; k < 3; ++k) out << (k ? ", " : "") << "nats-route://127.0.0.1:" << nodes_[k].cluster_port;
  out << "] }\n";
  out.close();
  n.process = Process::Start({ROLLERTRACE_NATS_SERVER, "-c", base + ".conf"}, base + ".log");
  ASSERT_TRUE(WaitForPort(n.client_port, std::chrono::seconds(10))) << ReadFile(base + ".log");
}

void NatsCluster::KillNode(int i) {
  nodes_[i].process->Signal(SIGKILL);
  nodes_[i].process->Wait(std::chrono::seconds(10));
}

}  // namespace rollertrace::testing
