// Fuzz target: ReplyParser, render(), capabilitiesFromEhlo, queueIdFromReply.
// Invariants: chunked feeding gives the same replies; every reply stays within
// its limits, renders to text that parses back to the same reply, and holds
// no control characters.

#include <string>
#include <vector>

#include "fuzz_check.h"
#include "proxy/reply_parser.h"

namespace {

using namespace smtpgate::proxy;

constexpr std::size_t kMaxLines = 8;
constexpr std::size_t kMaxLine = 128;

struct Outcome {
  std::vector<std::string> rendered;
  ReplyError error = ReplyError::None;
  bool operator==(const Outcome&) const = default;
};

Outcome run(const std::vector<std::string_view>& chunks) {
  ReplyParser parser(kMaxLines, kMaxLine);
  Outcome out;
  for (std::string_view chunk : chunks) {
    while (!chunk.empty()) {
      ParseResult r = parser.feed(chunk);
      FUZZ_CHECK(r.consumed <= chunk.size());
      chunk.remove_prefix(r.consumed);
      if (r.status == ParseStatus::Error) {
        out.error = parser.error();
        FUZZ_CHECK(out.error != ReplyError::None);
        return out;
      }
      if (r.status == ParseStatus::NeedMore) {
        FUZZ_CHECK(chunk.empty());
        continue;
      }
      const BackendReply& reply = parser.reply();
      FUZZ_CHECK(reply.code >= 200 && reply.code <= 559);
      FUZZ_CHECK(!reply.lines.empty() && reply.lines.size() <= kMaxLines);
      out.rendered.push_back(reply.render());
      (void)capabilitiesFromEhlo(reply);
      std::string id = queueIdFromReply(reply);
      FUZZ_CHECK(id.find_first_of(" \r\n") == std::string::npos);
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  Outcome whole = run({input});
  std::uint8_t seed = size > 0 ? data[size - 1] : 0;
  FUZZ_CHECK(run(smtpgate::fuzz::chunked(input, seed)) == whole);
  for (const std::string& text : whole.rendered) {
    // Rendered replies are what the client gets: they must parse back the same.
    ReplyParser parser(kMaxLines, kMaxLine + 1);
    ParseResult r = parser.feed(text);
    FUZZ_CHECK(r.status == ParseStatus::Complete && r.consumed == text.size());
    FUZZ_CHECK(parser.reply().render() == text);
    for (char c : text) {
      auto u = static_cast<unsigned char>(c);
      FUZZ_CHECK(u >= 0x20 || u == '\t' || u == '\r' || u == '\n');
    }
  }
  return 0;
}
