/// reload_test — "I changed a rule: is it live?" A rule file changes while a
/// session is open and the proxy gets SIGHUP, or just sees the file change
/// (`[rules] watch`, inotify): new sessions use the new rule, the open
/// session finishes on the rules it started with; a broken rule file is
/// refused with its diagnostics, the old rules stay, and the Prometheus
/// endpoint shows the reload and the failure.

#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <regex>
#include <string>
#include <vector>

#include "tests/support/process.h"
#include "tests/support/smtp_client.h"
#include "tests/support/smtp_sink.h"
#include "tests/support/smtpgate_process.h"

namespace smtpgate::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kTimeout = 20s;

constexpr const char* kOldRules =
    "rule old on rcpt when rcpt == \"a@example.com\" then reject \"550 5.7.1 refused by the old "
    "rule\"\n";
constexpr const char* kNewRules =
    "rule new on rcpt when rcpt == \"b@example.com\" then reject \"550 5.7.1 refused by the new "
    "rule\"\n";
constexpr const char* kBrokenRules = "rule broken on rcpt when rcpt ~ /unterminated then reject\n";

std::string scrape(std::uint16_t port) {
  CommandResult r = runCommand(
      {"curl", "-sS", "--max-time", "5", "http://127.0.0.1:" + std::to_string(port) + "/metrics"},
      10s);
  return r.exitCode == 0 ? r.output : std::string();
}

/// Waits until the exposition has a line matching `pattern`; returns it (or "").
std::string waitForMetric(std::uint16_t port, const std::string& pattern) {
  std::regex re(pattern);
  std::string found;
  waitFor(
      [&] {
        std::string text = scrape(port);
        std::smatch m;
        if (std::regex_search(text, m, re)) {
          found = m.str();
          return true;
        }
        return false;
      },
      deadlineIn(kTimeout));
  return found;
}

/// Waits until the metrics count `n` reloads with `result` ("ok" or "failed").
bool reloadsCounted(std::uint16_t metricsPort, const std::string& result, int n) {
  return !waitForMetric(metricsPort, R"(smtpgate_rules_reloads_total\{result=")" + result +
                                         R"("\} )" + std::to_string(n))
              .empty();
}

/// Starts `proxy` and waits until its metrics endpoint answers.
void startServing(SmtpgateProcess& proxy, std::uint16_t metricsPort) {
  proxy.start();
  REQUIRE(reloadsCounted(metricsPort, "ok", 0));
}

/// A proxy in front of `sink` with the old rules and metrics on `metricsPort`.
SmtpgateOptions withOldRules(const SmtpSink& sink, std::uint16_t metricsPort) {
  SmtpgateOptions options;
  options.binary = SMTPGATE_BINARY;
  options.backend = sink.host() + ":" + std::to_string(sink.port());
  options.rules = kOldRules;
  options.extraConfig = "[metrics]\nlisten = \"127.0.0.1:" + std::to_string(metricsPort) + "\"\n";
  return options;
}

/// EHLO and MAIL on a fresh session.
void startTransaction(SmtpClient& client, const SmtpgateProcess& proxy, Deadline deadline) {
  client.connect(proxy.host(), proxy.port(), deadline);
  REQUIRE(client.readBanner(deadline).code == 220);
  REQUIRE(client.command("EHLO reload.client.test", deadline).code == 250);
  REQUIRE(client.command("MAIL FROM:<sender@example.org>", deadline).code == 250);
}

}  // namespace

