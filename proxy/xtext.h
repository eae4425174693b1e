#pragma once
/// xtext — RFC 3461 section 4 xtext, and the XCLIENT commands built with it.
///
/// xtextEncode() leaves "!" .. "~" except "+" and "=" as they are and writes every
/// other byte as "+" and two upper-case hex digits, so its output is printable
/// ASCII with no space, CR or LF: safe inside one command line. xtextDecode() is
/// its inverse: nullopt for a "+" not followed by two hex digits or for a byte
/// that must be encoded (space, control, "=", 8-bit); lower-case hex digits are
/// accepted, as RFC 3461 clients sometimes send them.
///
/// xclientCommands() builds what the proxy sends Postfix so the backend sees the
/// real client (Postfix XCLIENT_README, smtpd_authorized_xclient_hosts):
///   XCLIENT ADDR=192.0.2.1 PORT=51234 NAME=mail.example.org HELO=mail.example.org PROTO=ESMTP
/// Only attributes the backend advertised in its EHLO "XCLIENT ..." line are
/// sent; none if it advertised no XCLIENT. Values are xtext-encoded; an IPv6
/// ADDR is written "IPV6:2001:db8::1"; unknown values are "[UNAVAILABLE]", a
/// name whose lookup failed temporarily "[TEMPUNAVAIL]". Each command fits the
/// 512-byte command line with its CRLF (XCLIENT_README note 1), so the fields
/// may need several commands — the session sends each and expects a 220 for
/// each. NAME, REVERSE_NAME and HELO values are cut to 255 bytes (Postfix's
/// VALID_HOSTNAME_LEN), and any value that alone would not fit a line is cut
/// at a character boundary of its encoding.
///
/// SECURITY: HELO is whatever the client sent, and LOGIN and the names come
/// from the network or DNS. xtext leaves no byte that could end the command or
/// start another parameter, whatever the input.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/limits.h"

namespace smtpgate::proxy {

std::string xtextEncode(std::string_view raw);
std::optional<std::string> xtextDecode(std::string_view xtext);

/// How a DNS name lookup ended, as XCLIENT can say it.
enum class LookupStatus {
  Ok,           ///< the name is known
  Unavailable,  ///< permanent failure or no name: "[UNAVAILABLE]"
  TempFailure,  ///< transient failure: "[TEMPUNAVAIL]"
};

enum class SmtpProtocol { Smtp, Esmtp };

/// What the proxy knows about its client. Empty / nullopt means unknown.
struct XclientFields {
  std::string addr;                   ///< client IP, "192.0.2.1" or "2001:db8::1"
  std::optional<std::uint16_t> port;  ///< client TCP port
  std::string name;                   ///< verified (forward-confirmed) hostname
  LookupStatus nameStatus = LookupStatus::Unavailable;
  std::string reverseName;  ///< PTR name, not verified
  LookupStatus reverseNameStatus = LookupStatus::Unavailable;
  std::optional<std::string> helo;        ///< the client's HELO/EHLO argument
  std::optional<SmtpProtocol> proto;      ///< omitted when unknown (before HELO)
  std::optional<std::string> login;       ///< SASL login; omitted when none
  std::string destAddr;                   ///< the local address the client reached
  std::optional<std::uint16_t> destPort;  ///< the local port the client reached
};

/// The XCLIENT command lines (without CRLF) for `fields`, limited to the
/// attributes in the backend's "XCLIENT ..." capability (see
/// capabilitiesFromEhlo); empty if there is none.
std::vector<std::string> xclientCommands(const XclientFields& fields,
                                         const std::set<std::string>& capabilities,
                                         std::size_t maxLine = limits::kXclientLineMax);

/// Whether the backend's "XCLIENT ..." capability takes ADDR. Without it
/// XCLIENT would give the backend an incoherent client (the client's name
/// and HELO with the proxy's address), so the proxy uses XFORWARD instead.
bool xclientTakesAddress(const std::set<std::string>& capabilities);

}  // namespace smtpgate::proxy
