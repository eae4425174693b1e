// ProxyHeaderParser: PROXY protocol v1 and v2 headers, good and bad, the
// limits, early refusal of anything that is not a header, SMTP bytes after the
// header left alone, and the same result however the input is split.

#include "proxy/proxy_protocol.h"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "test_util.h"

namespace smtpgate::proxy {
namespace {

using test::visible;

struct Outcome {
  ParseStatus status = ParseStatus::NeedMore;
  std::size_t consumed = 0;
  ProxyHeader header;
  ProxyError error = ProxyError::None;

  friend bool operator==(const Outcome&, const Outcome&) = default;
};

Outcome parse(const std::vector<std::string_view>& chunks,
              std::size_t maxV2 = limits::kProxyV2HeaderMax) {
  ProxyHeaderParser parser(maxV2);
  Outcome out;
  for (std::string_view chunk : chunks) {
    ParseResult r = parser.feed(chunk);
    REQUIRE(r.consumed <= chunk.size());
    REQUIRE(parser.buffered() <= std::max(limits::kProxyV1HeaderMax, maxV2));
    out.consumed += r.consumed;
    out.status = r.status;
    if (r.status != ParseStatus::NeedMore) {
      break;
    }
    REQUIRE(r.consumed == chunk.size());
  }
  out.header = parser.result();
  out.error = parser.error();
  return out;
}

Outcome parse(std::string_view input, std::size_t maxV2 = limits::kProxyV2HeaderMax) {
  return parse(std::vector<std::string_view>{input}, maxV2);
}

/// Every way of splitting `input` gives the same outcome as feeding it whole.
void checkSplitInvariance(std::string_view input, const Outcome& whole) {
  for (std::size_t i = 0; i <= input.size(); ++i) {
    INFO("split at " << i);
    REQUIRE(parse({input.substr(0, i), input.substr(i)}) == whole);
  }
  REQUIRE(parse(test::byteChunks(input)) == whole);
  for (unsigned seed = 1; seed <= 20; ++seed) {
    REQUIRE(parse(test::randomChunks(input, 7, seed)) == whole);
  }
}

// ---------------------------------------------------------------------------
// Building v2 headers.

const std::string kSignature("\r\n\r\n\0\r\nQUIT\n", 12);

std::string bytes(std::initializer_list<unsigned> values) {
  std::string out;
  for (unsigned v : values) {
    out += static_cast<char>(v);
  }
  return out;
}

std::string be16(unsigned v) {
  return bytes({(v >> 8) & 0xFF, v & 0xFF});
}

/// Signature, version/command, family, length of `body`, `body`.
std::string v2(unsigned versionCommand, unsigned family, std::string_view body) {
  return kSignature + bytes({versionCommand, family}) + be16(static_cast<unsigned>(body.size())) +
         std::string(body);
}

/// v2 header with a declared length that may differ from the body's.
std::string v2WithLength(unsigned versionCommand, unsigned family, unsigned length,
                         std::string_view body) {
  return kSignature + bytes({versionCommand, family}) + be16(length) + std::string(body);
}

// 192.0.2.1:56324 -> 198.51.100.1:25
const std::string kIpv4Block =
    bytes({192, 0, 2, 1}) + bytes({198, 51, 100, 1}) + be16(56324) + be16(25);
// [2001:db8::1]:56324 -> [2001:db8::25]:25
const std::string kIpv6Block =
    bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}) +
    bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x25}) + be16(56324) + be16(25);
// [::ffff:192.0.2.1]:1 -> [::1]:2
const std::string kMappedBlock = bytes({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1}) +
                                 bytes({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}) + be16(1) +
                                 be16(2);

std::string tlv(unsigned type, std::string_view value) {
  return bytes({type}) + be16(static_cast<unsigned>(value.size())) + std::string(value);
}

// ALPN "smtp", an empty NOOP, and an AWS VPC endpoint id (type 0xEA).
const std::string kTlvs = tlv(0x01, "smtp") + tlv(0x04, "") + tlv(0xEA, "\x01vpce-0abc");

ProxyHeader proxied(int version, std::string sourceIp, std::uint16_t sourcePort, std::string destIp,
                    std::uint16_t destPort) {
  return {version, false, std::move(sourceIp), sourcePort, std::move(destIp), destPort};
}

