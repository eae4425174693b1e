#include "proxy/proxy_protocol.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>

namespace smtpgate::proxy {

namespace {

// proxy-protocol.txt 2.1: "PROXY" identifies version 1 (exactly one space
// must follow, checked as syntax so the error says what is wrong).
constexpr std::string_view kV1Signature = "PROXY";
// proxy-protocol.txt 2.2: the v2 signature holds a NUL, so give its length.
constexpr std::string_view kV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};

constexpr std::size_t kV2VersionCommand = 12;  // byte 13: version << 4 | command
constexpr std::size_t kV2Family = 13;          // byte 14: family << 4 | transport
constexpr std::size_t kV2Length = 14;          // bytes 15-16: big-endian length
constexpr std::size_t kV2FixedSize = 16;

constexpr std::uint8_t kV2Version = 0x2;
constexpr std::uint8_t kCommandLocal = 0x0;
constexpr std::uint8_t kCommandProxy = 0x1;

// Family/transport bytes of section 2.2, "In practice".
constexpr std::uint8_t kUnspec = 0x00;
constexpr std::uint8_t kTcp4 = 0x11;
constexpr std::uint8_t kUdp4 = 0x12;
constexpr std::uint8_t kTcp6 = 0x21;
constexpr std::uint8_t kUdp6 = 0x22;
constexpr std::uint8_t kUnixStream = 0x31;
constexpr std::uint8_t kUnixDgram = 0x32;

constexpr std::size_t kIpv4Size = 4;
constexpr std::size_t kIpv6Size = 16;
constexpr std::size_t kTlvHeaderSize = 3;  // type, 16-bit length

/// Bytes of the address block: two addresses and two ports.
constexpr std::size_t addressBlockSize(std::size_t addressSize) {
  return 2 * addressSize + 2 * 2;
}

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

/// Exactly four decimal numbers 0-255 joined by single dots, no leading
/// zeros ("010" could be read as octal; the spec forbids it).
std::optional<std::array<std::uint8_t, kIpv4Size>> parseIpv4(std::string_view s) {
  std::array<std::uint8_t, kIpv4Size> out{};
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (i > 0) {
      if (s.empty() || s.front() != '.') {
        return std::nullopt;
      }
      s.remove_prefix(1);
    }
    std::size_t digits = 0;
    unsigned value = 0;
    while (digits < s.size() && digits < 4 && isDigit(s[digits])) {
      value = value * 10 + static_cast<unsigned>(s[digits] - '0');
      ++digits;
    }
    if (digits == 0 || digits > 3 || value > 255 || (digits > 1 && s.front() == '0')) {
      return std::nullopt;
    }
    out[i] = static_cast<std::uint8_t>(value);
    s.remove_prefix(digits);
  }
  if (!s.empty()) {
    return std::nullopt;
  }
  return out;
}

/// IPv6 text as inet_pton(3) reads it; the character check first, because
/// inet_pton would stop at a NUL and accept what came before it.
std::optional<std::array<std::uint8_t, kIpv6Size>> parseIpv6(std::string_view s) {
  constexpr std::size_t kMaxText = INET6_ADDRSTRLEN - 1;
  if (s.empty() || s.size() > kMaxText ||
      s.find_first_not_of("0123456789abcdefABCDEF:.") != std::string_view::npos) {
    return std::nullopt;
  }
  in6_addr address{};
  if (::inet_pton(AF_INET6, std::string(s).c_str(), &address) != 1) {
    return std::nullopt;
  }
  std::array<std::uint8_t, kIpv6Size> out{};
  std::memcpy(out.data(), address.s6_addr, out.size());
  return out;
}

/// Decimal 0-65535, no sign, no leading zeros ("0" itself is fine).
std::optional<std::uint16_t> parsePort(std::string_view s) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s.front() == '0')) {
    return std::nullopt;
  }
  unsigned value = 0;
  for (char c : s) {
    if (!isDigit(c)) {
      return std::nullopt;
    }
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

std::string ipv4Text(const std::uint8_t* bytes) {
  in_addr address{};
  std::memcpy(&address.s_addr, bytes, kIpv4Size);
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &address, text, sizeof text);
  return text;
}

