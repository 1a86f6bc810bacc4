// Network addresses as the services are given them: "host:port",
// "[v6]:port", or a URI "scheme://host:port". Used to keep what is insecure
// (no access control, passwords in clear) on loopback.
#pragma once

#include <string>
#include <string_view>

namespace rollertrace::util {

// The host of an address or URI, brackets removed; "" when there is none.
inline std::string HostOf(std::string_view address) {
  if (auto scheme = address.find("://"); scheme != std::string_view::npos) address.remove_prefix(scheme + 3);
  if (address.rfind("unix:", 0) == 0) return "unix";
  if (!address.empty() && address.front() == '[') {
    const auto close = address.find(']');
    return close == std::string_view::npos ? std::string() : std::string(address.substr(1, close - 1));
  }
  return std::string(address.substr(0, address.rfind(':')));
}

// True for 127.0.0.0/8, ::1, "localhost" and unix sockets.
inline bool IsLoopbackHost(std::string_view host) {
  return host == "localhost" || host == "::1" || host == "unix" || host.rfind("127.", 0) == 0;
}

inline bool IsLoopbackAddress(std::string_view address) { return IsLoopbackHost(HostOf(address)); }

}  // namespace rollertrace::util
