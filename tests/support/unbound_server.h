#pragma once
/// UnboundServer — a real `unbound` on 127.0.0.1 serving test zone data.
///
/// The server answers only from its own `local-data` (the root is a static
/// local zone: a name without data is NXDOMAIN, a name without data of the
/// asked type is NODATA) and never queries anything else. `timeoutName()`
/// makes every query for a name (and below it) go unanswered, except for
/// types that have local-data there (unbound's `deny` zone), which is how a
/// "DNS timeout" is simulated.
///
/// ```cpp
/// UnboundServer dns;
/// dns.addRecord("example.com. TXT \"v=spf1 -all\"");
/// dns.addRecord("5.113.0.203.in-addr.arpa. PTR mail.example.com.");
/// dns.start();                         // waits (<= 20 s) until it listens
/// resolverOptions.servers = {dns.address()};   // "127.0.0.1:PORT"
/// ```
///
/// Lifetime: the process is stopped (SIGTERM to its group) and its TempDir
/// removed on destruction. The port comes from freePort() (unbound cannot
/// bind port 0 and report it), so there is a small window in which another
/// program may take it; start() then fails with unbound's log in the message.
/// Needs the `unbound` binary (Debian package unbound); `available()` says
/// whether it is there, for tests to skip cleanly.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/process.h"

namespace smtpgate::testing {

class UnboundServer {
 public:
  UnboundServer();
  ~UnboundServer();
  UnboundServer(const UnboundServer&) = delete;
  UnboundServer& operator=(const UnboundServer&) = delete;

  /// True if an unbound binary is installed.
  static bool available();

  /// One record in zone-file syntax, as unbound's `local-data` takes it:
  /// "name. [TTL] TYPE RDATA". Call before start().
  void addRecord(const std::string& record);
  /// Queries for `name` (and names below it) get no answer, except types
  /// with local-data at that exact name.
  void timeoutName(const std::string& name);
  /// An extra line inside `server:` (e.g. "verbosity: 3").
  void addServerOption(const std::string& line);

  /// Writes unbound.conf, checks it with unbound-checkconf, starts unbound
  /// and waits until it listens. Throws std::runtime_error with the log.
  void start(Deadline deadline = deadlineIn(std::chrono::seconds(20)));
  void stop();

  std::uint16_t port() const { return port_; }
  /// "127.0.0.1:PORT", the form of `[dns] servers`.
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& configPath() const { return configPath_; }
  std::string log() const;

  /// `text` quoted for a zone-file character-string: "..." with both quote
  /// characters, the backslash and bytes outside 0x20-0x7e as \DDD.
  static std::string quoteCharacterString(const std::string& text);

 private:
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<ChildProcess> process_;
  std::vector<std::string> records_;
  std::vector<std::string> timeoutNames_;
  std::vector<std::string> options_;
  std::string configPath_;
  std::uint16_t port_ = 0;
};

}  // namespace smtpgate::testing

/// In a Catch2 test case: WARN and return when unbound is not installed.
#define SKIP_WITHOUT_UNBOUND()                              \
  do {                                                      \
    if (!::smtpgate::testing::UnboundServer::available()) { \
      WARN("skipped: unbound is not installed");            \
      return;                                               \
    }                                                       \
  } while (false)
