#pragma once
/// limits — every bound the SMTP proxy enforces, declared once (STYLE.md G11).
///
/// Each constant names the Postfix parameter it mirrors, so an administrator
/// who knows main.cf can tell what the proxy will accept. The parsers take
/// these as constructor parameters (defaults); the session may override them
/// from the configuration.
///
/// SECURITY: these numbers are what stands between a peer and the proxy's
/// memory: no parser buffers more than its limit plus a few bytes, whatever
/// the peer sends. Raising one raises what a single connection may cost.

#include <cstddef>
#include <cstdint>

namespace smtpgate::proxy::limits {

/// Longest command line kept, in bytes of text (the CRLF is not counted).
/// Postfix: line_length_limit = 2048 (smtpd reads commands with it).
inline constexpr std::size_t kCommandLineMax = 2048;

/// Recipients per transaction; the 1001st gets "452 4.5.3 Too many recipients".
/// Postfix: smtpd_recipient_limit = 1000.
inline constexpr std::size_t kRecipientsMax = 1000;

/// Largest message accepted, in bytes after dot-unstuffing with CRLF line ends
/// (the RFC 1870 SIZE measure). Postfix: message_size_limit = 10240000.
inline constexpr std::uint64_t kMessageSizeMax = 10'240'000;

/// Largest header section of a message: its lines, CRLFs included, up to the
/// empty line that ends it. The
/// data-stage rules parse and match every header, so this bounds their work
/// however the message is built. Postfix has no total: it cuts each header
/// at header_size_limit = 102400; Exim refuses past header_maxsize = 1M.
inline constexpr std::uint64_t kHeaderSizeMax = std::uint64_t{1} << 20;

/// Longest line of message text. RFC 5322 allows 998+2 but real mail breaks
/// it, so the proxy is lenient and only bounded. Postfix has no equivalent: it
/// splits lines longer than line_length_limit into several queue records.
inline constexpr std::size_t kDataLineMax = std::size_t{1} << 20;

/// Backend replies: lines per reply and bytes per line. Postfix smtp(8) reads
/// reply lines with line_length_limit (2048) and does not count them; a
/// backend sending more than this is broken or hostile.
inline constexpr std::size_t kReplyLinesMax = 100;
inline constexpr std::size_t kReplyLineMax = 4096;

/// RFC 5321 section 4.5.3.1 object sizes. Postfix enforces none of these (it
/// accepts longer addresses), so the session may relax them.
inline constexpr std::size_t kLocalPartMax = 64;    ///< 4.5.3.1.1
inline constexpr std::size_t kDomainMax = 255;      ///< 4.5.3.1.2
inline constexpr std::size_t kPathMax = 256;        ///< 4.5.3.1.3, with "<" and ">"
inline constexpr std::size_t kDomainLabelMax = 63;  ///< RFC 1035 section 2.3.4

/// XCLIENT commands must fit the RFC 5321 512-byte command line, CRLF
/// included (Postfix XCLIENT_README, note 1); NAME and HELO values are cut to
/// 255 bytes first (Postfix: VALID_HOSTNAME_LEN).
inline constexpr std::size_t kXclientLineMax = 510;
inline constexpr std::size_t kXclientValueMax = 255;

/// Seconds a client may stay idle between commands. Postfix: smtpd_timeout = 300s.
inline constexpr int kCommandTimeoutSeconds = 300;

/// PROXY protocol v1 line, CRLF included: the spec's worst case, "PROXY
/// UNKNOWN" with two full IPv6 addresses and ports (proxy-protocol.txt 2.1).
inline constexpr std::size_t kProxyV1HeaderMax = 107;

/// PROXY protocol v2 header: 16 fixed bytes, the addresses (36 for IPv6) and
/// TLVs. Postfix: HAPROXY_HEADER_MAX_LEN = 536 (global/haproxy_srvr.c: one
/// default IPv4 TCP segment, 576 - 40), which leaves 484 bytes of TLVs.
inline constexpr std::size_t kProxyV2HeaderMax = 536;

/// Seconds a PROXY-enabled listener waits for the header before it drops the
/// connection. Postfix: haproxy_read_timeout = 10s.
inline constexpr int kProxyHeaderTimeoutSeconds = 10;

}  // namespace smtpgate::proxy::limits