ProxyHeader local(int version) {
  ProxyHeader h;
  h.version = version;
  h.local = true;
  return h;
}

// ---------------------------------------------------------------------------

struct Good {
  std::string name;
  std::string input;
  ProxyHeader header;
};

const std::string kLongV6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";

std::vector<Good> goodCases() {
  return {
      {"v1 TCP4", "PROXY TCP4 192.0.2.1 198.51.100.1 56324 25\r\n",
       proxied(1, "192.0.2.1", 56324, "198.51.100.1", 25)},
      {"v1 TCP4 extremes", "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
       proxied(1, "0.0.0.0", 0, "255.255.255.255", 65535)},
      {"v1 TCP6", "PROXY TCP6 2001:db8::1 2001:db8::25 56324 25\r\n",
       proxied(1, "2001:db8::1", 56324, "2001:db8::25", 25)},
      {"v1 TCP6 made canonical", "PROXY TCP6 2001:DB8:0:0:0:0:0:1 0:0:0:0:0:0:0:1 1 2\r\n",
       proxied(1, "2001:db8::1", 1, "::1", 2)},
      {"v1 TCP6 v4-mapped becomes IPv4", "PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n",
       proxied(1, "192.0.2.1", 1, "::1", 2)},
      {"v1 TCP6 longest (104 bytes)", "PROXY TCP6 " + kLongV6 + " " + kLongV6 + " 65535 65535\r\n",
       proxied(1, kLongV6, 65535, kLongV6, 65535)},
      {"v1 UNKNOWN", "PROXY UNKNOWN\r\n", local(1)},
      {"v1 UNKNOWN with addresses ignored", "PROXY UNKNOWN 192.0.2.1 198.51.100.1 1 2\r\n",
       local(1)},
      {"v1 UNKNOWN longest (107 bytes)",
       "PROXY UNKNOWN " + kLongV6 + " " + kLongV6 + " 65535 65535\r\n", local(1)},
      {"v2 PROXY TCP4", v2(0x21, 0x11, kIpv4Block),
       proxied(2, "192.0.2.1", 56324, "198.51.100.1", 25)},
      {"v2 PROXY TCP4 with TLVs", v2(0x21, 0x11, kIpv4Block + kTlvs),
       proxied(2, "192.0.2.1", 56324, "198.51.100.1", 25)},
      {"v2 PROXY TCP6", v2(0x21, 0x21, kIpv6Block),
       proxied(2, "2001:db8::1", 56324, "2001:db8::25", 25)},
      {"v2 PROXY TCP6 with TLVs", v2(0x21, 0x21, kIpv6Block + kTlvs),
       proxied(2, "2001:db8::1", 56324, "2001:db8::25", 25)},
      {"v2 PROXY TCP6 v4-mapped becomes IPv4", v2(0x21, 0x21, kMappedBlock),
       proxied(2, "192.0.2.1", 1, "::1", 2)},
      {"v2 LOCAL", v2(0x20, 0x00, ""), local(2)},
      {"v2 LOCAL with addresses skipped", v2(0x20, 0x11, kIpv4Block + kTlvs), local(2)},
      {"v2 LOCAL ignores the family", v2(0x20, 0xFF, "junk"), local(2)},
      {"v2 PROXY UNSPEC", v2(0x21, 0x00, ""), local(2)},
      {"v2 PROXY UNSPEC ignores its block", v2(0x21, 0x00, "\x01\x02\x03"), local(2)},
      {"v2 at the size limit",
       v2(0x21, 0x11,
          kIpv4Block + tlv(0x04, std::string(limits::kProxyV2HeaderMax - 16 - 12 - 3, 'x'))),
       proxied(2, "192.0.2.1", 56324, "198.51.100.1", 25)},
  };
}

TEST_CASE("ProxyHeaderParser reads good v1 and v2 headers", "[proxy][proxy_protocol]") {
  for (const auto& c : goodCases()) {
    INFO(c.name << ": " << visible(c.input));
    const Outcome whole = parse(c.input);
    CHECK(whole.status == ParseStatus::Complete);
    CHECK(whole.error == ProxyError::None);
    CHECK(whole.consumed == c.input.size());
    CHECK(whole.header == c.header);
    checkSplitInvariance(c.input, whole);
  }
  // The limits of the spec, checked on the cases themselves.
  CHECK(goodCases()[5].input.size() == 104);
  CHECK(goodCases()[8].input.size() == limits::kProxyV1HeaderMax);
  CHECK(goodCases().back().input.size() == limits::kProxyV2HeaderMax);
}

