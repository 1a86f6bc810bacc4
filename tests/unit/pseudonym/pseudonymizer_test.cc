#include "pseudonym/pseudonymizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace rollertrace::pseudonym {
namespace {

TEST(Pseudonymizer, IsStableForTheSameSecretAndReference) {
  auto a = Pseudonymizer::FromSecret("a-deployment-secret-of-enough-length");
  auto b = Pseudonymizer::FromSecret("a-deployment-secret-of-enough-length");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->Pseudonym("MRN-123456"), b->Pseudonym("MRN-123456"));
  EXPECT_NE(a->Pseudonym("MRN-123456"), a->Pseudonym("MRN-123457"));
}

TEST(Pseudonymizer, DiffersBetweenSecretsAndHidesTheReference) {
  auto a = Pseudonymizer::FromSecret("first-secret-0123456789");
  auto b = Pseudonymizer::FromSecret("second-secret-0123456789");
  const std::string p = a->Pseudonym("MRN-123456");
  EXPECT_NE(p, b->Pseudonym("MRN-123456"));
  EXPECT_EQ(p.size(), 2u + 64u);
  EXPECT_EQ(p.rfind("p-", 0), 0u);
  EXPECT_EQ(p.find("123456"), std::string::npos);
}

TEST(Pseudonymizer, MatchesHmacSha256) {
  // Expected value from: printf patient | openssl dgst -sha256 -hmac 0123456789abcdef
  auto p = Pseudonymizer::FromSecret("0123456789abcdef");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->Pseudonym("patient"), "p-03e64812cc9e1eba1a9a173272cc1eea7ed9961bc42ea22a7188442866b0d182");
}

TEST(Pseudonymizer, RefusesShortSecretsAndMissingFiles) {
  EXPECT_FALSE(Pseudonymizer::FromSecret("short").ok());
  auto missing = Pseudonymizer::FromFile("/nonexistent/secret");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(Pseudonymizer, ReadsTheSecretFromAFileWithoutTheNewline) {
  auto path = std::filesystem::temp_directory_path() / "pseudonymizer_test_secret";
  std::ofstream(path) << "file-secret-0123456789\n";
  std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto from_file = Pseudonymizer::FromFile(path.string());
  auto direct = Pseudonymizer::FromSecret("file-secret-0123456789");
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  EXPECT_EQ(from_file->Pseudonym("x"), direct->Pseudonym("x"));
  std::filesystem::remove(path);
}

TEST(Pseudonymizer, RefusesASecretFileOthersMayRead) {
  auto path = std::filesystem::temp_directory_path() / "pseudonymizer_test_open_secret";
  std::ofstream(path) << "file-secret-0123456789\n";
  std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                                         std::filesystem::perms::group_read | std::filesystem::perms::others_read);
  auto from_file = Pseudonymizer::FromFile(path.string());
  EXPECT_EQ(from_file.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(from_file.status().message().find("chmod 600"), std::string::npos) << from_file.status();
  EXPECT_EQ(from_file.status().message().find("file-secret"), std::string::npos) << "the error leaks the secret";
  std::filesystem::remove(path);
}

TEST(Pseudonymizer, KnowsItsOwnPseudonymsFromAnythingElse) {
  auto p = Pseudonymizer::FromSecret("0123456789abcdef");
  EXPECT_TRUE(Pseudonymizer::IsPseudonym(p->Pseudonym("MRN-1")));
  EXPECT_FALSE(Pseudonymizer::IsPseudonym("p-"));
  EXPECT_FALSE(Pseudonymizer::IsPseudonym(std::string("p-") + std::string(63, 'a') + std::string(1, '\0')));
  EXPECT_FALSE(Pseudonymizer::IsPseudonym(std::string("p-") + std::string(64, 'A')));
  EXPECT_FALSE(Pseudonymizer::IsPseudonym("MRN-1"));
}

}  // namespace
}  // namespace rollertrace::pseudonym
