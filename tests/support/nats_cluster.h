// Three nats-server nodes (JetStream, one cluster) on free loopback ports, each
// a process with its store under dir: what cluster mode replicates to.
#pragma once

#include <memory>
#include <string>

#include "support/process.h"

namespace rollertrace::testing {

class NatsCluster {
 public:
  explicit NatsCluster(std::string dir) : dir_(std::move(dir)) {}
  ~NatsCluster();
  void StartAll();
  // Node i (0..2): started (its config written on first start), SIGKILLed.
  void StartNode(int i);
  void KillNode(int i);
  std::string NodeDir(int i) const { return dir_ + "/nats-" + std::to_string(i); }
  // nats://127.0.0.1:port of every node, comma-separated (ingestd --cluster-nats).
  std::string Urls() const;

 private:
  struct Node {
    int client_port = FreePort();
    int cluster_port = FreePort();
    std::unique_ptr<Process> process;
  };
  std::string dir_;
  Node nodes_[3];
};

}  // namespace rollertrace::testing