TEST_CASE("ProxyHeaderParser leaves the SMTP bytes after the header alone",
          "[proxy][proxy_protocol]") {
  const std::string smtp = "EHLO client.example.org\r\nMAIL FROM:<a@example.org>\r\n";
  for (const auto& c : goodCases()) {
    INFO(c.name);
    const std::string input = c.input + smtp;
    const Outcome whole = parse(input);
    CHECK(whole.status == ParseStatus::Complete);
    CHECK(whole.consumed == c.input.size());
    CHECK(whole.header == c.header);
    checkSplitInvariance(input, whole);
  }
  // Bytes that look like a second header are the client's too.
  const std::string twice = "PROXY UNKNOWN\r\nPROXY TCP4 192.0.2.1 198.51.100.1 1 2\r\n";
  CHECK(parse(twice).consumed == 15);
}

TEST_CASE("ProxyHeaderParser needs more for every truncated header", "[proxy][proxy_protocol]") {
  for (const auto& c : goodCases()) {
    INFO(c.name);
    for (std::size_t n = 0; n < c.input.size(); ++n) {
      INFO("first " << n << " bytes");
      const Outcome o = parse(std::string_view(c.input).substr(0, n));
      REQUIRE(o.status == ParseStatus::NeedMore);
      REQUIRE(o.consumed == n);
    }
  }
}

struct Bad {
  std::string name;
  std::string input;
  ProxyError error;
  std::size_t consumed;  ///< bytes read when the error was known
};

