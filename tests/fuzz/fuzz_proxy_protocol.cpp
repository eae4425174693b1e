// Fuzz target: ProxyHeaderParser (PROXY protocol v1 and v2). Invariants, for
// the default v2 limit and a small one: bounded buffering; chunked feeding
// gives the same outcome as one feed; a header never takes more than its
// limit, and what it took parses alone to the same header (the bytes after it
// don't matter); a v1 header ends in CRLF; results hold valid addresses or,
// when local, none; an input longer than the limits always gets an answer.

#include <arpa/inet.h>

#include <algorithm>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "proxy/proxy_protocol.h"

namespace {

using namespace smtpgate::proxy;

struct Outcome {
  ParseStatus status = ParseStatus::NeedMore;
  std::size_t consumed = 0;
  ProxyHeader header;
  ProxyError error = ProxyError::None;
  bool operator==(const Outcome&) const = default;
};

Outcome run(const std::vector<std::string_view>& chunks, std::size_t maxV2) {
  ProxyHeaderParser parser(maxV2);
  Outcome out;
  for (std::string_view chunk : chunks) {
    ParseResult r = parser.feed(chunk);
    FUZZ_CHECK(r.consumed <= chunk.size());
    FUZZ_CHECK(parser.buffered() <= std::max(limits::kProxyV1HeaderMax, maxV2));
    out.consumed += r.consumed;
    out.status = r.status;
    if (r.status != ParseStatus::NeedMore) {
      break;
    }
    FUZZ_CHECK(r.consumed == chunk.size());
  }
  out.header = parser.result();
  out.error = parser.error();
  return out;
}

bool isIp(const std::string& text) {
  unsigned char buf[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, text.c_str(), buf) == 1 ||
         ::inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

/// ::ffff:a.b.c.d, which results must give as plain IPv4.
bool isV4Mapped(const std::string& text) {
  in6_addr a{};
  static constexpr unsigned char kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return ::inet_pton(AF_INET6, text.c_str(), &a) == 1 &&
         std::equal(std::begin(kPrefix), std::end(kPrefix), a.s6_addr);
}

void check(std::string_view input, std::uint8_t seed, std::size_t maxV2) {
  const Outcome whole = run({input}, maxV2);
  FUZZ_CHECK(run(smtpgate::fuzz::chunked(input, seed), maxV2) == whole);
  switch (whole.status) {
    case ParseStatus::Complete: {
      FUZZ_CHECK(whole.error == ProxyError::None);
      const ProxyHeader& h = whole.header;
      FUZZ_CHECK(h.version == 1 || h.version == 2);
      const std::string_view taken = input.substr(0, whole.consumed);
      if (h.version == 1) {
        FUZZ_CHECK(taken.size() <= limits::kProxyV1HeaderMax);
        FUZZ_CHECK(taken.starts_with("PROXY ") && taken.ends_with("\r\n"));
      } else {
        FUZZ_CHECK(taken.size() >= 16 && taken.size() <= maxV2);
      }
      if (h.local) {
        FUZZ_CHECK(h.sourceIp.empty() && h.destIp.empty() && h.sourcePort == 0 && h.destPort == 0);
      } else {
        FUZZ_CHECK(isIp(h.sourceIp) && isIp(h.destIp));
        FUZZ_CHECK(!isV4Mapped(h.sourceIp) && !isV4Mapped(h.destIp));
      }
      // The header alone gives the same result: nothing after it was used.
      const Outcome alone = run({taken}, maxV2);
      FUZZ_CHECK(alone.status == ParseStatus::Complete && alone.consumed == taken.size());
      FUZZ_CHECK(alone.header == h);
      break;
    }
    case ParseStatus::Error:
      FUZZ_CHECK(whole.error != ProxyError::None);
      FUZZ_CHECK(whole.consumed >= 1 && whole.consumed <= input.size());
      FUZZ_CHECK(whole.header == ProxyHeader{});
      FUZZ_CHECK(!describe(whole.error).empty());
      break;
    case ParseStatus::NeedMore:
      // Undecided only while the input is shorter than any header may be.
      FUZZ_CHECK(whole.consumed == input.size());
      FUZZ_CHECK(input.size() < std::max(limits::kProxyV1HeaderMax, maxV2));
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::uint8_t seed = size > 0 ? data[size - 1] : 0;
  check(input, seed, limits::kProxyV2HeaderMax);
  check(input, seed, 64);  // a small limit, so mutations reach it
  return 0;
}
