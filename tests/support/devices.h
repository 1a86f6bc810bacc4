// Test devices that speak the real MQTT contract: a roller or steriliser with
// its own MQTT connection, sequence numbers, and the decisions and commands
// the server sends it. For scenario tests that need exact control over what a
// device says and when (the agent's own logic is tested elsewhere).
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "mqtt/mqtt_client.h"
#include "rollertrace/v1/records.pb.h"
#include "rollertrace/v1/services.pb.h"

namespace rollertrace::testing {

class TestDevice {
 public:
  // kind: "rollers" or "sterilisers". Connects and subscribes before returning.
  TestDevice(const std::string& mqtt_uri, const std::string& device_id, const std::string& kind = "rollers");
  ~TestDevice();

  // Publishes events with the next sequence numbers, and waits until ingestd
  // acknowledged them (fails the test after 15 s).
  void Send(std::vector<rollertrace::v1::Event> events);
  // Asks rollers/{id}/authorize and waits for the decision.
  std::optional<rollertrace::v1::Decision> Authorize(const rollertrace::v1::AuthorizeRequest& request);
  // Waits for a command on rollers/{id}/command.
  std::optional<rollertrace::v1::Command> NextCommand(std::chrono::milliseconds timeout = std::chrono::seconds(15));

  const std::string& id() const { return id_; }

 private:
  std::string id_;
  std::string kind_;
  uint64_t next_sequence_ = 1;
  std::unique_ptr<mqtt::MqttClient> client_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t acked_through_ = 0;
  std::vector<rollertrace::v1::Decision> decisions_;
  std::vector<rollertrace::v1::Command> commands_;
};

inline constexpr int64_t kDay = 24 * 3600 * 1000LL;
inline constexpr int64_t kHour = 3600 * 1000LL;
// The wall clock in unix ms.
inline int64_t Now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Event builders; device times in unix ms.
rollertrace::v1::Event SessionStart(const std::string& session_id, const std::string& patient_ref, int64_t at,
                                    bool offline = false);
rollertrace::v1::Event Usage(const std::string& session_id, uint32_t revolutions, int64_t at);
rollertrace::v1::Event SessionEnd(const std::string& session_id, int64_t at);
// A steam pre-vacuum cycle ending at `end`; passing unless `pass` is false.
rollertrace::v1::Event Cycle(uint64_t number, std::vector<std::string> load, int64_t end, bool pass = true);
// Whether `rule` fired in a decision, and every rule that did with its detail (for messages).
bool Has(const rollertrace::v1::Decision& decision, const std::string& rule);
std::string Rules(const rollertrace::v1::Decision& decision);

rollertrace::v1::AuthorizeRequest AuthorizeFor(const std::string& roller, const std::string& patient_ref,
                                               int64_t start);

}  // namespace rollertrace::testing
