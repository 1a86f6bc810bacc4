// HTML escaping for text from devices and clients: &, <, >, " and ' as
// entities, safe in element text and in quoted attribute values. The one
// escaper of the HTML report (rollerctl) and the console.
#pragma once

#include <string>
#include <string_view>

namespace rollertrace::util {

inline std::string HtmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

}  // namespace rollertrace::util
