// Cat: string concatenation of anything streamable. Debian's Abseil keeps its
// own string_view, so absl::StrCat does not take std::string_view; this does.
#pragma once

#include <sstream>
#include <string>

namespace rollertrace::util {

template <typename... Parts>
std::string Cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

}  // namespace rollertrace::util