/// Canonical text; an IPv4-mapped address (::ffff:a.b.c.d) as plain IPv4, the
/// way the session names a client that reached a dual-stack socket over IPv4.
std::string ipv6Text(const std::uint8_t* bytes) {
  static constexpr std::uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(bytes, kMappedPrefix, sizeof kMappedPrefix) == 0) {
    return ipv4Text(bytes + sizeof kMappedPrefix);
  }
  in6_addr address{};
  std::memcpy(address.s6_addr, bytes, kIpv6Size);
  char text[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET6, &address, text, sizeof text);
  return text;
}

/// Splits "a b c d e" at single spaces into exactly `fields.size()` non-empty
/// fields; false for any other shape (two spaces, a trailing space, ...).
template <std::size_t N>
bool splitFields(std::string_view s, std::array<std::string_view, N>& fields) {
  for (std::size_t i = 0; i < N; ++i) {
    const std::size_t space = s.find(' ');
    const bool last = i + 1 == N;
    if (last != (space == std::string_view::npos)) {
      return false;
    }
    fields[i] = s.substr(0, space);
    if (fields[i].empty()) {
      return false;
    }
    s.remove_prefix(last ? s.size() : space + 1);
  }
  return true;
}

std::uint16_t bigEndian16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}

}  // namespace

std::string_view describe(ProxyError error) {
  switch (error) {
    case ProxyError::None:
      return "no error";
    case ProxyError::NotProxyProtocol:
      return "not a PROXY protocol header (a client speaking first, or no balancer in front?)";
    case ProxyError::V1TooLong:
      return "PROXY v1 header: no CRLF within 107 bytes";
    case ProxyError::V1BadLineEnd:
      return "PROXY v1 header: a CR or LF that is not the final CRLF";
    case ProxyError::V1BadSyntax:
      return "PROXY v1 header: missing or extra fields, or not single spaces";
    case ProxyError::V1BadProtocol:
      return "PROXY v1 header: protocol is not TCP4, TCP6 or UNKNOWN";
    case ProxyError::V1BadAddress:
      return "PROXY v1 header: bad address for the protocol";
    case ProxyError::V1BadPort:
      return "PROXY v1 header: bad port (0-65535, no leading zeros)";
    case ProxyError::V2BadVersion:
      return "PROXY v2 header: version is not 2";
    case ProxyError::V2BadCommand:
      return "PROXY v2 header: command is neither LOCAL nor PROXY";
    case ProxyError::V2BadFamily:
      return "PROXY v2 header: undefined address family or transport";
    case ProxyError::V2UnsupportedFamily:
      return "PROXY v2 header: not TCP over IPv4 or IPv6";
    case ProxyError::V2TooLong:
      return "PROXY v2 header: longer than the limit";
    case ProxyError::V2ShortAddress:
      return "PROXY v2 header: length too short for the addresses";
    case ProxyError::V2BadTlv:
      return "PROXY v2 header: a TLV runs past the end of the header";
  }
  return "unknown PROXY protocol error";
}

ProxyHeaderParser::ProxyHeaderParser(std::size_t maxV2Header) : maxV2Header_(maxV2Header) {}

void ProxyHeaderParser::reset() {
  state_ = State::Detect;
  buffer_.clear();
  v2Size_ = 0;
  header_ = {};
  error_ = ProxyError::None;
}

void ProxyHeaderParser::fail(ProxyError error) {
  state_ = State::Failed;
  error_ = error;
  header_ = {};
}