std::vector<Bad> badCases() {
  const std::string v1Tail = " 198.51.100.1 56324 25\r\n";
  return {
      // Neither version: refused at the first byte that fits neither.
      {"SMTP client speaks first", "EHLO client.example.org\r\n", ProxyError::NotProxyProtocol, 1},
      {"TLS client hello", bytes({0x16, 0x03, 0x01, 0x02, 0x00}), ProxyError::NotProxyProtocol, 1},
      {"lower-case proxy", "proxy TCP4 192.0.2.1" + v1Tail, ProxyError::NotProxyProtocol, 1},
      {"PROXZ", "PROXZ TCP4", ProxyError::NotProxyProtocol, 5},
      {"CRLF then SMTP", "\r\nQUIT\r\n", ProxyError::NotProxyProtocol, 3},
      {"v2 signature typo", std::string("\r\n\r\n\0\r\nQUIX\n", 12), ProxyError::NotProxyProtocol,
       11},
      {"empty line", "\r\n\r\n\r\n", ProxyError::NotProxyProtocol, 5},

      // v1 syntax.
      {"v1 no space after PROXY", "PROXY\r\n", ProxyError::V1BadSyntax, 6},
      {"v1 tab after PROXY", "PROXY\tTCP4 192.0.2.1" + v1Tail, ProxyError::V1BadSyntax, 6},
      {"v1 protocol only", "PROXY TCP4\r\n", ProxyError::V1BadSyntax, 12},
      {"v1 no ports", "PROXY TCP4 192.0.2.1 198.51.100.1\r\n", ProxyError::V1BadSyntax, 35},
      {"v1 one port", "PROXY TCP4 192.0.2.1 198.51.100.1 56324\r\n", ProxyError::V1BadSyntax, 41},
      {"v1 extra field", "PROXY TCP4 192.0.2.1 198.51.100.1 56324 25 x\r\n",
       ProxyError::V1BadSyntax, 46},
      {"v1 two spaces", "PROXY TCP4  192.0.2.1" + v1Tail, ProxyError::V1BadSyntax, 45},
      {"v1 trailing space", "PROXY TCP4 192.0.2.1 198.51.100.1 56324 25 \r\n",
       ProxyError::V1BadSyntax, 45},
      {"v1 empty protocol", "PROXY \r\n", ProxyError::V1BadProtocol, 8},
      {"v1 lower-case protocol", "PROXY tcp4 192.0.2.1" + v1Tail, ProxyError::V1BadProtocol, 44},
      {"v1 UDP4", "PROXY UDP4 192.0.2.1" + v1Tail, ProxyError::V1BadProtocol, 44},
      {"v1 UNKNOWNX", "PROXY UNKNOWNX\r\n", ProxyError::V1BadProtocol, 16},
      {"v1 TCP4 without fields", "PROXY TCP4X 192.0.2.1" + v1Tail, ProxyError::V1BadProtocol, 45},

      // v1 addresses and ports.
      {"v1 octet over 255", "PROXY TCP4 192.0.2.256" + v1Tail, ProxyError::V1BadAddress, 46},
      {"v1 three octets", "PROXY TCP4 192.0.2" + v1Tail, ProxyError::V1BadAddress, 42},
      {"v1 five octets", "PROXY TCP4 192.0.2.1.5" + v1Tail, ProxyError::V1BadAddress, 46},
      {"v1 leading zero in octet", "PROXY TCP4 192.0.02.1" + v1Tail, ProxyError::V1BadAddress, 45},
      {"v1 octal-looking octet", "PROXY TCP4 010.0.2.1" + v1Tail, ProxyError::V1BadAddress, 44},
      {"v1 host name", "PROXY TCP4 mx.example.org" + v1Tail, ProxyError::V1BadAddress, 49},
      {"v1 IPv6 under TCP4", "PROXY TCP4 2001:db8::1 ::1 1 2\r\n", ProxyError::V1BadAddress, 32},
      {"v1 IPv4 under TCP6", "PROXY TCP6 192.0.2.1" + v1Tail, ProxyError::V1BadAddress, 44},
      {"v1 bad IPv6", "PROXY TCP6 2001:db8::g ::1 1 2\r\n", ProxyError::V1BadAddress, 32},
      {"v1 IPv6 with two ::", "PROXY TCP6 2001::db8::1 ::1 1 2\r\n", ProxyError::V1BadAddress, 33},
      {"v1 bracketed IPv6", "PROXY TCP6 [::1] ::1 1 2\r\n", ProxyError::V1BadAddress, 26},
      {"v1 NUL in address", std::string("PROXY TCP6 ::1\0 ::1 1 2\r\n", 25),
       ProxyError::V1BadAddress, 25},
      {"v1 bad destination", "PROXY TCP4 192.0.2.1 198.51.100 1 2\r\n", ProxyError::V1BadAddress,
       37},
      {"v1 port 65536", "PROXY TCP4 192.0.2.1 198.51.100.1 65536 25\r\n", ProxyError::V1BadPort,
       44},
      {"v1 port leading zero", "PROXY TCP4 192.0.2.1 198.51.100.1 56324 025\r\n",
       ProxyError::V1BadPort, 45},
      {"v1 port 00", "PROXY TCP4 192.0.2.1 198.51.100.1 00 25\r\n", ProxyError::V1BadPort, 41},
      {"v1 negative port", "PROXY TCP4 192.0.2.1 198.51.100.1 -1 25\r\n", ProxyError::V1BadPort,
       41},
      {"v1 plus sign", "PROXY TCP4 192.0.2.1 198.51.100.1 +1 25\r\n", ProxyError::V1BadPort, 41},
      {"v1 huge port", "PROXY TCP4 192.0.2.1 198.51.100.1 99999999 25\r\n", ProxyError::V1BadPort,
       47},
      {"v1 hex port", "PROXY TCP4 192.0.2.1 198.51.100.1 0x19 25\r\n", ProxyError::V1BadPort, 43},

      // v1 line ends and length.
      {"v1 bare LF", "PROXY TCP4 192.0.2.1 198.51.100.1 56324 25\n", ProxyError::V1BadLineEnd, 43},
      {"v1 bare CR", "PROXY TCP4 192.0.2.1 198.51.100.1 56324 25\rEHLO", ProxyError::V1BadLineEnd,
       44},
      {"v1 CR inside", "PROXY TCP4 192.0.2.1\r198.51.100.1 56324 25\r\n", ProxyError::V1BadLineEnd,
       22},
      {"v1 CR CR LF", "PROXY UNKNOWN\r\r\n", ProxyError::V1BadLineEnd, 15},
      {"v1 no CRLF within 107 bytes", "PROXY UNKNOWN " + std::string(200, 'x'),
       ProxyError::V1TooLong, 107},
      {"v1 CRLF at 108", "PROXY UNKNOWN " + std::string(92, 'x') + "\r\n", ProxyError::V1TooLong,
       107},
      {"v1 TCP4 padded past 107",
       "PROXY TCP4 192.0.2.1 198.51.100.1 56324 25" + std::string(70, ' ') + "\r\n",
       ProxyError::V1TooLong, 107},

      // v2 fixed part: refused at the byte that shows it.
      {"v2 version 1", v2(0x11, 0x11, kIpv4Block), ProxyError::V2BadVersion, 13},
      {"v2 version 3", v2(0x31, 0x11, kIpv4Block), ProxyError::V2BadVersion, 13},
      {"v2 version 0", v2(0x01, 0x11, kIpv4Block), ProxyError::V2BadVersion, 13},
      {"v2 command 2", v2(0x22, 0x11, kIpv4Block), ProxyError::V2BadCommand, 13},
      {"v2 command F", v2(0x2F, 0x11, kIpv4Block), ProxyError::V2BadCommand, 13},
      {"v2 family 4", v2(0x21, 0x41, kIpv4Block), ProxyError::V2BadFamily, 14},
      {"v2 transport 3", v2(0x21, 0x13, kIpv4Block), ProxyError::V2BadFamily, 14},
      {"v2 UNSPEC family with STREAM", v2(0x21, 0x01, ""), ProxyError::V2BadFamily, 14},
      {"v2 UDP over IPv4", v2(0x21, 0x12, kIpv4Block), ProxyError::V2UnsupportedFamily, 14},
      {"v2 UDP over IPv6", v2(0x21, 0x22, kIpv6Block), ProxyError::V2UnsupportedFamily, 14},
      {"v2 unix stream", v2(0x21, 0x31, std::string(216, '\0')), ProxyError::V2UnsupportedFamily,
       14},
      {"v2 unix datagram", v2(0x21, 0x32, std::string(216, '\0')), ProxyError::V2UnsupportedFamily,
       14},
      {"v2 length 65535", v2WithLength(0x21, 0x11, 0xFFFF, kIpv4Block), ProxyError::V2TooLong, 16},
      {"v2 one byte over the limit",
       v2(0x21, 0x11, kIpv4Block + tlv(0x04, std::string(536 - 16 - 12 - 3 + 1, 'x'))),
       ProxyError::V2TooLong, 16},
      {"v2 LOCAL over the limit", v2WithLength(0x20, 0x00, 600, ""), ProxyError::V2TooLong, 16},
      {"v2 TCP4 length 11", v2WithLength(0x21, 0x11, 11, kIpv4Block), ProxyError::V2ShortAddress,
       16},
      {"v2 TCP4 length 0", v2(0x21, 0x11, ""), ProxyError::V2ShortAddress, 16},
      {"v2 TCP6 with an IPv4 block", v2(0x21, 0x21, kIpv4Block), ProxyError::V2ShortAddress, 16},

      // v2 TLVs must tile the rest of the header.
      {"v2 two stray bytes after the addresses", v2(0x21, 0x11, kIpv4Block + bytes({0x04, 0x00})),
       ProxyError::V2BadTlv, 30},
      {"v2 TLV longer than the header", v2(0x21, 0x11, kIpv4Block + bytes({0x01, 0, 10}) + "smtp"),
       ProxyError::V2BadTlv, 35},
      {"v2 good TLV then a broken one",
       v2(0x21, 0x21, kIpv6Block + kTlvs + bytes({0xEA, 0xFF, 0xFF})), ProxyError::V2BadTlv,
       16 + 36 + kTlvs.size() + 3},
  };
}

