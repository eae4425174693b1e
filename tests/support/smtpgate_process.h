#pragma once
/// smtpgate_process — the real `smtpgate proxy` binary for one integration
/// test: a config file, rule files and (optionally) a self-signed STARTTLS
/// certificate written into a TempDir, the proxy started as a ChildProcess
/// listening on 127.0.0.1, and its decision log read back.
///
/// Ports: `[proxy] listen` takes ports 1-65535 only, so the proxy cannot bind
/// port 0. start() takes a freePort(), starts the proxy and waits until that
/// very process listens on it (listeningTcpPorts(pid)); if another process
/// took the port in between, the proxy exits with "cannot listen" and start()
/// tries again with a new port (three attempts).
///
/// Backend: SmtpgateOptions::backend is written as `[proxy] backend` as is
/// ("127.0.0.1:PORT", a PostfixInstance's smtpd or a port nobody listens on).
/// The proxy connects to it lazily, at a session's first MAIL, and probes its
/// capabilities once at startup.
///
/// Cleanup: stop() (also the destructor) sends SIGTERM to the proxy's process
/// group and SIGKILLs it after the grace; the TempDir (config, rules,
/// certificate, decision log, the proxy's stderr in `smtpgate.log`) is
/// removed unless SMTPGATE_KEEP_TEST_DIRS=1.
///
/// Threading: one thread drives an instance; the query methods only read files.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/process.h"

namespace smtpgate::testing {

struct SmtpgateOptions {
  std::string binary;   ///< path of the smtpgate executable (SMTPGATE_BINARY)
  std::string backend;  ///< `[proxy] backend`, e.g. "127.0.0.1:10025"
  std::string hostname = "proxy.test";
  std::string rules;       ///< contents of the one rule file; empty: no rules
  bool watchRules = true;  ///< `[rules] watch`: reload when the rule file changes
  bool tls = false;        ///< make a self-signed certificate and offer STARTTLS
  /// More `[proxy]` keys, each value as TOML text: {"bare_newlines", "\"normalize\""}.
  std::vector<std::pair<std::string, std::string>> proxy;
  /// Whole TOML sections appended to the config, e.g. "[dns]\nservers = [\"127.0.0.1:5353\"]\n".
  std::string extraConfig;
};

/// Writes a self-signed certificate for CN=`commonName` and its unencrypted
/// key (`openssl req -x509`), valid for a day. Throws with openssl's output on failure.
void makeTestCertificate(const std::string& certificatePath, const std::string& keyPath,
                         const std::string& commonName);

class SmtpgateProcess {
 public:
  explicit SmtpgateProcess(SmtpgateOptions options);
  ~SmtpgateProcess();
  SmtpgateProcess(const SmtpgateProcess&) = delete;
  SmtpgateProcess& operator=(const SmtpgateProcess&) = delete;

  /// Writes the files, starts the proxy and returns once it listens. Throws
  /// with the proxy's output if it exits or does not listen within 15 s.
  void start();
  void stop();
  bool running();
  /// SIGTERM to the proxy alone (a graceful stop), without waiting.
  void terminate();
  /// The proxy's exit code once it has exited (128 + signal if killed), or
  /// nullopt at the deadline.
  std::optional<int> waitForExit(Deadline deadline);

  const std::string& host() const { return host_; }
  std::uint16_t port() const { return port_; }
  /// "127.0.0.1:PORT", as swaks' --server wants it.
  std::string server() const;

  std::string configPath() const { return dir_.file("smtpgate.toml"); }
  /// The one rule file; rewrite it and call reload() to change the rules.
  std::string rulesPath() const { return dir_.file("test.rules"); }
  /// SIGHUP: the proxy reloads config, rules and lists.
  void reload();
  /// Rewrites the config and the rule file from `options` (the listener
  /// stays; with `tls`, a new certificate for its hostname), then reload().
  void reconfigure(SmtpgateOptions options);
  std::string decisionLogPath() const { return dir_.file("decisions.jsonl"); }
  /// The decision log's lines so far (one JSON object each).
  std::vector<std::string> decisionLines() const;
  std::string certificatePath() const { return dir_.file("cert.pem"); }
  std::string keyPath() const { return dir_.file("key.pem"); }
  /// The proxy's stdout and stderr.
  std::string log() const;

 private:
  void writeFiles() const;
  bool startOn(std::uint16_t port);

  SmtpgateOptions options_;
  TempDir dir_;
  std::unique_ptr<ChildProcess> process_;
  std::string host_ = "127.0.0.1";
  std::uint16_t port_ = 0;
};

}  // namespace smtpgate::testing
