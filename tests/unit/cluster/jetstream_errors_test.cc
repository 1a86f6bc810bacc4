// Which JetStream answers a shard waits out. CI saw a shard rebuilt while
// two of three NATS nodes were down stop for good on "JetStream system
// temporarily unavailable (JetStream error 10008)": it was not taken as
// transient, so the start gave up instead of waiting for the quorum.
#include <gtest/gtest.h>
#include <nats/nats.h>

#include "cluster/jetstream_log.h"

namespace rollertrace::cluster {
namespace {

TEST(JetStreamErrors, NoQuorumOrNoLeaderYetIsWaitedOut) {
  EXPECT_TRUE(TemporarilyUnavailable(10008));
  for (int code : {JSClusterNotAvailErr, JSClusterNotLeaderErr, JSClusterNoPeersErr, JSStreamOfflineErr}) {
    EXPECT_TRUE(TemporarilyUnavailable(code)) << code;
  }
}

TEST(JetStreamErrors, WhatWaitingCannotMendIsNot) {
  for (int code : {0, static_cast<int>(JSStreamNotFoundErr), static_cast<int>(JSStreamWrongLastSequenceErr),
                   static_cast<int>(JSNotEnabledErr), static_cast<int>(JSStreamNameExistErr)}) {
    EXPECT_FALSE(TemporarilyUnavailable(code)) << code;
  }
}

}  // namespace
}  // namespace rollertrace::cluster
