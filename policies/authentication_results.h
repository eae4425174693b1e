#pragma once
/// Authentication-Results (RFC 8601): the header field smtpgate adds, and
/// the test that finds forged ones.
///
/// `authenticationResultsValue` builds the field's value from the results a
/// transaction has: `mx.example.com; spf=pass smtp.mailfrom=a@example.org;
/// dkim=pass header.d=example.org header.s=sel header.a=rsa-sha256
/// header.b=AbCdEfGh; dmarc=pass (p=reject) header.from=example.org`. A
/// method that was not evaluated (no rule read it) is left out — the header
/// says what was checked, nothing more; with none it is `<id>; none`.
/// Comments carry reasons; they are sanitised (no parentheses, backslashes
/// or control characters from the network). The value is one line: the
/// frontend may fold it.
///
/// `claimsAuthservId` answers RFC 8601 section 5: an incoming
/// Authentication-Results field whose authserv-id is ours must be removed
/// before ours is added, or a sender could forge our verdicts. The id is
/// compared case-insensitively, after CFWS (comments included) and an
/// optional trailing dot, and may be a quoted-string.
///
/// Pure functions; thread-safe.

#include <functional>
#include <string>
#include <string_view>

#include "policies/dkim.h"
#include "policies/dmarc.h"
#include "policies/spf.h"

namespace smtpgate::policies {

inline constexpr std::string_view kAuthenticationResults = "Authentication-Results";

struct AuthResults {
  const SpfResult* spf = nullptr;
  std::string spfSender;  ///< MAIL FROM as given (smtp.mailfrom)
  std::string helo;       ///< for smtp.helo when SPF checked HELO
  const DkimResult* dkim = nullptr;
  const DmarcResult* dmarc = nullptr;
};

std::string authenticationResultsValue(std::string_view authservId, const AuthResults& results);

/// True if `value` (an Authentication-Results field body, possibly folded)
/// names `authservId` as its authserv-id.
bool claimsAuthservId(std::string_view value, std::string_view authservId);

/// True if `name` is "Authentication-Results", in any case, blanks before
/// the colon ignored (how MTAs compare field names).
bool isAuthenticationResultsName(std::string_view name);

/// A message's header block with the forged Authentication-Results fields
/// taken out, for a frontend that rewrites the message (the proxy).
struct HeaderBlockRewrite {
  /// Bytes of the original header block: up to and including the line end
  /// of its last field (0 when the message starts with the empty line; the
  /// whole message when it has no empty line).
  std::size_t headerLength = 0;
  std::string headers;      ///< the block without the removed fields (when removed > 0)
  std::size_t removed = 0;  ///< fields removed
};

/// Finds the Authentication-Results fields of `message` that claim
/// `authservId` (claimsAuthservId). Only the header block is read and
/// copied; the body is never touched.
HeaderBlockRewrite withoutForgedAuthenticationResults(std::string_view message,
                                                      std::string_view authservId);

/// Decides whether a header field goes: its name as written (trailing blanks
/// included) and its value, continuation lines and all.
using HeaderFieldTest = std::function<bool(std::string_view name, std::string_view value)>;

/// The header block of `message` without the fields `remove` picks; only
/// the header block is read and copied.
HeaderBlockRewrite withoutHeaderFields(std::string_view message, const HeaderFieldTest& remove);

}  // namespace smtpgate::policies