TEST_CASE("ProxyHeaderParser refuses bad headers, early", "[proxy][proxy_protocol]") {
  for (const auto& c : badCases()) {
    INFO(c.name << ": " << visible(c.input));
    const Outcome whole = parse(c.input);
    CHECK(whole.status == ParseStatus::Error);
    CHECK(whole.error == c.error);
    CHECK(whole.consumed == c.consumed);
    CHECK(whole.header == ProxyHeader{});
    checkSplitInvariance(c.input, whole);
  }
}

TEST_CASE("ProxyHeaderParser: a truncated v2 header waits, a lying length is refused",
          "[proxy][proxy_protocol]") {
  // The whole header has not arrived: nothing is decided (the caller's
  // timeout ends the wait).
  const std::string full = v2(0x21, 0x11, kIpv4Block + kTlvs);
  Outcome o = parse(std::string_view(full).substr(0, full.size() - 1));
  CHECK(o.status == ParseStatus::NeedMore);
  CHECK(o.consumed == full.size() - 1);
  // A length that claims more than is sent is only known to lie when the
  // next bytes (the client's SMTP) are read as header bytes and break it.
  o = parse(v2WithLength(0x21, 0x11, 12 + 3, kIpv4Block) + "EHLO x\r\n");
  CHECK(o.status == ParseStatus::Error);
  CHECK(o.error == ProxyError::V2BadTlv);
}

