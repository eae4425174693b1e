#pragma once
/// DotStuffer — writes a message the way the proxy sends it to the backend
/// after DATA: every line end CRLF, every line that starts with "." gets a
/// second ".", and the end is CRLF "." CRLF (a CRLF is added first if the
/// message did not end with one). It is the inverse of DataFramer: for any
/// message M a framer produced, framing dotStuff(M) gives back exactly M and
/// consumes all of it (tested as a property over random input).
///
/// Input is normally the framer's output, which already has CRLF line ends;
/// other input (a message file for `smtpgate check`, a test) is made safe the
/// same way BareLinePolicy::Normalize does: a bare LF or bare CR becomes CRLF.
///
/// Streaming: feed() as the message is read back (for example from a spill
/// file), then finish() once; dotStuff() does both for a whole string.
///
/// SECURITY: the output can hold no CRLF "." CRLF but the last, whatever the
/// input, so no content can end the backend's DATA early (no smuggling of a
/// second message through the proxy). State is two flags.

#include <string>
#include <string_view>

namespace smtpgate::proxy {

class DotStuffer {
 public:
  /// Appends the stuffed form of `message` (the next part of it) to `out`.
  void feed(std::string_view message, std::string& out);
  /// Appends the end: a CRLF if needed, then ".\r\n". Call once; then reset().
  void finish(std::string& out);
  void reset();

 private:
  bool atLineStart_ = true;  ///< the next byte starts a line
  bool pendingCr_ = false;   ///< a CR whose LF may come in the next feed
};

/// The whole message stuffed and terminated.
std::string dotStuff(std::string_view message);

}  // namespace smtpgate::proxy
