#pragma once
// Helpers shared by the proxy tests: readable byte strings in failure
// messages, and deterministic chunking of input.

#include <cstddef>
#include <cstdio>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace smtpgate::proxy::test {

/// "a\r\n" -> "a\\r\\n", other control bytes as \xNN, for CAPTURE/INFO.
inline std::string visible(std::string_view s) {
  std::string out;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out;
}

/// Splits `input` into chunks of 1..maxChunk bytes from a fixed-seed generator.
inline std::vector<std::string_view> randomChunks(std::string_view input, std::size_t maxChunk,
                                                  unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::size_t> size(1, maxChunk);
  std::vector<std::string_view> chunks;
  while (!input.empty()) {
    std::size_t n = std::min(size(rng), input.size());
    chunks.push_back(input.substr(0, n));
    input.remove_prefix(n);
  }
  return chunks;
}

/// Splits `input` into one-byte chunks.
inline std::vector<std::string_view> byteChunks(std::string_view input) {
  return randomChunks(input, 1, 0);
}

}  // namespace smtpgate::proxy::test
