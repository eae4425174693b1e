#pragma once
/// ReplyParser — reads the backend MTA's replies, strictly.
///
/// A reply is one or more lines "CODE-text" ... "CODE text" (RFC 5321 4.2):
/// every line carries the same three-digit code (first digit 2-5, second 0-5),
/// then "-" (more lines follow), " " or nothing (last line). Lines end in CRLF;
/// a bare LF is accepted. feed() stops after the last line of one reply
/// (Complete; with PIPELINING the next reply may follow in the same bytes),
/// or consumes everything (NeedMore).
///
/// Errors (Error, error() says which) are final until reset(): the proxy
/// answers the client replyFor(ReplyError) — 451 4.4.2 — and drops the backend
/// connection, because after a malformed reply it no longer knows which reply
/// belongs to which command.
///
/// SECURITY: the backend is trusted less than it seems: its text is relayed to
/// the client, so lines holding control characters (NUL, a bare CR, ...) are
/// refused rather than passed on, lines are bounded by maxLine bytes and a reply
/// by maxLines lines, and render() rebuilds the reply from parsed parts only.

#include <cstddef>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "policies/verdict.h"
#include "proxy/limits.h"
#include "proxy/line_reader.h"
#include "proxy/parse_result.h"

namespace smtpgate::proxy {

enum class ReplyError {
  None,
  LineTooLong,   ///< a line over maxLine bytes
  TooManyLines,  ///< more than maxLines lines
  BadCode,       ///< not three digits [2-5][0-5][0-9]
  CodeMismatch,  ///< a line's code differs from the first line's
  BadSeparator,  ///< the 4th byte is neither "-" nor " "
  BadCharacter,  ///< a control character in a line
};

struct BackendReply {
  int code = 0;
  std::vector<std::string> lines;  ///< text after the code and separator, per line
  std::optional<rules::EnhancedStatus>
      esc;  ///< from the first line, if it starts with one of the code's class

  /// The same reply, each line ending in CRLF, ready for the client.
  [[nodiscard]] std::string render() const;
  /// All lines' text joined by "\n" (for logs).
  [[nodiscard]] std::string text() const;
};

class ReplyParser {
 public:
  explicit ReplyParser(std::size_t maxLines = limits::kReplyLinesMax,
                       std::size_t maxLine = limits::kReplyLineMax);

  /// Consumes bytes up to and including the last line of the next reply.
  ParseResult feed(std::string_view bytes);

  /// The reply the last Complete result delivered.
  [[nodiscard]] const BackendReply& reply() const { return reply_; }
  [[nodiscard]] ReplyError error() const { return error_; }
  void reset();

 private:
  ParseStatus addLine(const CommandLine& line);
  ParseStatus fail(ReplyError error);

  LineReader lines_;
  std::size_t maxLines_;
  BackendReply reply_;
  bool complete_ = false;
  ReplyError error_ = ReplyError::None;
};

/// What the client hears when the backend's reply is malformed: 451 4.4.2.
policies::Reply replyFor(ReplyError error);

/// The extensions of a 250 EHLO reply, one per line after the greeting,
/// upper-cased with blanks collapsed: "PIPELINING", "SIZE 10240000",
/// "XCLIENT ADDR PORT NAME HELO PROTO". Empty for any other code.
std::set<std::string> capabilitiesFromEhlo(const BackendReply& reply);

/// The parameters of `keyword` ("SIZE" -> "10240000", "8BITMIME" -> ""), or
/// nullopt if the capability is absent. `keyword` is matched case-insensitively.
std::optional<std::string> capabilityParams(const std::set<std::string>& capabilities,
                                            std::string_view keyword);

/// Postfix's queue id from a 2xx reply to DATA, "250 2.0.0 Ok: queued as
/// 4Xyz123" -> "4Xyz123"; empty if the reply names none.
std::string queueIdFromReply(const BackendReply& reply);

}  // namespace smtpgate::proxy