ParseResult ProxyHeaderParser::feed(std::string_view bytes) {
  std::size_t used = 0;
  while (used < bytes.size() && state_ != State::Done && state_ != State::Failed) {
    if (state_ == State::V2Body) {
      // The length is known and within the limit: take the rest in one go.
      const std::size_t take = std::min(v2Size_ - buffer_.size(), bytes.size() - used);
      buffer_.append(bytes.substr(used, take));
      used += take;
      if (buffer_.size() == v2Size_) {
        finishV2();
      }
      continue;
    }
    // Before the length is known, one byte at a time: each may end the header
    // or show that this is not one, and nothing after it may be taken.
    buffer_.push_back(bytes[used++]);
    switch (state_) {
      case State::Detect:
        detectByte();
        break;
      case State::V1:
        v1Byte();
        break;
      case State::V2Fixed:
        v2FixedByte();
        break;
      case State::V2Body:
      case State::Done:
      case State::Failed:
        break;
    }
  }
  const ParseStatus status = state_ == State::Done     ? ParseStatus::Complete
                             : state_ == State::Failed ? ParseStatus::Error
                                                       : ParseStatus::NeedMore;
  return {status, used};
}

void ProxyHeaderParser::detectByte() {
  const std::string_view seen = buffer_;
  if (kV1Signature.starts_with(seen)) {
    if (seen.size() == kV1Signature.size()) {
      state_ = State::V1;
    }
  } else if (kV2Signature.starts_with(seen)) {
    if (seen.size() == kV2Signature.size()) {
      state_ = State::V2Fixed;
    }
  } else {
    fail(ProxyError::NotProxyProtocol);
  }
}

void ProxyHeaderParser::v1Byte() {
  const char c = buffer_.back();
  const bool afterCr = buffer_.size() >= 2 && buffer_[buffer_.size() - 2] == '\r';
  if (c == '\n') {
    if (afterCr) {
      finishV1();
    } else {
      fail(ProxyError::V1BadLineEnd);
    }
  } else if (afterCr) {
    // "The receiver must not tolerate a single CR or LF character to end the line."
    fail(ProxyError::V1BadLineEnd);
  } else if (buffer_.size() == kV1Signature.size() + 1 && c != ' ') {
    fail(ProxyError::V1BadSyntax);
  } else if (buffer_.size() >= limits::kProxyV1HeaderMax) {
    fail(ProxyError::V1TooLong);
  }
}

void ProxyHeaderParser::finishV1() {
  // "PROXY " ... "\r\n"; the line is complete, so every field is too.
  std::string_view rest(buffer_);
  rest.remove_prefix(kV1Signature.size() + 1);
  rest.remove_suffix(2);
  ProxyHeader header;
  header.version = 1;
  // UNKNOWN: "the receiver must ignore anything presented before the CRLF".
  if (rest == "UNKNOWN" || rest.starts_with("UNKNOWN ")) {
    header.local = true;
    header_ = std::move(header);
    state_ = State::Done;
    return;
  }
  const std::string_view protocol = rest.substr(0, rest.find(' '));
  if (protocol != "TCP4" && protocol != "TCP6") {
    return fail(ProxyError::V1BadProtocol);
  }
  std::array<std::string_view, 5> fields;  // protocol, source, destination, ports
  if (!splitFields(rest, fields)) {
    return fail(ProxyError::V1BadSyntax);
  }
  if (protocol == "TCP4") {
    const auto source = parseIpv4(fields[1]);
    const auto dest = parseIpv4(fields[2]);
    if (!source || !dest) {
      return fail(ProxyError::V1BadAddress);
    }
    header.sourceIp = ipv4Text(source->data());
    header.destIp = ipv4Text(dest->data());
  } else {
    const auto source = parseIpv6(fields[1]);
    const auto dest = parseIpv6(fields[2]);
    if (!source || !dest) {
      return fail(ProxyError::V1BadAddress);
    }
    header.sourceIp = ipv6Text(source->data());
    header.destIp = ipv6Text(dest->data());
  }
  const auto sourcePort = parsePort(fields[3]);
  const auto destPort = parsePort(fields[4]);
  if (!sourcePort || !destPort) {
    return fail(ProxyError::V1BadPort);
  }
  header.sourcePort = *sourcePort;
  header.destPort = *destPort;
  header_ = std::move(header);
  state_ = State::Done;
}

