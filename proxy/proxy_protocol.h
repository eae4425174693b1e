#pragma once
/// ProxyHeaderParser — reads the PROXY protocol header (HAProxy's
/// proxy-protocol.txt, versions 1 and 2) that a TCP load balancer sends
/// before any SMTP byte, so the proxy learns the real client's address.
///
/// Fed the first bytes of a connection as they arrive, it stops at the end of
/// the header (Complete; `consumed` counts header bytes only, and the bytes
/// after it are the client's SMTP and stay with the caller) or consumes
/// everything (NeedMore). After Complete, result() holds the header; further
/// feed() calls return Complete with nothing consumed. No I/O, no exceptions.
///
/// Which version is decided from the first bytes, one byte at a time: "PROXY "
/// is version 1, the 12-byte signature "\r\n\r\n\0\r\nQUIT\n" is version 2,
/// and the first byte that fits neither is an Error (NotProxyProtocol). So a
/// plain SMTP client that speaks first ("EHLO ...") on a PROXY listener is
/// refused at its first byte instead of waiting for a header that never
/// comes. A client that waits for the banner sends nothing at all: the caller
/// bounds that wait (limits::kProxyHeaderTimeoutSeconds, Postfix
/// haproxy_read_timeout = 10s).
///
///  * v1: "PROXY TCP4 192.0.2.1 198.51.100.1 56324 25\r\n", TCP6 likewise,
///    or "PROXY UNKNOWN" with anything up to the CRLF. Exact spelling, single
///    spaces, CRLF only (a lone CR or LF is an error), at most
///    limits::kProxyV1HeaderMax (107) bytes with the CRLF. IPv4 is a dotted
///    quad without leading zeros; ports are 0-65535 without leading zeros.
///  * v2: signature, version 2, command LOCAL (0x20) or PROXY (0x21), family
///    TCP4 (0x11), TCP6 (0x21) or UNSPEC (0x00), 16-bit length, addresses,
///    then TLVs. TLVs are checked to tile the rest of the header exactly and
///    are otherwise skipped (none is interpreted; a CRC32C TLV is not
///    verified). The whole header is at most `maxV2Header` bytes
///    (limits::kProxyV2HeaderMax = 536, as Postfix).
///
/// `local` results — v2 LOCAL (the balancer's own health check), v1 UNKNOWN
/// and v2 PROXY with family UNSPEC (the balancer could not say) — carry no
/// addresses: the caller uses the real connection's, as the spec says.
/// v2 PROXY over UDP or a unix socket is refused (V2UnsupportedFamily): it
/// names no TCP client, and the spec lets a receiver refuse it. In results,
/// addresses are canonical text (inet_ntop) and an IPv4-mapped IPv6 address
/// is given as plain IPv4, as the session does for its own sockets.
///
/// Errors are final until reset(); error() says which and describe() says it
/// in words for the log. `consumed` then counts the bytes read up to the one
/// that showed the error. The spec says to abort the connection, so the caller
/// closes it without a reply.
///
/// Limits: the parser buffers at most max(107, maxV2Header) bytes, however
/// the peer behaves; a v2 length field beyond the limit is refused as soon as
/// it is read, before any of those bytes arrive.
///
/// SECURITY: these are network bytes, and a header that is believed decides
/// which client address every rule, list and the backend's XCLIENT see. Only
/// trusted peers may send one: the CALLER enforces `proxy.trusted_proxies`
/// (checks the real peer address before feeding a byte here) and uses a PROXY
/// listener for nothing else, since the spec forbids guessing whether a header
/// is present. The parser itself trusts nothing: every field is validated,
/// nothing is read past the announced length, and bytes after the header are
/// never looked at. Note that `local` results leave the connection with the
/// balancer's own address; Postfix refuses v1 UNKNOWN for that reason, so
/// never allow-list the balancers' addresses in rules.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/limits.h"
#include "proxy/parse_result.h"

namespace smtpgate::proxy {

enum class ProxyError {
  None,
  NotProxyProtocol,     ///< the first bytes are neither "PROXY " nor the v2 signature
  V1TooLong,            ///< no CRLF within 107 bytes
  V1BadLineEnd,         ///< a CR or LF that is not the final CRLF
  V1BadSyntax,          ///< missing or extra fields, or not single spaces
  V1BadProtocol,        ///< neither TCP4, TCP6 nor UNKNOWN
  V1BadAddress,         ///< not an address of the announced family
  V1BadPort,            ///< not 0-65535 in decimal without leading zeros
  V2BadVersion,         ///< the version nibble is not 2
  V2BadCommand,         ///< the command nibble is neither LOCAL nor PROXY
  V2BadFamily,          ///< a family/transport byte the spec does not define
  V2UnsupportedFamily,  ///< PROXY over UDP or a unix socket: no TCP client address
  V2TooLong,            ///< the announced length exceeds maxV2Header
  V2ShortAddress,       ///< the length is less than the family's address block
  V2BadTlv,             ///< a TLV runs past the end of the header
};

/// The error in words, for the log: "PROXY v1 header: bad port".
std::string_view describe(ProxyError error);

/// What the header said.
struct ProxyHeader {
  int version = 0;  ///< 1 (text) or 2 (binary)
  /// LOCAL, UNKNOWN or UNSPEC: no addresses here; use the connection's own.
  bool local = false;
  std::string sourceIp;  ///< the client; empty when local
  std::uint16_t sourcePort = 0;
  std::string destIp;  ///< the address the client connected to; empty when local
  std::uint16_t destPort = 0;

  friend bool operator==(const ProxyHeader&, const ProxyHeader&) = default;
};

class ProxyHeaderParser {
 public:
  /// `maxV2Header`: most bytes of a v2 header, the 16 fixed bytes included.
  explicit ProxyHeaderParser(std::size_t maxV2Header = limits::kProxyV2HeaderMax);

  /// Consumes bytes up to and including the end of the header.
  ParseResult feed(std::string_view bytes);

  /// The header the Complete result delivered.
  [[nodiscard]] const ProxyHeader& result() const { return header_; }
  /// The error of the Error result; None otherwise.
  [[nodiscard]] ProxyError error() const { return error_; }
  /// Header bytes held so far (at most max(107, maxV2Header)).
  [[nodiscard]] std::size_t buffered() const { return buffer_.size(); }
  /// Forgets everything, to read another header.
  void reset();

 private:
  enum class State { Detect, V1, V2Fixed, V2Body, Done, Failed };

  void detectByte();
  void v1Byte();
  void v2FixedByte();
  void finishV1();
  void finishV2();
  void fail(ProxyError error);

  std::size_t maxV2Header_;
  State state_ = State::Detect;
  std::string buffer_;      ///< header bytes so far
  std::size_t v2Size_ = 0;  ///< total v2 header size, once its length field is read
  ProxyHeader header_;
  ProxyError error_ = ProxyError::None;
};

}  // namespace smtpgate::proxy
