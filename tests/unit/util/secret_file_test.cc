#include "util/secret_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace rollertrace::util {
namespace {

class SecretFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (std::filesystem::temp_directory_path() / ("secret_file_test." + std::to_string(getpid()))).string();
  }
  void TearDown() override { std::filesystem::remove(path_); }
  void Write(const std::string& content, std::filesystem::perms perms) {
    std::ofstream(path_, std::ios::trunc) << content;
    std::filesystem::permissions(path_, perms, std::filesystem::perm_options::replace);
  }
  std::string path_;
};

constexpr auto kOwnerOnly = std::filesystem::perms::owner_read | std::filesystem::perms::owner_write;

TEST_F(SecretFileTest, ReadsPairsSkippingCommentsAndBlankLines) {
  Write("# users\nR-1 pass-1\n\n  R-2\tpass-2  # the second\n", kOwnerOnly);
  auto pairs = ReadPrivatePairs(path_, "credentials file", "<user> <password>");
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  ASSERT_EQ(pairs->size(), 2u);
  EXPECT_EQ((*pairs)[0].line, 2);
  EXPECT_EQ((*pairs)[0].first, "R-1");
  EXPECT_EQ((*pairs)[0].second, "pass-1");
  EXPECT_EQ((*pairs)[1].line, 4);
  EXPECT_EQ((*pairs)[1].first, "R-2");
  EXPECT_EQ((*pairs)[1].second, "pass-2");
}

TEST_F(SecretFileTest, NamesTheLineThatIsNotAPair) {
  Write("R-1 pass-1\nR-2\nR-3 a b\n", kOwnerOnly);
  auto pairs = ReadPrivatePairs(path_, "credentials file", "<user> <password>");
  EXPECT_EQ(pairs.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pairs.status().message(), path_ + " line 2: expected '<user> <password>'");
}

TEST_F(SecretFileTest, RefusesAFileOthersMayRead) {
  Write("R-1 pass-1\n", kOwnerOnly | std::filesystem::perms::group_read);
  auto pairs = ReadPrivatePairs(path_, "credentials file", "<user> <password>");
  EXPECT_EQ(pairs.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(pairs.status().message().find("(mode 0640)"), std::string::npos) << pairs.status();
  EXPECT_EQ(pairs.status().message().find("pass-1"), std::string::npos) << "the error leaks the content";
}

}  // namespace
}  // namespace rollertrace::util
