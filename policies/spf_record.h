#pragma once
/// SPF records (RFC 7208 section 4.5, 4.6 and the ABNF of section 12):
/// which TXT strings are SPF records, and the strict parser that turns one
/// into terms.
///
/// `parseSpfRecord` checks the whole record before anything is evaluated
/// (4.6: a syntax error anywhere is a permerror, even after a matching
/// term). It follows the ABNF to the letter:
///  - "v=spf1" (any case) then terms separated by one or more spaces, and
///    nothing but spaces: a tab, CR or LF inside a record is an error;
///  - mechanisms all, include, a, mx, ptr, ip4, ip6, exists with an
///    optional qualifier + - ~ ?; names are case-insensitive;
///  - CIDR lengths 0-32 and 0-128 without leading zeros ("/032" is an
///    error), the dual form "/24//64" only on a and mx;
///  - ip4 networks as four decimal octets without leading zeros, ip6 as
///    RFC 4291 text (inet_pton);
///  - domain-specs and modifier values as macro-strings (spf_macro.h);
///  - redirect= and exp= at most once each (section 6); other modifiers
///    ignored when their name (ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ))
///    and value are valid. A term with "=" right after a valid name is a
///    modifier, anything else a mechanism, so "redirect:x" is an unknown
///    mechanism and "-all=x" an unknown mechanism too.
///
/// Errors name the offending term, quoted with control and 8-bit bytes as
/// \xNN and cut at 64 bytes, so they can go to logs and headers.
///
/// SECURITY: the text comes from DNS and may be anything up to the size of
/// a DNS message. Parsing is linear, never recursive, and keeps only the
/// terms; evaluation limits (10 DNS terms) are spf.cpp's business.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policies/spf_macro.h"
#include "rules/value.h"

namespace smtpgate::policies {

enum class SpfQualifier { Pass, Fail, SoftFail, Neutral };

enum class SpfMechanismKind { All, Include, A, Mx, Ptr, Ip4, Ip6, Exists };

/// "all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists".
std::string_view toString(SpfMechanismKind kind);

struct SpfMechanism {
  SpfQualifier qualifier = SpfQualifier::Pass;
  SpfMechanismKind kind = SpfMechanismKind::All;
  /// include and exists always; a, mx and ptr when written (else the
  /// current domain).
  std::optional<SpfMacroString> domain;
  rules::IpAddress network;  ///< ip4 and ip6
  int cidr4 = 32;            ///< a, mx, ip4
  int cidr6 = 128;           ///< a, mx, ip6
  std::string text;          ///< the term as written, for comments and headers

  /// include, a, mx, ptr and exists count toward the limit of 10 (4.6.4).
  [[nodiscard]] bool queriesDns() const;
};

struct SpfRecord {
  std::vector<SpfMechanism> mechanisms;
  std::optional<SpfMacroString> redirect;
  std::optional<SpfMacroString> explanation;  ///< exp=
  bool hasAll = false;                        ///< then redirect= is ignored (6.1)
};

struct SpfRecordParse {
  std::optional<SpfRecord> record;
  std::string error;  ///< why there is no record: "unknown mechanism 'moo'"
};

/// True if `text` (a TXT record's strings, concatenated) is an SPF record:
/// "v=spf1" in any case, then a space or the end (4.5).
bool isSpfRecord(std::string_view text);

/// Parses an SPF record (isSpfRecord(text) is expected).
SpfRecordParse parseSpfRecord(std::string_view text);

}  // namespace smtpgate::policies
