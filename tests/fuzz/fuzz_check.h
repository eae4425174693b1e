#pragma once
// FUZZ_CHECK: an invariant of a fuzz target. Unlike assert() it also holds in
// release builds, and it aborts so libFuzzer saves the input as a crash.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

#define FUZZ_CHECK(cond)                                                                     \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)

namespace smtpgate::fuzz {

/// Splits `input` into chunks whose sizes cycle through `sizes` (1..16 each),
/// to compare incremental feeding with feeding everything at once.
inline std::vector<std::string_view> chunked(std::string_view input, std::uint8_t seed) {
  std::vector<std::string_view> chunks;
  std::size_t k = seed;
  while (!input.empty()) {
    std::size_t n = std::min<std::size_t>(input.size(), 1 + (k * 7 + 3) % 16);
    chunks.push_back(input.substr(0, n));
    input.remove_prefix(n);
    ++k;
  }
  return chunks;
}

}  // namespace smtpgate::fuzz
