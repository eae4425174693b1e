#pragma once
/// DataFramer — frames the message a client sends after "354", and only that.
///
/// Consumes DATA bytes as they arrive, removes dot-stuffing (RFC 5321 4.5.2: a
/// line's leading "." is deleted) and writes the message, with CRLF line ends,
/// to a MessageSink. The message ends ONLY at CRLF "." CRLF, where the first
/// CRLF may be the one that ended the DATA command (so ".\r\n" at the very
/// start is an empty message). The bytes after that terminator are not
/// consumed: with PIPELINING they are the client's next command.
///
/// feed() returns NeedMore (everything consumed) until the terminator, then
/// Complete with the bytes up to and including it. It never returns Error:
/// content errors are recorded in error() while the framer keeps reading to the
/// real end, so the session answers exactly once, after the end, with
/// replyFor(error()) (OpenSMTPD's TX_ERROR_SIZE pattern, STYLE.md G4). Once an
/// error is recorded the framer writes nothing more; what the sink holds then
/// is a truncated message that the caller must throw away. The first error
/// wins. Output stops exactly where the error is (a limit's last byte, or
/// just before a rejected bare line end), whatever the chunking.
///
/// Bare line ends (a CR not followed by LF, an LF not preceded by CR):
///  * BareLinePolicy::Reject (default) records BareLf / BareCr — the session
///    answers "550 5.5.2 Error: bare <LF> received", Postfix 3.9's wording for
///    smtpd_forbid_bare_newline = reject.
///  * BareLinePolicy::Normalize writes each as CRLF (Postfix's "normalize").
/// Either way a bare line end NEVER counts as the CRLF of the terminator, so
/// "\n.\n", "\n.\r\n", "\r.\r", "\r\n.\n", "\r.\r\n" and the like do not end the
/// message (SMTP smuggling, CVE-2023-51764 and relatives). A line after a
/// normalized line end is still unstuffed; a line that is a lone "." but is not
/// a terminator is kept as ".".
///
/// Limits (DataLimits): maxSize bytes of message (after unstuffing, CRLF line
/// ends: the RFC 1870 SIZE measure) → TooBig; maxLine bytes on one line →
/// LineTooLong; maxHeader bytes of header section → HeaderTooBig, seen at the
/// end of the header line that crosses it. The header section is every line
/// up to the empty line (RFC 5322 2.1), whatever the lines look like: GMime,
/// whose parse the data-stage rules read, reads on through a line without a
/// colon to the empty line, so that is the amount this limit bounds.
///
/// BDAT chunks (RFC 3030, Framing::Chunks): the same line-end rules and
/// limits, but no dot-stuffing and no terminator: the session knows each
/// chunk's length and feeds exactly its bytes (all are consumed), and calls
/// finish() after the LAST one. A message whose last line has no CRLF gets
/// one there (the backend needs it to end the message, and it loses nothing);
/// a CR at the very end is a bare CR. Line ends split across chunks are
/// still line ends: the state carries over.
///
/// SECURITY: every byte here is the client's. The framer holds no message
/// bytes of its own beyond one feed's worth of output (flushed to the sink at
/// the end of each feed), keeps O(1) state across feeds, so splitting the input
/// anywhere gives the same result, and bounds what it writes by maxSize.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "policies/verdict.h"
#include "proxy/limits.h"
#include "proxy/parse_result.h"

namespace smtpgate::proxy {

/// Where the framed message goes. The proxy's sink will spill to a temporary
/// file past a size; tests use StringSink.
class MessageSink {
 public:
  virtual ~MessageSink() = default;
  virtual void append(std::string_view bytes) = 0;
};

class StringSink final : public MessageSink {
 public:
  void append(std::string_view bytes) override { data_.append(bytes); }
  [[nodiscard]] const std::string& data() const { return data_; }
  void clear() { data_.clear(); }

 private:
  std::string data_;
};

enum class BareLinePolicy { Reject, Normalize };

struct DataLimits {
  std::uint64_t maxSize = limits::kMessageSizeMax;  ///< UINT64_MAX for no limit
  std::size_t maxLine = limits::kDataLineMax;
  std::uint64_t maxHeader = limits::kHeaderSizeMax;
  BareLinePolicy bareLines = BareLinePolicy::Reject;
};

enum class DataError {
  None,
  BareLf,        ///< an LF without CR (Reject policy)
  BareCr,        ///< a CR without LF (Reject policy)
  TooBig,        ///< over DataLimits::maxSize
  LineTooLong,   ///< a line over DataLimits::maxLine
  HeaderTooBig,  ///< a header section over DataLimits::maxHeader
};

/// How the client marks the end of the message.
enum class Framing {
  DotTerminated,  ///< DATA: dot-stuffed, ends at CRLF "." CRLF
  Chunks,         ///< BDAT: counted chunks, ends at finish()
};

class DataFramer {
 public:
  explicit DataFramer(DataLimits limits = {}, Framing framing = Framing::DotTerminated);

  /// Consumes DATA bytes, appending message bytes to `sink`; stops after the
  /// terminator (DotTerminated) or consumes them all (Chunks).
  ParseResult feed(std::string_view bytes, MessageSink& sink);
  /// Chunks: the last chunk was fed; ends the last line, completes.
  void finish(MessageSink& sink);

  [[nodiscard]] bool complete() const { return complete_; }
  [[nodiscard]] DataError error() const { return error_; }
  /// Bytes consumed, terminator included.
  [[nodiscard]] std::uint64_t bytesIn() const { return bytesIn_; }
  /// Bytes written to the sink.
  [[nodiscard]] std::uint64_t bytesOut() const { return bytesOut_; }
  /// Ready for the next message, same limits.
  void reset();

 private:
  enum class State {
    LineStart,  ///< at the start of a line
    Dot,        ///< a "." at the start of a line
    DotCr,      ///< "." CR at the start of a line
    MidLine,    ///< inside a line
    Cr,         ///< a CR inside a line
  };

  void step(char c);
  /// At a line end: the header section grows by the line, or ends.
  void countHeaderLine();
  void midLine(char c);
  void bareLineEnd(DataError kind);
  void lineEnd();
  void emit(std::string_view bytes);
  void fail(DataError error);
  void flush(MessageSink& sink);

  DataLimits limits_;
  Framing framing_;
  State state_ = State::LineStart;
  /// The current line began after a real CRLF (or at the start): only such
  /// a line can hold the terminating ".".
  bool afterCrlf_ = true;
  bool complete_ = false;
  DataError error_ = DataError::None;
  std::uint64_t bytesIn_ = 0;
  std::uint64_t bytesOut_ = 0;
  std::size_t lineLength_ = 0;
  bool inHeader_ = true;  ///< no empty line yet
  std::uint64_t headerBytes_ = 0;
  std::string out_;  ///< output of the current feed, not yet in the sink
};

/// The one reply for each error, e.g. "552 5.3.4 Message size exceeds fixed
/// maximum message size".
policies::Reply replyFor(DataError error);

}  // namespace smtpgate::proxy