TEST_CASE("ProxyHeaderParser: results are final until reset", "[proxy][proxy_protocol]") {
  ProxyHeaderParser parser;
  const std::string header = "PROXY TCP4 192.0.2.1 198.51.100.1 56324 25\r\n";
  CHECK(parser.feed(header) == ParseResult{ParseStatus::Complete, header.size()});
  CHECK(parser.feed("EHLO x\r\n") == ParseResult{ParseStatus::Complete, 0});
  CHECK(parser.feed("") == ParseResult{ParseStatus::Complete, 0});
  CHECK(parser.result().sourceIp == "192.0.2.1");

  parser.reset();
  CHECK(parser.buffered() == 0);
  CHECK(parser.result() == ProxyHeader{});
  CHECK(parser.feed("") == ParseResult{ParseStatus::NeedMore, 0});
  CHECK(parser.feed("HELO") == ParseResult{ParseStatus::Error, 1});
  CHECK(parser.feed("PROXY UNKNOWN\r\n") == ParseResult{ParseStatus::Error, 0});
  CHECK(parser.error() == ProxyError::NotProxyProtocol);

  parser.reset();
  CHECK(parser.error() == ProxyError::None);
  CHECK(parser.feed(v2(0x20, 0x00, "")) == ParseResult{ParseStatus::Complete, 16});
  CHECK(parser.result() == local(2));
}

TEST_CASE("ProxyHeaderParser: the v2 limit is a constructor parameter", "[proxy][proxy_protocol]") {
  const std::string tcp6 = v2(0x21, 0x21, kIpv6Block);  // 52 bytes
  CHECK(parse(tcp6, 52).status == ParseStatus::Complete);
  const Outcome o = parse(tcp6, 51);
  CHECK(o.status == ParseStatus::Error);
  CHECK(o.error == ProxyError::V2TooLong);
  // v1 keeps the spec's 107 whatever the v2 limit.
  CHECK(parse(goodCases()[8].input, 16).status == ParseStatus::Complete);
}

TEST_CASE("ProxyHeaderParser keeps its buffer bounded", "[proxy][proxy_protocol]") {
  ProxyHeaderParser parser;
  std::string garbage = "PROXY UNKNOWN ";
  garbage += std::string(10'000, 'x');
  std::size_t fed = 0;
  for (char c : garbage) {
    ParseResult r = parser.feed(std::string_view(&c, 1));
    REQUIRE(parser.buffered() <= limits::kProxyV1HeaderMax);
    fed += r.consumed;
    if (r.status == ParseStatus::Error) {
      break;
    }
  }
  CHECK(fed == limits::kProxyV1HeaderMax);
  CHECK(parser.error() == ProxyError::V1TooLong);
}

TEST_CASE("ProxyHeaderParser: every error has its own words", "[proxy][proxy_protocol]") {
  std::vector<std::string_view> seen;
  for (int e = static_cast<int>(ProxyError::None); e <= static_cast<int>(ProxyError::V2BadTlv);
       ++e) {
    const std::string_view text = describe(static_cast<ProxyError>(e));
    CAPTURE(e, text);
    CHECK_FALSE(text.empty());
    CHECK(std::find(seen.begin(), seen.end(), text) == seen.end());
    seen.push_back(text);
  }
  CHECK(describe(ProxyError::V1BadPort) == "PROXY v1 header: bad port (0-65535, no leading zeros)");
}

}  // namespace
}  // namespace smtpgate::proxy
