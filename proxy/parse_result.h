#pragma once
/// ParseResult — what every incremental parser of the proxy returns (STYLE.md G7).
///
/// A parser is fed bytes as they arrive and answers how far it got:
///  * Complete — one unit (a command line, a message, a reply) ended; `consumed`
///    bytes of the input belong to it, and the rest (pipelined data) is for the
///    next call.
///  * NeedMore — every byte was consumed (`consumed` == input size) and the unit
///    has not ended yet; feed more.
///  * Error — the input broke the grammar or a limit; the parser says in its own
///    `error()` what happened and whether it can go on.
///
/// SECURITY: `consumed` never exceeds the input size, so a caller that removes
/// that many bytes cannot run past its buffer. No parser throws on bad input,
/// does I/O or keeps more than its limits.

#include <cstddef>

namespace smtpgate::proxy {

enum class ParseStatus { Complete, NeedMore, Error };

struct ParseResult {
  ParseStatus status = ParseStatus::NeedMore;
  std::size_t consumed = 0;

  friend bool operator==(const ParseResult&, const ParseResult&) = default;
};

}  // namespace smtpgate::proxy
