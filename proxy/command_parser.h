#pragma once
/// parseCommand — turns one SMTP command line into a typed ParsedCommand.
///
/// Input is a line as LineReader delivers it (no CRLF). The verb is matched
/// case-insensitively against one table (the RFC 5321 verbs plus STARTTLS,
/// AUTH, BDAT, XCLIENT, XFORWARD); the table also says whether the verb takes
/// an argument. MAIL and RCPT are parsed fully:
///   MAIL FROM:<path> [SP param *(SP param)]      RCPT TO:<path> [SP params]
/// with the path from parsePath() (address.h) — "<>" only for MAIL,
/// "<postmaster>" only for RCPT, a source route dropped — and each parameter
/// as RFC 5321 esmtp-keyword ["=" esmtp-value]. Like Postfix we tolerate
/// spaces after the colon ("MAIL FROM: <a@b>") and between parameters, but not
/// a path without its angle brackets.
///
/// Known parameters (anything else is 555 Unsupported parameter):
///   MAIL: SIZE (digits, fits uint64), BODY (7BIT | 8BITMIME; BINARYMIME only
///         with CommandOptions::chunking), SMTPUTF8 (no value), RET, ENVID, AUTH
///   RCPT: NOTIFY, ORCPT
/// A keyword given twice is an error. The session still checks parameters
/// against what it advertised (SMTPUTF8 only if the backend offers it, etc.).
///
/// UTF-8 in the MAIL path without SMTPUTF8 is SenderNeedsSmtputf8. For RCPT
/// the parser cannot know the transaction's MAIL, so it only sets
/// `path.needsSmtputf8`; the session answers RecipientNeedsSmtputf8 itself.
///
/// Every SyntaxError has exactly one reply, in one table: replyFor().
///
/// SECURITY: the line is network data. Control characters (NUL, bare CR, DEL,
/// anything below 0x20 but TAB) refuse the whole command, so nothing parsed
/// here can carry a line break into a command the proxy writes to the backend.
/// No exceptions; work is linear in the line length.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policies/verdict.h"
#include "proxy/address.h"

namespace smtpgate::proxy {

enum class Verb {
  Helo,
  Ehlo,
  Mail,
  Rcpt,
  Data,
  Bdat,
  Rset,
  Noop,
  Quit,
  Help,
  Vrfy,
  Expn,
  StartTls,
  Auth,
  Xclient,
  Xforward,
  Unknown,
};

/// The verb as sent on the wire ("MAIL", "STARTTLS"); "UNKNOWN" for Unknown.
std::string_view toString(Verb verb);

enum class SyntaxError {
  None,
  EmptyCommand,            ///< blank line
  UnknownCommand,          ///< verb not in the table
  BadCharacter,            ///< control character in the line
  MissingArgument,         ///< HELO/EHLO/VRFY/EXPN/AUTH/XCLIENT/XFORWARD without one
  UnexpectedArgument,      ///< DATA/RSET/STARTTLS with one
  MailSyntax,              ///< not "MAIL FROM:<...>"
  RcptSyntax,              ///< not "RCPT TO:<...>"
  BadSenderAddress,        ///< the MAIL path does not parse
  SenderTooLong,           ///< the MAIL path is over a length limit
  BadRecipientAddress,     ///< the RCPT path does not parse
  RecipientTooLong,        ///< the RCPT path is over a length limit
  SenderNeedsSmtputf8,     ///< UTF-8 sender without SMTPUTF8
  RecipientNeedsSmtputf8,  ///< UTF-8 recipient in a transaction without SMTPUTF8 (set by the
                           ///< session)
  ParameterSyntax,         ///< not keyword[=value], or a bad value
  DuplicateParameter,      ///< a keyword given twice
  BadSizeValue,            ///< SIZE not digits or over uint64
  BadBodyValue,            ///< BODY not 7BIT/8BITMIME/BINARYMIME
  UnsupportedParameter,    ///< a keyword we do not implement
  BinaryMimeUnsupported,   ///< BODY=BINARYMIME without CHUNKING
  BdatSyntax,              ///< not "BDAT size [LAST]"
};

enum class BodyType { Unspecified, SevenBit, EightBitMime, BinaryMime };

/// One ESMTP parameter; the keyword is upper-cased, the value kept as sent.
struct EsmtpParam {
  std::string keyword;
  std::optional<std::string> value;
  friend bool operator==(const EsmtpParam&, const EsmtpParam&) = default;
};

struct ParsedCommand {
  Verb verb = Verb::Unknown;
  /// Everything after the verb and the blanks after it, trailing blanks
  /// removed ("FROM:<a@b> SIZE=1" for MAIL; the unknown line for Unknown).
  std::string argument;
  Path path;                          ///< MAIL and RCPT
  std::vector<EsmtpParam> params;     ///< MAIL and RCPT, in order
  std::optional<std::uint64_t> size;  ///< MAIL SIZE=
  BodyType body = BodyType::Unspecified;
  bool smtputf8 = false;        ///< MAIL SMTPUTF8
  std::uint64_t chunkSize = 0;  ///< BDAT
  bool lastChunk = false;       ///< BDAT ... LAST
  SyntaxError error = SyntaxError::None;

  [[nodiscard]] bool ok() const { return error == SyntaxError::None; }
};

struct CommandOptions {
  bool chunking = false;  ///< we advertise CHUNKING, so BODY=BINARYMIME is allowed
  AddressLimits addressLimits;
};

ParsedCommand parseCommand(std::string_view line, const CommandOptions& options = {});

/// The reply for a syntax error, e.g. "501 5.1.7 Bad sender address syntax".
policies::Reply replyFor(SyntaxError error);

}  // namespace smtpgate::proxy
