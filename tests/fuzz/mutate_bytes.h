// The byte mutations both deterministic fuzz drivers use (the decoders' and
// the gRPC surface's): 1 to 4 edits of bit flips, changed bytes, cuts,
// insertions, splices from a donor and repeats of a piece of the input.
#pragma once

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace rollertrace::fuzz {

inline std::string MutateBytes(std::string s, const std::vector<std::string>& donors, std::mt19937_64& rng) {
  const int edits = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < edits; ++i) {
    const size_t at = s.empty() ? 0 : rng() % s.size();
    switch (rng() % 6) {
      case 0:
        if (!s.empty()) s[at] = static_cast<char>(s[at] ^ (1 << (rng() % 8)));
        break;
      case 1:
        if (!s.empty()) s[at] = static_cast<char>(rng());
        break;
      case 2:
        s.resize(at);
        break;
      case 3:
        s.insert(at, 1 + rng() % 8, static_cast<char>(rng()));
        break;
      case 4: {
        if (donors.empty()) break;
        const std::string& other = donors[rng() % donors.size()];
        s = s.substr(0, at) + other.substr(std::min(other.size(), static_cast<size_t>(rng() % (other.size() + 1))));
        break;
      }
      case 5:
        if (s.size() > 1) s.insert(at, s.substr(rng() % s.size(), 1 + rng() % 16));
        break;
    }
  }
  return s;
}

}  // namespace rollertrace::fuzz
