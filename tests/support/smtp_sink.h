#pragma once
/// smtp_sink — Postfix's `smtp-sink` as a test SMTP/LMTP server that keeps
/// what it receives: the backend of proxy tests and the relayhost of
/// PostfixInstance. It runs as a ChildProcess on 127.0.0.1; `smtp-sink` binds
/// port 0 itself and port() is read back from /proc, so no other process can
/// take the port in between.
///
/// How messages are captured (the parts of smtp-sink(1) this relies on):
///  * `-D FILE` appends every *completed* transaction to FILE; `-S MARK`
///    prefixes each with MARK (here "\001smtpgate-sink-message\n"), so the file
///    splits into messages.
///  * `-c` prints "sess=N quit=N mesg=N\r" to stdout (our log) after each
///    message, *after* the message was appended. messages() parses only the
///    first `mesg` messages, so it never returns a half-written one.
///  * Each dumped message is: MARK, then "X-Client-Addr:", "X-Client-Proto:",
///    optional "X-Helo-Args:", one "X-Mail-Args:" (the text after "MAIL FROM:"),
///    one "X-Rcpt-Args:" per accepted RCPT (after "RCPT TO:"), a three-line
///    "Received:" header, then the DATA content and one extra "\n".
///  * The DATA content is what smtp-sink wrote: every CR byte dropped (CRLF and
///    bare LF both become "\n"; a bare CR vanishes), dot-stuffing undone, the
///    final ".\r\n" removed. SinkMessage::data is exactly that. A test that must
///    see the CR/LF bytes on the wire cannot use smtp-sink for it.
///
/// What smtp-sink (3.7) can and cannot pretend: ESMTP, PIPELINING, 8BITMIME,
/// AUTH, XCLIENT, XFORWARD, ENHANCEDSTATUSCODES and DSN can each be turned off;
/// it never announces SMTPUTF8, SIZE, CHUNKING or STARTTLS (use a
/// PostfixInstance for those). Its XCLIENT answers "250 2.0.0 Ok" without a new
/// greeting — unlike Postfix. Fixed failures: per command name (CONNECT, HELO,
/// EHLO, MAIL, RCPT, DATA, ".", RSET, ...) a 5xx, a 4xx, a 421 + disconnect, or
/// a silent disconnect.
///
/// Cleanup: stop() (also the destructor) ends smtp-sink with SIGTERM, its
/// TempDir (dump file and log) is removed unless SMTPGATE_KEEP_TEST_DIRS=1.
/// As root, smtp-sink must drop privileges (`-u nobody`); the dump directory
/// is then made writable by that user.
///
/// Threading: a SmtpSink is used from one thread; messages() only reads files.

#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/process.h"

namespace smtpgate::testing {

struct SmtpSinkOptions {
  std::string hostname = "sink.test";  ///< -h: greeting and EHLO name
  bool esmtp = true;                   ///< false: -e (no EHLO at all)
  bool pipelining = true;              ///< false: -p
  bool eightBitMime = true;            ///< false: -8
  bool auth = true;                    ///< false: -a (no AUTH PLAIN LOGIN)
  bool xclient = true;                 ///< false: -C
  bool xforward = true;                ///< false: -F
  bool enhancedStatusCodes = true;     ///< false: -E
  bool dsn = true;                     ///< false: -N
  bool lmtp = false;                   ///< -L
  /// Command names answered with a hard error (-f), "500 5.3.0 Error: command
  /// failed" unless hardReply is set (-B). -f and -r imply -p in smtp-sink.
  std::vector<std::string> hardReject;
  std::string hardReply;
  /// Command names answered with a soft error (-r), "450 4.3.0 Error: command
  /// failed" unless softReply is set (-b).
  std::vector<std::string> softReject;
  std::string softReply;
  std::vector<std::string> reply421;    ///< -Q: answer 421 and disconnect
  std::vector<std::string> disconnect;  ///< -q: disconnect without a reply
  int maxConnections = 0;               ///< -m; 0 keeps smtp-sink's 256
  int commandTimeoutSeconds = 20;       ///< -t (smtp-sink's default is 100)
  bool verbose = false;                 ///< -v: the conversations go to the log
};

/// One completed mail transaction as smtp-sink dumped it.
struct SinkMessage {
  std::string clientAddr;               ///< X-Client-Addr ("ipv6:" prefix for IPv6)
  std::string clientProto;              ///< SMTP, ESMTP or LMTP
  std::string heloArgs;                 ///< X-Helo-Args, empty without HELO/EHLO
  std::string mailArgs;                 ///< "<a@b> SIZE=12 BODY=8BITMIME"
  std::string sender;                   ///< from mailArgs, without <>; "" for <>
  std::vector<std::string> rcptArgs;    ///< one per accepted RCPT, in order
  std::vector<std::string> recipients;  ///< from rcptArgs, without <>
  std::string data;                     ///< the content, CRs removed and dot-unstuffed (see above)
};

class SmtpSink {
 public:
  static constexpr const char* kProgram = "/usr/sbin/smtp-sink";

  explicit SmtpSink(SmtpSinkOptions options = {});
  ~SmtpSink();
  SmtpSink(const SmtpSink&) = delete;
  SmtpSink& operator=(const SmtpSink&) = delete;

  /// Starts smtp-sink and returns once it listens (throws after 10 s, with its log).
  void start();
  void stop();
  bool running();

  std::uint16_t port() const { return port_; }
  const std::string& host() const { return host_; }
  /// "[127.0.0.1]:PORT", as Postfix's relayhost wants it.
  std::string relayhost() const;

  /// The completed messages so far, in arrival order.
  std::vector<SinkMessage> messages() const;
  std::size_t messageCount() const;
  /// True once at least `count` messages are complete.
  bool waitForMessages(std::size_t count, Deadline deadline) const;

  const std::string& dumpPath() const { return dumpPath_; }
  /// smtp-sink's stdout/stderr: counters, warnings, -v conversations.
  std::string log() const;

 private:
  std::vector<std::string> commandLine() const;

  SmtpSinkOptions options_;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<ChildProcess> process_;
  std::string host_ = "127.0.0.1";
  std::string dumpPath_;
  std::uint16_t port_ = 0;
};

/// Splits the contents of a `-D` dump file made with the marker above into
/// messages; at most `limit` of them. Exposed for unit tests of the parser.
std::vector<SinkMessage> parseSinkDump(const std::string& dump, std::size_t limit);

}  // namespace smtpgate::testing

/// In a Catch2 test case: WARN and return when smtp-sink cannot run here (it
/// must be started as root to drop to its -u user).
#define SKIP_WITHOUT_SMTP_SINK()                  \
  do {                                            \
    if (::geteuid() != 0) {                       \
      WARN("skipped: smtp-sink needs root here"); \
      return;                                     \
    }                                             \
  } while (false)
