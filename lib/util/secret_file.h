// Reading the files that hold secrets (tokens, passwords, the pseudonym
// secret, keys): refused unless only their owner can read them, the way ssh
// treats a private key. Errors never include a file's content.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "util/cat.h"

namespace rollertrace::util {

// OK when `path` is a regular file that neither its group nor others may read
// or write; FailedPrecondition naming the mode and the fix otherwise.
inline absl::Status CheckPrivateFile(const std::string& path, std::string_view what) {
  struct stat st{};
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(util::Cat("cannot read the ", what, " ", path, ": ", std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) return absl::FailedPreconditionError(util::Cat("the ", what, " ", path, " is not a file"));
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return absl::FailedPreconditionError(util::Cat("the ", what, " ", path, " may be read by group or others (mode ",
                                                   mode, "); allow only its owner: chmod 600 ", path));
  }
  return absl::OkStatus();
}

// The whole content of a private file (see CheckPrivateFile).
inline absl::StatusOr<std::string> ReadPrivateFile(const std::string& path, std::string_view what) {
  if (absl::Status s = CheckPrivateFile(path, what); !s.ok()) return s;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(util::Cat("cannot read the ", what, " ", path, ": ", std::strerror(errno)));
  std::string content;
  char buffer[4096];
  for (ssize_t n; (n = read(fd, buffer, sizeof buffer)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      close(fd);
      return absl::UnavailableError(util::Cat("cannot read the ", what, " ", path, ": ", std::strerror(errno)));
    }
    content.append(buffer, static_cast<size_t>(n));
    if (content.size() > (1u << 20)) {
      close(fd);
      return absl::InvalidArgumentError(util::Cat("the ", what, " ", path, " is larger than 1 MiB"));
    }
  }
  close(fd);
  return content;
}

// The first line of a private file, without its newline; InvalidArgument when empty.
inline absl::StatusOr<std::string> ReadPrivateLine(const std::string& path, std::string_view what) {
  absl::StatusOr<std::string> content = ReadPrivateFile(path, what);
  if (!content.ok()) return content.status();
  std::string line = content->substr(0, content->find('\n'));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty()) return absl::InvalidArgumentError(util::Cat("the ", what, " ", path, " is empty"));
  return line;
}

// One "<first> <second>" line of a private file.
struct PrivatePair {
  int line;  // from 1
  std::string first;
  std::string second;
};

// The "<first> <second>" lines of a private file ('#' starts a comment, blank
// lines are skipped); InvalidArgument naming the line and the expected `form`
// (e.g. "<role> <token>") for any other line.
inline absl::StatusOr<std::vector<PrivatePair>> ReadPrivatePairs(const std::string& path, std::string_view what,
                                                                 std::string_view form) {
  absl::StatusOr<std::string> content = ReadPrivateFile(path, what);
  if (!content.ok()) return content.status();
  std::vector<PrivatePair> out;
  std::istringstream in(*content);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream words(line);
    PrivatePair pair{n, {}, {}};
    std::string extra;
    if (!(words >> pair.first)) continue;
    if (!(words >> pair.second) || (words >> extra)) {
      return absl::InvalidArgumentError(util::Cat(path, " line ", n, ": expected '", form, "'"));
    }
    out.push_back(std::move(pair));
  }
  return out;
}

}  // namespace rollertrace::util