TEST_CASE("reload: new sessions get the new rules, open ones keep theirs, broken sets are refused",
          "[proxy][reload][metrics]") {
  SKIP_WITHOUT_SMTP_SINK();
  SmtpSink sink;
  sink.start();
  const std::uint16_t metricsPort = freePort();
  SmtpgateOptions options = withOldRules(sink, metricsPort);
  options.watchRules = false;  // only the signal reloads here
  SmtpgateProcess proxy(options);
  startServing(proxy, metricsPort);
  auto deadline = deadlineIn(kTimeout);

  SmtpClient before;  // opened under the old rules
  startTransaction(before, proxy, deadline);

  writeFile(proxy.rulesPath(), kNewRules);
  proxy.reload();
  REQUIRE(reloadsCounted(metricsPort, "ok", 1));

  SECTION("the open session finishes on the old rules") {
    SmtpReply a = before.command("RCPT TO:<a@example.com>", deadline);
    CHECK(a.code == 550);
    CHECK_THAT(a.text(), Catch::Contains("refused by the old rule"));
    CHECK(before.command("RCPT TO:<b@example.com>", deadline).code == 250);
  }
  SECTION("a new session uses the new rules") {
    SmtpClient after;
    startTransaction(after, proxy, deadline);
    CHECK(after.command("RCPT TO:<a@example.com>", deadline).code == 250);
    SmtpReply b = after.command("RCPT TO:<b@example.com>", deadline);
    CHECK(b.code == 550);
    CHECK_THAT(b.text(), Catch::Contains("refused by the new rule"));
    CHECK_FALSE(
        waitForMetric(metricsPort, R"(smtpgate_verdicts_total\{[^}]*rule="new"\} 1)").empty());
  }
  SECTION("a broken rule file is refused and the new rules stay") {
    writeFile(proxy.rulesPath(), kBrokenRules);
    proxy.reload();
    REQUIRE(reloadsCounted(metricsPort, "failed", 1));
    CHECK_THAT(proxy.log(),
               Catch::Contains("test.rules:1:") &&
                   Catch::Contains("reload failed, keeping the current config and rules"));
    SmtpClient later;
    startTransaction(later, proxy, deadline);
    SmtpReply b = later.command("RCPT TO:<b@example.com>", deadline);
    CHECK(b.code == 550);
    CHECK_THAT(b.text(), Catch::Contains("refused by the new rule"));
  }
}

TEST_CASE("reload: a saved rule file is live without a signal (file watch)",
          "[proxy][reload][metrics]") {
  SKIP_WITHOUT_SMTP_SINK();
  SmtpSink sink;
  sink.start();
  const std::uint16_t metricsPort = freePort();
  SmtpgateOptions options = withOldRules(sink, metricsPort);
  SmtpgateProcess proxy(options);
  startServing(proxy, metricsPort);
  auto deadline = deadlineIn(kTimeout);

  SmtpClient before;
  startTransaction(before, proxy, deadline);

  // As editors save: a new file renamed over the old one.
  const std::string temporary = proxy.rulesPath() + ".tmp";
  writeFile(temporary, kNewRules);
  REQUIRE(std::rename(temporary.c_str(), proxy.rulesPath().c_str()) == 0);
  REQUIRE(reloadsCounted(metricsPort, "ok", 1));

  SmtpReply a = before.command("RCPT TO:<a@example.com>", deadline);
  CHECK(a.code == 550);
  CHECK_THAT(a.text(), Catch::Contains("refused by the old rule"));
  {
    SmtpClient after;
    startTransaction(after, proxy, deadline);
    CHECK(after.command("RCPT TO:<a@example.com>", deadline).code == 250);
    CHECK(after.command("RCPT TO:<b@example.com>", deadline).code == 550);
  }

  // Written in place and broken: refused, the new rules stay.
  writeFile(proxy.rulesPath(), kBrokenRules);
  REQUIRE(reloadsCounted(metricsPort, "failed", 1));
  CHECK_THAT(proxy.log(), Catch::Contains("test.rules:1:"));
  {
    SmtpClient later;
    startTransaction(later, proxy, deadline);
    CHECK(later.command("RCPT TO:<b@example.com>", deadline).code == 550);
  }

  // Fixed again: still watched after the failure, live again.
  writeFile(proxy.rulesPath(), kOldRules);
  REQUIRE(reloadsCounted(metricsPort, "ok", 2));
  SmtpClient fixed;
  startTransaction(fixed, proxy, deadline);
  CHECK(fixed.command("RCPT TO:<a@example.com>", deadline).code == 550);
  CHECK(fixed.command("RCPT TO:<b@example.com>", deadline).code == 250);
}

