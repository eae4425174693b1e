#pragma once
/// address — the one parser of SMTP envelope addresses for the whole project
/// (STYLE.md G7): the proxy's MAIL/RCPT, and the milter and `smtpgate check`
/// once they need one. It depends on nothing but the standard library and
/// limits.h so it can move to a lower layer unchanged.
///
/// Grammar (RFC 5321 4.1.2, with RFC 6531 for UTF-8):
///   Path       = "<" [ A-d-l ":" ] Mailbox ">"   ; the source route is dropped (4.1.2, C.)
///   Mailbox    = Local-part "@" ( Domain / address-literal )
///   Local-part = Dot-string / Quoted-string
///   Domain     = sub-domain *("." sub-domain)
///   address-literal = "[" IPv4 / "IPv6:" IPv6 "]"   ; no General-address-literal:
///                                                   ; IANA registers no tag but IPv6
/// plus "<>" (the null reverse-path) and "<postmaster>" (RCPT only) when the
/// options allow them.
///
/// Deliberately more lenient than the RFC, in the same places as Postfix, so the
/// proxy does not refuse mail the backend would take: a Dot-string may have
/// empty atoms ("a..b", ".a", "a." — used by some Japanese mobile carriers) and
/// domain labels may contain "_". Everything else is strict.
///
/// Non-ASCII bytes must be well-formed UTF-8 (else BadUtf8); they set
/// `needsSmtputf8` and the caller decides (RFC 6531: only with SMTPUTF8).
/// Length limits are RFC 5321 4.5.3.1 by default (local part 64, domain 255,
/// path 256 with its brackets) and can be relaxed through AddressLimits.
///
/// SECURITY: the input is network data. The parser only reads `text` (no
/// copies beyond the result), never reads past it, and accepts no control
/// characters, spaces outside a quoted local part, or unbalanced quotes or
/// brackets — so a parsed address can be written back into a command line
/// without opening a way to inject CR/LF or extra parameters.

#include <cstddef>
#include <string>
#include <string_view>

#include "proxy/limits.h"

namespace smtpgate::proxy {

struct AddressLimits {
  std::size_t localPart = limits::kLocalPartMax;
  std::size_t domain = limits::kDomainMax;
  std::size_t path = limits::kPathMax;
};

enum class AddressError {
  None,
  Syntax,            ///< not a path / mailbox
  BadUtf8,           ///< a non-ASCII byte that is not well-formed UTF-8
  LocalPartTooLong,  ///< over AddressLimits::localPart
  DomainTooLong,     ///< over AddressLimits::domain
  PathTooLong,       ///< over AddressLimits::path
};

struct PathOptions {
  bool allowNull = false;        ///< accept "<>" (MAIL FROM)
  bool allowPostmaster = false;  ///< accept "<postmaster>", any case, without domain (RCPT TO)
  AddressLimits limits;
};

struct Path {
  std::string address;  ///< "local@domain" as sent, route dropped; "" for <>; "postmaster" for bare
  std::string localPart;  ///< as sent: a quoted local part keeps its quotes and escapes
  std::string
      domain;  ///< as sent: an address literal keeps its brackets; "" for <> and <postmaster>
  bool isNull = false;          ///< "<>"
  bool isPostmaster = false;    ///< "<postmaster>" without a domain
  bool hadSourceRoute = false;  ///< "<@a,@b:user@c>" (route dropped)
  bool addressLiteral = false;  ///< the domain is "[...]"
  bool needsSmtputf8 = false;   ///< contains UTF-8 (RFC 6531)
};

struct PathParse {
  Path path;
  AddressError error = AddressError::None;
  std::size_t consumed = 0;  ///< bytes from "<" through ">" (0 on error)

  [[nodiscard]] bool ok() const { return error == AddressError::None; }
};

/// Parses a Path at the start of `text` ("<...>"); bytes after ">" are left
/// for the caller (ESMTP parameters follow it in MAIL and RCPT).
PathParse parsePath(std::string_view text, const PathOptions& options = {});

/// Parses a bare mailbox, "local@domain" without brackets, that must fill
/// `text` entirely (addresses from the command line or from milter macros).
PathParse parseMailbox(std::string_view text, const AddressLimits& limits = {});

/// True if `domain` is a syntactically valid domain name (no address
/// literal); sets `utf8` if it has U-labels.
bool isValidDomain(std::string_view domain, bool& utf8);

/// Length of the well-formed UTF-8 sequence at `s[i]` (2..4), or 0 if the
/// bytes there are not one (overlong forms, surrogates and values above
/// U+10FFFF are not well-formed).
std::size_t utf8SequenceLength(std::string_view s, std::size_t i);

}  // namespace smtpgate::proxy