void ProxyHeaderParser::v2FixedByte() {
  const auto byte = [this](std::size_t i) { return static_cast<std::uint8_t>(buffer_[i]); };
  const std::size_t size = buffer_.size();
  const bool proxyCommand = (byte(kV2VersionCommand) & 0x0F) == kCommandProxy;
  if (size == kV2VersionCommand + 1) {
    const std::uint8_t command = byte(kV2VersionCommand) & 0x0F;
    if ((byte(kV2VersionCommand) >> 4) != kV2Version) {
      fail(ProxyError::V2BadVersion);
    } else if (command != kCommandLocal && command != kCommandProxy) {
      fail(ProxyError::V2BadCommand);
    }
  } else if (size == kV2Family + 1 && proxyCommand) {
    // LOCAL ignores the family ("discard the protocol block including the
    // family"); PROXY must name one the spec defines, and one we can use.
    switch (byte(kV2Family)) {
      case kUnspec:
      case kTcp4:
      case kTcp6:
        break;
      case kUdp4:
      case kUdp6:
      case kUnixStream:
      case kUnixDgram:
        fail(ProxyError::V2UnsupportedFamily);
        break;
      default:
        fail(ProxyError::V2BadFamily);
        break;
    }
  } else if (size == kV2FixedSize) {
    const std::size_t length =
        bigEndian16(reinterpret_cast<const std::uint8_t*>(&buffer_[kV2Length]));
    v2Size_ = kV2FixedSize + length;
    const std::uint8_t family = byte(kV2Family);
    const std::size_t needed = !proxyCommand     ? 0
                               : family == kTcp4 ? addressBlockSize(kIpv4Size)
                               : family == kTcp6 ? addressBlockSize(kIpv6Size)
                                                 : 0;
    if (v2Size_ > maxV2Header_) {
      fail(ProxyError::V2TooLong);  // before a single byte of it is buffered
    } else if (length < needed) {
      fail(ProxyError::V2ShortAddress);
    } else if (length == 0) {
      finishV2();
    } else {
      state_ = State::V2Body;
    }
  }
}

void ProxyHeaderParser::finishV2() {
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(buffer_.data());
  const std::uint8_t command = bytes[kV2VersionCommand] & 0x0F;
  const std::uint8_t family = bytes[kV2Family];
  ProxyHeader header;
  header.version = 2;
  if (command == kCommandLocal || family == kUnspec) {
    // Health check, or a relayed connection the balancer cannot describe:
    // the receiver "should ignore address information" (and any TLVs).
    header.local = true;
    header_ = std::move(header);
    state_ = State::Done;
    return;
  }
  const bool v6 = family == kTcp6;
  const std::size_t addressSize = v6 ? kIpv6Size : kIpv4Size;
  const std::uint8_t* addresses = bytes + kV2FixedSize;
  header.sourceIp = v6 ? ipv6Text(addresses) : ipv4Text(addresses);
  header.destIp = v6 ? ipv6Text(addresses + addressSize) : ipv4Text(addresses + addressSize);
  header.sourcePort = bigEndian16(addresses + 2 * addressSize);
  header.destPort = bigEndian16(addresses + 2 * addressSize + 2);
  // TLVs must tile the rest exactly; their contents are not used.
  std::size_t pos = kV2FixedSize + addressBlockSize(addressSize);
  while (pos < v2Size_) {
    if (v2Size_ - pos < kTlvHeaderSize ||
        bigEndian16(bytes + pos + 1) > v2Size_ - pos - kTlvHeaderSize) {
      return fail(ProxyError::V2BadTlv);
    }
    pos += kTlvHeaderSize + bigEndian16(bytes + pos + 1);
  }
  header_ = std::move(header);
  state_ = State::Done;
}

}  // namespace smtpgate::proxy