/// The subject of the certificate the proxy presents after STARTTLS.
std::string presentedCertificate(const SmtpgateProcess& proxy) {
  CommandResult r =
      runCommand({"openssl", "s_client", "-starttls", "smtp", "-connect", proxy.server(), "-brief"},
                 kTimeout, "QUIT\n");
  INFO(r.output);
  std::smatch m;
  REQUIRE(std::regex_search(r.output, m, std::regex(R"(Peer certificate: ([^\n]*))")));
  return m[1];
}

/// One message through a fresh session; the recipients' replies.
std::vector<int> sendTo(const SmtpgateProcess& proxy, const std::vector<std::string>& rcpts,
                        Deadline deadline) {
  SmtpClient client;
  startTransaction(client, proxy, deadline);
  std::vector<int> codes;
  for (const std::string& rcpt : rcpts) {
    codes.push_back(client.command("RCPT TO:<" + rcpt + ">", deadline).code);
  }
  REQUIRE(client.command("DATA", deadline).code == 354);
  REQUIRE(client.command("Subject: reload\r\n\r\nbody\r\n.", deadline).code == 250);
  client.command("QUIT", deadline);
  return codes;
}

TEST_CASE("reload: SIGHUP puts the whole config in force for new sessions, certificate included",
          "[proxy][reload][metrics]") {
  SKIP_WITHOUT_SMTP_SINK();
  SmtpSinkOptions without8bit;
  without8bit.eightBitMime = false;
  SmtpSink first(without8bit);
  first.start();
  SmtpSink second;  // offers 8BITMIME
  second.start();
  const std::uint16_t metricsPort = freePort();
  SmtpgateOptions options = withOldRules(first, metricsPort);
  options.watchRules = false;
  options.tls = true;
  options.hostname = "before.test";
  // One I/O thread: a session's backend connection is back in the pool
  // before the next session is even accepted.
  options.proxy = {{"max_recipients", "1"}, {"threads", "1"}};
  SmtpgateProcess proxy(options);
  startServing(proxy, metricsPort);
  auto deadline = deadlineIn(kTimeout);
  CHECK_THAT(presentedCertificate(proxy), Catch::Contains("before.test"));

  SmtpClient before;  // opened under the first config
  before.connect(proxy.host(), proxy.port(), deadline);
  CHECK_THAT(before.readBanner(deadline).text(), Catch::Contains("before.test"));

  // Another backend, host name, certificate and limit; and a start-only key.
  options.backend = second.host() + ":" + std::to_string(second.port());
  options.hostname = "after.test";
  options.proxy = {{"max_recipients", "2"}, {"threads", "3"}};
  proxy.reconfigure(options);
  REQUIRE(reloadsCounted(metricsPort, "ok", 1));
  CHECK_THAT(proxy.log(), Catch::Contains("[proxy] threads changed; it takes a restart to apply"));

  SECTION("the open session finishes on the first config, through the first backend") {
    REQUIRE(before.command("EHLO reload.client.test", deadline).code == 250);
    REQUIRE(before.command("MAIL FROM:<sender@example.org>", deadline).code == 250);
    CHECK(before.command("RCPT TO:<x@example.com>", deadline).code == 250);
    CHECK(before.command("RCPT TO:<y@example.com>", deadline).code == 452);  // limit 1
    REQUIRE(before.command("DATA", deadline).code == 354);
    REQUIRE(before.command("Subject: old\r\n\r\nbody\r\n.", deadline).code == 250);
    CHECK(first.waitForMessages(1, deadline));
    CHECK(second.messageCount() == 0);
    // Its connection to the first backend is kept, and must not serve the
    // sessions of the new config.
    CHECK(before.command("QUIT", deadline).code == 221);
    CHECK(sendTo(proxy, {"z@example.com"}, deadline) == std::vector<int>{250});
    CHECK(second.waitForMessages(1, deadline));
    CHECK(first.messageCount() == 1);
  }
  SECTION("a new session has the new name, certificate, limit and backend") {
    // The new backend is probed at once, not a probe interval (60 s) later
    // (before any session could learn its capabilities).
    CHECK(waitFor(
        [&] {
          SmtpClient probe;
          probe.connect(proxy.host(), proxy.port(), deadline);
          probe.readBanner(deadline);
          return probe.command("EHLO reload.client.test", deadline).text().find("8BITMIME") !=
                 std::string::npos;
        },
        deadline));
    SmtpClient after;
    after.connect(proxy.host(), proxy.port(), deadline);
    CHECK_THAT(after.readBanner(deadline).text(), Catch::Contains("after.test"));
    CHECK_THAT(presentedCertificate(proxy), Catch::Contains("after.test"));
    CHECK(sendTo(proxy, {"x@example.com", "y@example.com"}, deadline) ==
          std::vector<int>{250, 250});
    CHECK(second.waitForMessages(1, deadline));
    CHECK(first.messageCount() == 0);
  }
  SECTION("a certificate that does not load refuses the reload; the config before it stays") {
    writeFile(proxy.certificatePath(), "not a certificate\n");
    options.hostname = "broken.test";
    options.tls = false;  // keep the broken file: the config still names it
    options.proxy = {{"max_recipients", "2"},
                     {"threads", "3"},
                     {"tls_certificate", "\"" + proxy.certificatePath() + "\""},
                     {"tls_key", "\"" + proxy.certificatePath() + ".key\""}};
    proxy.reconfigure(options);
    REQUIRE(reloadsCounted(metricsPort, "failed", 1));
    CHECK_THAT(proxy.log(), Catch::Contains("TLS certificate " + proxy.certificatePath()) &&
                                Catch::Contains("reload failed, keeping the current config"));
    SmtpClient later;
    later.connect(proxy.host(), proxy.port(), deadline);
    CHECK_THAT(later.readBanner(deadline).text(), Catch::Contains("after.test"));
    CHECK_THAT(presentedCertificate(proxy), Catch::Contains("after.test"));
  }
}

