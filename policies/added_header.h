#pragma once
/// AddedHeader — a header field smtpgate adds on top of a message it lets
/// through at end of DATA (Policy::headersToAdd()), in the one form every
/// frontend uses: the proxy writes line() in front of the message it relays,
/// the milter hands name and value to smfi_insheader.
///
/// SECURITY: a value is one line. Its parts are built by our own code, but
/// some come from the network (MAIL FROM, HELO, DKIM tags) and the builders
/// quote or replace them; oneLineHeaderValue() is the last guard, applied by
/// Policy::headersToAdd() to every value, so that no client byte can end the
/// field early and start a header of its own (CR, LF), cut it in a C API
/// (NUL) or smuggle other control characters. '%' is harmless here: neither
/// the SMTP stream nor smfi_insheader treats it specially (only
/// smfi_setreply does).
///
/// Pure value type and function; thread-safe.

#include <string>
#include <string_view>

namespace smtpgate::policies {

inline constexpr std::string_view kSpamScoreHeader = "X-Spam-Score";
inline constexpr std::string_view kSpamRulesHeader = "X-Spam-Rules";

struct AddedHeader {
  std::string name;   ///< the field name, e.g. "Authentication-Results"
  std::string value;  ///< one line, without the space after the colon

  /// "Name: value\r\n", as the field goes on the wire.
  [[nodiscard]] std::string line() const { return name + ": " + value + "\r\n"; }
};

/// A field name as written before the colon, without trailing blanks.
std::string_view trimmedHeaderName(std::string_view name);

/// True if the field name `name`, as written before the colon (trailing
/// blanks ignored), is `expected` in any case: how MTAs compare names.
bool headerNameIs(std::string_view name, std::string_view expected);

/// `value` with every control character (C0, including CR, LF and NUL, and
/// DEL) except HTAB turned into a space, so it is a single header line.
std::string oneLineHeaderValue(std::string_view value);

}  // namespace smtpgate::policies
