#pragma once
/// postfix_instance — a private Postfix 3.7 for one test: its own
/// config_directory, queue_directory, data_directory and maillog_file in a
/// TempDir, an smtpd on 127.0.0.1 at a port the master chose itself, and an
/// SmtpSink as relayhost so every delivery can be observed. No file outside
/// the TempDir is written; /etc/postfix is only read (postfix-files,
/// dynamicmaps.cf), never changed; no system Postfix is involved.
///
/// What the instance does by default (PostfixOptions):
///  * accepts mail for `relayDomain` (relay_domains) only for the addresses in
///    `recipients` (relay_recipient_maps), so unknown@example.com gets Postfix's
///    own "550 5.1.1 ... User unknown in relay recipient table";
///  * refuses other domains with "554 5.7.1 ... Relay access denied" unless the
///    client is in `mynetworks` (reject_unauth_destination, not the 4xx
///    defer_unauth_destination of the default);
///  * relays everything it accepts to sink() — relayhost = [127.0.0.1]:SINKPORT;
///  * trusts XCLIENT and XFORWARD from 127.0.0.1 (independent of mynetworks,
///    so a proxy need not be in mynetworks);
///  * no TLS, no aliases, no local delivery, no DNS lookups for the relayhost,
///    no error sleeps, 1 s queue runs and back-off.
///
/// start() writes main.cf and master.cf, runs `postfix -c DIR check` (which
/// creates the queue and data directories with Postfix's own owners and modes
/// from postfix-files), then `postfix -c DIR start`, and returns once the smtpd
/// greets. Needs root (Postfix's master does); available() says whether it can run.
///
/// Concurrency: each instance has its own queue directory (master.pid, the
/// public/private sockets, postlog), data directory (master.lock) and ports, so
/// any number run side by side — `ctest -j` included. The masters all share
/// the process name "master": stop() only ever signals the pid from this
/// instance's master.pid and, if it will not die, that master's process group.
///
/// Cleanup: stop() (also the destructor) runs `postfix -c DIR stop`, waits for
/// the master and every process of its group to exit, SIGKILLs the group after
/// a deadline, then stops the sink; the TempDir goes last (kept when
/// SMTPGATE_KEEP_TEST_DIRS=1, for reading maillog and the queue after a failure).
///
/// Threading: one thread drives an instance; the query methods only read files.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/process.h"
#include "tests/support/smtp_sink.h"

namespace smtpgate::testing {

struct PostfixOptions {
  std::string myhostname = "backend.test";
  std::string relayDomain = "example.com";  ///< relay_domains
  std::vector<std::string> recipients = {"user@example.com", "postmaster@example.com"};
  /// "192.0.2.1/32" makes 127.0.0.1 untrusted while XCLIENT still works.
  std::string mynetworks = "127.0.0.0/8";
  std::string xclientHosts = "127.0.0.1";   ///< smtpd_authorized_xclient_hosts
  std::string xforwardHosts = "127.0.0.1";  ///< smtpd_authorized_xforward_hosts
  std::string smtpdMilters;                 ///< e.g. "inet:127.0.0.1:8891"
  std::string nonSmtpdMilters;
  std::string milterDefaultAction = "tempfail";
  std::string milterProtocol = "6";
  /// Also listen on ::1 protocols-wise (inet_protocols = ipv4, ipv6). Unset:
  /// on if ::1 can be bound here.
  std::optional<bool> ipv6;
  SmtpSinkOptions sink;
  /// More main.cf settings; a name that is already set is replaced in place.
  std::vector<std::pair<std::string, std::string>> mainCf;
  /// More master.cf lines. The smtpd on 127.0.0.1 is the first inet service;
  /// port() reads the first listener back, so add no inet service on port 0.
  std::vector<std::string> masterCf;
};

class PostfixInstance {
 public:
  explicit PostfixInstance(PostfixOptions options = {});
  ~PostfixInstance();
  PostfixInstance(const PostfixInstance&) = delete;
  PostfixInstance& operator=(const PostfixInstance&) = delete;

  /// Root, /usr/sbin/postfix and smtp-sink present. Tests skip with a WARN if not.
  static bool available();

  /// Starts the sink and Postfix; throws with Postfix's output and maillog on failure.
  void start();
  void stop();

  /// The smtpd port on 127.0.0.1.
  std::uint16_t port() const { return port_; }
  const std::string& host() const { return host_; }
  SmtpSink& sink() { return sink_; }
  std::string configDir() const;
  std::string maillogPath() const;
  std::string maillog() const;
  pid_t masterPid() const { return masterPid_; }

  /// The first maillog line matching `pattern` (std::regex_search), waiting
  /// for it until the deadline.
  std::optional<std::string> waitForLog(const std::regex& pattern, Deadline deadline) const;
  /// All maillog lines matching `pattern` so far.
  std::vector<std::string> logLines(const std::regex& pattern) const;
  /// Queue ids of the messages the smtp client delivered ("status=sent").
  std::vector<std::string> queueIdsDelivered() const;

  /// Runs a Postfix command against this instance: {"postqueue", "-f"} runs
  /// `postqueue -c DIR -f`. Returns its output and exit code.
  CommandResult postfixCommand(const std::vector<std::string>& args,
                               std::chrono::milliseconds timeout = std::chrono::seconds(20)) const;
  /// Asks the queue manager to retry deferred mail now (`postqueue -f`).
  void flushQueue() const;

 private:
  std::vector<std::pair<std::string, std::string>> mainCfSettings() const;
  std::string masterCfText() const;
  void writeConfig() const;
  void runOrThrow(const std::vector<std::string>& args) const;
  void readMasterAndPort();
  void waitForGreeting();
  void waitForMasterExit();

  PostfixOptions options_;
  std::unique_ptr<TempDir> dir_;  // declared first: removed after the sink stopped
  SmtpSink sink_;
  std::string host_ = "127.0.0.1";
  std::uint16_t port_ = 0;
  pid_t masterPid_ = -1;
  bool started_ = false;
};

}  // namespace smtpgate::testing

/// In a Catch2 test case: WARN and return when Postfix cannot run here
/// (PostfixInstance::available() is false: not root, or no Postfix).
#define SKIP_WITHOUT_POSTFIX()                                      \
  do {                                                              \
    if (!::smtpgate::testing::PostfixInstance::available()) {       \
      WARN("skipped: needs root, /usr/sbin/postfix and smtp-sink"); \
      return;                                                       \
    }                                                               \
  } while (false)
