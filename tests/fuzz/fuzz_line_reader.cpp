// Fuzz target: LineReader. Invariants: bounded buffering, lines hold no LF
// and no more than maxLine bytes, and chunked feeding gives the same lines
// and errors as feeding everything at once.

#include <string>
#include <vector>

#include "fuzz_check.h"
#include "proxy/line_reader.h"

namespace {

using smtpgate::proxy::LineReader;
using smtpgate::proxy::ParseStatus;

constexpr std::size_t kMaxLine = 64;

std::vector<std::string> run(const std::vector<std::string_view>& chunks) {
  LineReader reader(kMaxLine);
  std::vector<std::string> events;
  for (std::string_view chunk : chunks) {
    while (!chunk.empty()) {
      auto r = reader.feed(chunk);
      FUZZ_CHECK(r.consumed <= chunk.size());
      FUZZ_CHECK(reader.buffered() <= kMaxLine + 1);
      chunk.remove_prefix(r.consumed);
      if (r.status == ParseStatus::Complete) {
        const auto& line = reader.line();
        FUZZ_CHECK(line.text.size() <= kMaxLine);
        FUZZ_CHECK(line.text.find('\n') == std::string::npos);
        FUZZ_CHECK(line.hasBareCr == (line.text.find('\r') != std::string::npos));
        events.push_back(line.text + (line.bareLf ? "|lf" : "|crlf"));
      } else if (r.status == ParseStatus::Error) {
        events.emplace_back("|too-long");
      } else {
        FUZZ_CHECK(chunk.empty());
      }
    }
  }
  return events;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto whole = run({input});
  std::uint8_t seed = size > 0 ? data[0] : 0;
  FUZZ_CHECK(run(smtpgate::fuzz::chunked(input, seed)) == whole);
  return 0;
}
