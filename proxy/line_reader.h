#pragma once
/// LineReader — splits a client's byte stream into SMTP command lines.
///
/// Fed whatever the socket delivered, it yields one command line at a time,
/// without its line end. Commands end with CRLF; a bare LF is accepted too (as
/// Postfix does, for commands only) and reported through `CommandLine::bareLf`
/// so the session can log it or refuse it. DATA content never goes through
/// here: the DataFramer owns that grammar, where a bare LF is never a line end.
///
/// feed() stops at the end of the first complete line (Complete; the bytes after
/// it are the client's next, pipelined commands and stay with the caller), or
/// consumes everything (NeedMore). The line stays valid until the next feed().
///
/// Errors: a line whose text grows past `maxLine` bytes gives Error with
/// LineError::LineTooLong as soon as that is known. The reader then discards
/// everything through the next LF on its own (within this call if the LF is
/// here, else in later calls) and reads the following line normally, so the
/// session answers `replyFor(LineError::LineTooLong)` once and goes on.
///
/// SECURITY: these bytes come straight from the network. The reader keeps at
/// most maxLine + 1 bytes (the +1 is a CR that may be the start of CRLF),
/// however long the peer's line. NUL and bare CR bytes inside a line are
/// flagged, never silently passed on; parseCommand() refuses both.

#include <cstddef>
#include <string>
#include <string_view>

#include "policies/verdict.h"
#include "proxy/limits.h"
#include "proxy/parse_result.h"

namespace smtpgate::proxy {

enum class LineError { None, LineTooLong };

/// One command line as received.
struct CommandLine {
  std::string text;        ///< the line without its CRLF or LF
  bool bareLf = false;     ///< ended by LF without CR (accepted, worth a log line)
  bool hasNul = false;     ///< contains a NUL byte
  bool hasBareCr = false;  ///< contains a CR that is not part of the line end
};

class LineReader {
 public:
  /// `maxLine`: most bytes of command text (line end not counted).
  explicit LineReader(std::size_t maxLine = limits::kCommandLineMax);

  /// Consumes bytes up to and including the end of the next line.
  ParseResult feed(std::string_view bytes);

  /// The line the last Complete result delivered.
  [[nodiscard]] const CommandLine& line() const { return line_; }
  /// The error of the last Error result; None otherwise.
  [[nodiscard]] LineError error() const { return error_; }
  /// True while the rest of an over-long line is being thrown away.
  [[nodiscard]] bool discarding() const { return discarding_; }
  /// Bytes of an unfinished line held (at most maxLine + 1).
  [[nodiscard]] std::size_t buffered() const { return partial_.size(); }
  /// Forgets any partial line (after STARTTLS: plaintext sent after the
  /// command must not be read as if it came over TLS).
  void reset();

 private:
  ParseResult finishLine(std::size_t consumed);
  bool exceedsLimit(std::string_view chunk) const;

  std::size_t maxLine_;
  std::string partial_;  ///< bytes of the current line so far
  CommandLine line_;
  LineError error_ = LineError::None;
  bool discarding_ = false;
};

/// The reply for a line error: "500 5.5.2 Error: line too long".
policies::Reply replyFor(LineError error);

}  // namespace smtpgate::proxy
