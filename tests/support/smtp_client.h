#pragma once
/// smtp_client — a deliberately dumb, blocking SMTP client for tests that care
/// about exact bytes and timing: pipelined groups, smuggling attempts ("\n.\n",
/// bare CR), speaking before the banner, half-sent commands. send() writes the
/// bytes it is given and nothing else (no CRLF added, no dot-stuffing);
/// readReply() parses one complete reply, single- or multi-line.
///
/// Every read takes a Deadline; a reply that is not complete by then is an
/// error (readReply throws, tryReadReply returns nullopt), never a hang.
/// SmtpClient owns one socket, closed by close() or the destructor.
///
/// swaks() runs the real `swaks` binary for tests that want an ordinary,
/// well-behaved client with a readable transcript.
///
/// Threading: one SmtpClient per thread.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/process.h"

namespace smtpgate::testing {

struct SmtpReply {
  int code = 0;                    ///< 220, 250, 550, ...
  std::vector<std::string> lines;  ///< the text after "NNN-"/"NNN ", one per line
  std::string raw;                 ///< the exact bytes of the reply, CRLFs included

  /// The lines joined with "\n".
  std::string text() const;
  /// The reply class: 2, 3, 4 or 5.
  int klass() const { return code / 100; }
};

class SmtpClient {
 public:
  SmtpClient() = default;
  ~SmtpClient();
  SmtpClient(SmtpClient&& other) noexcept;
  SmtpClient& operator=(SmtpClient&& other) noexcept;
  SmtpClient(const SmtpClient&) = delete;
  SmtpClient& operator=(const SmtpClient&) = delete;

  /// Connects (IPv4 or IPv6, host may be a name); throws on failure or timeout.
  void connect(const std::string& host, std::uint16_t port, Deadline deadline);
  bool connected() const { return fd_ >= 0; }

  /// Writes all of `bytes` as given. Throws if the peer is gone.
  void send(std::string_view bytes);
  /// send(line + "\r\n") and readReply().
  SmtpReply command(std::string_view line, Deadline deadline);

  /// The next complete reply; throws on timeout, EOF or a malformed line.
  SmtpReply readReply(Deadline deadline);
  /// The next complete reply, or nullopt if none is complete by the deadline or
  /// the peer closed first (the partial bytes stay buffered).
  std::optional<SmtpReply> tryReadReply(Deadline deadline);
  /// The 220 greeting (any code: a 554 greeting is returned, not thrown).
  SmtpReply readBanner(Deadline deadline) { return readReply(deadline); }

  /// True if the peer closes the connection before the deadline; bytes that
  /// arrive meanwhile are kept for the next read.
  bool waitForClose(Deadline deadline);
  /// Bytes received but not yet consumed by a reply.
  const std::string& pending() const { return buffer_; }

  /// The socket (non-blocking), for a test that takes the connection over,
  /// e.g. to do TLS after STARTTLS; -1 when not connected.
  int fd() const { return fd_; }

  /// Half-close: the peer sees EOF, we can still read.
  void shutdownWrite();
  void close();

 private:
  /// Reads what is available into buffer_, waiting until the deadline for the
  /// first byte. Returns false on timeout; sets eof_ when the peer closed.
  bool fill(Deadline deadline);
  /// A complete reply at the front of buffer_, consumed; nullopt if incomplete.
  std::optional<SmtpReply> takeReply();

  int fd_ = -1;
  bool eof_ = false;
  std::string buffer_;
};

struct SwaksResult {
  int exitCode = -1;  ///< swaks' exit status (0 = delivered); -1 if it timed out
  bool timedOut = false;
  std::string transcript;  ///< its stdout and stderr: "<-", "->", "<**" lines
};

/// Runs `swaks ARGS...` (e.g. {"--server", "127.0.0.1:2525", "--to", "u@example.com"})
/// and kills it after `timeout`.
SwaksResult swaks(const std::vector<std::string>& args,
                  std::chrono::milliseconds timeout = std::chrono::seconds(20));

}  // namespace smtpgate::testing