TEST_CASE("reload: a renewed certificate is live without a signal (file watch)",
          "[proxy][reload][metrics]") {
  SKIP_WITHOUT_SMTP_SINK();
  SmtpSink sink;
  sink.start();
  const std::uint16_t metricsPort = freePort();
  SmtpgateOptions options = withOldRules(sink, metricsPort);
  options.tls = true;
  options.hostname = "first.test";
  SmtpgateProcess proxy(options);
  startServing(proxy, metricsPort);
  CHECK_THAT(presentedCertificate(proxy), Catch::Contains("first.test"));

  // As a renewal does: a new pair in place of the old, the config untouched.
  const std::string newKey = proxy.keyPath() + ".new";
  makeTestCertificate(proxy.certificatePath(), newKey, "renewed.test");
  REQUIRE(std::rename(newKey.c_str(), proxy.keyPath().c_str()) == 0);
  CHECK(
      waitFor([&] { return presentedCertificate(proxy).find("renewed.test") != std::string::npos; },
              deadlineIn(kTimeout)));
}

TEST_CASE("metrics: the endpoint answers only GET /metrics", "[proxy][metrics]") {
  const std::uint16_t metricsPort = freePort();
  SmtpgateOptions options;
  options.binary = SMTPGATE_BINARY;
  options.backend = "127.0.0.1:" + std::to_string(freePort());  // never reached
  options.extraConfig = "[metrics]\nlisten = \"127.0.0.1:" + std::to_string(metricsPort) + "\"\n";
  SmtpgateProcess proxy(options);
  proxy.start();
  REQUIRE_FALSE(waitForMetric(metricsPort, R"(smtpgate_build_info\{version="[^"]+"\} 1)").empty());
  std::string text = scrape(metricsPort);
  CHECK_THAT(text, Catch::Contains("# TYPE smtpgate_dns_query_seconds histogram") &&
                       Catch::Contains("smtpgate_sessions_open 0"));
  CommandResult other = runCommand({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                    "http://127.0.0.1:" + std::to_string(metricsPort) + "/"},
                                   10s);
  CHECK(other.output == "404");
}

}  // namespace smtpgate::testing
