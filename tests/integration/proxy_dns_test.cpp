/// proxy_dns_test — `smtpgate proxy` with DNS facts from a real unbound on
/// loopback: a DNSBL listing refuses at connect, SPF decides at MAIL, and a
/// DNS server that never answers gives the configured tempfail within the
/// timeout while other sessions go on being served (lookups run off the
/// proxy's I/O thread). With the answers cached, a stage that may look up
/// DNS runs on the I/O thread and never reaches the pool.

#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <regex>
#include <string>

#include "tests/support/process.h"
#include "tests/support/smtp_client.h"
#include "tests/support/smtp_sink.h"
#include "tests/support/smtpgate_process.h"
#include "tests/support/unbound_server.h"

namespace smtpgate::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kTimeout = 20s;

// Clients are presented by PROXY protocol headers with documentation
// addresses, as real clients would be (not loopback), and a DNSBL test needs
// an address the zone can list.
constexpr const char* kListedClient = "198.51.100.7";
constexpr const char* kCleanClient = "198.51.100.8";

constexpr const char* kSpfRules = R"(
rule spf-fail  on mail    when spf == fail        then reject "550 5.7.23 SPF check failed for $sender"
rule spf-error on mail    when spf == temperror   then tempfail "451 4.4.3 SPF lookup failed, try again"
)";

constexpr const char* kDnsblRule = R"(
list zen dnsbl "zen.test"
rule listed    on connect when client.ip in @zen  then reject "554 5.7.1 $client_ip is listed at zen.test"
)";

/// unbound with the zone data, an smtp-sink backend and the proxy between.
class DnsSetup {
 public:
  /// `metricsPort`: serve /metrics there (0: no endpoint).
  explicit DnsSetup(const std::string& rules, std::uint16_t metricsPort = 0) {
    dns_.addRecord("7.100.51.198.zen.test. A 127.0.0.2");
    // NXDOMAIN carries this SOA: the proxy caches "not listed" for its
    // MINIMUM (RFC 2308), as a real zone would have it.
    dns_.addRecord(". 3600 SOA ns.test. hostmaster.test. 1 3600 600 86400 300");
    dns_.addRecord("spf-fail.test. TXT \"v=spf1 -all\"");
    dns_.addRecord("spf-pass.test. TXT \"v=spf1 ip4:198.51.100.0/24 -all\"");
    dns_.timeoutName("slow.test");
    dns_.start();
    sink_.start();
    SmtpgateOptions options;
    options.binary = SMTPGATE_BINARY;
    options.backend = sink_.host() + ":" + std::to_string(sink_.port());
    options.rules = rules;
    // One I/O thread: if a lookup blocked it, no other session could be served.
    options.proxy = {
        {"threads", "1"}, {"proxy_protocol", "true"}, {"trusted_proxies", "[\"127.0.0.1\"]"}};
    options.extraConfig = "[dns]\nservers = [\"" + dns_.address() + "\"]\ntimeout = \"3s\"\n";
    if (metricsPort != 0) {
      options.extraConfig +=
          "[metrics]\nlisten = \"127.0.0.1:" + std::to_string(metricsPort) + "\"\n";
    }
    proxy_ = std::make_unique<SmtpgateProcess>(options);
    proxy_->start();
  }
  SmtpSink& sink() { return sink_; }

  /// A session as `clientIp`, up to the banner (returned).
  SmtpReply connect(SmtpClient& client, const std::string& clientIp, Deadline deadline) {
    client.connect(proxy_->host(), proxy_->port(), deadline);
    client.send("PROXY TCP4 " + clientIp + " 192.0.2.25 40000 25\r\n");
    return client.readBanner(deadline);
  }

  /// One message from `sender` as `clientIp`; the reply to MAIL FROM, or the
  /// reply to the final dot when MAIL was accepted.
  SmtpReply send(const std::string& clientIp, const std::string& sender) {
    auto deadline = deadlineIn(kTimeout);
    SmtpClient client;
    REQUIRE(connect(client, clientIp, deadline).code == 220);
    REQUIRE(client.command("EHLO client.test", deadline).code == 250);
    SmtpReply mail = client.command("MAIL FROM:<" + sender + ">", deadline);
    if (mail.code != 250) {
      return mail;
    }
    REQUIRE(client.command("RCPT TO:<user@example.com>", deadline).code == 250);
    REQUIRE(client.command("DATA", deadline).code == 354);
    client.send("Subject: dns test\r\n\r\nhello\r\n.\r\n");
    return client.readReply(deadline);
  }

 private:
  UnboundServer dns_;
  SmtpSink sink_;
  std::unique_ptr<SmtpgateProcess> proxy_;
};

/// The value of `smtpgate_dns_stages_total{ran="WHERE"}`, -1 if not scraped.
long dnsStages(std::uint16_t metricsPort, const std::string& where) {
  CommandResult r = runCommand({"curl", "-sS", "--max-time", "5",
                                "http://127.0.0.1:" + std::to_string(metricsPort) + "/metrics"},
                               10s);
  std::smatch m;
  const std::regex re("smtpgate_dns_stages_total\\{ran=\"" + where + "\"\\} ([0-9]+)");
  if (r.exitCode != 0 || !std::regex_search(r.output, m, re)) {
    return -1;
  }
  return std::stol(m[1].str());
}

bool canRun() {
  return UnboundServer::available() && ::geteuid() == 0;  // smtp-sink needs -u as root
}

}  // namespace

TEST_CASE("proxy dns: a DNSBL listing refuses at connect, an unlisted client is served",
          "[proxy][dns]") {
  if (!canRun()) {
    WARN("skipped: needs unbound and root");
    return;
  }
  DnsSetup setup(kDnsblRule);
  auto deadline = deadlineIn(kTimeout);
  SmtpClient listed;
  SmtpReply banner = setup.connect(listed, kListedClient, deadline);
  CHECK(banner.code == 554);
  CHECK_THAT(banner.text(), Catch::Contains("198.51.100.7 is listed at zen.test"));

  CHECK(setup.send(kCleanClient, "a@example.org").code == 250);
  CHECK(setup.sink().waitForMessages(1, deadlineIn(kTimeout)));
}

TEST_CASE("proxy dns: SPF decides at MAIL FROM", "[proxy][dns]") {
  if (!canRun()) {
    WARN("skipped: needs unbound and root");
    return;
  }
  DnsSetup setup(kSpfRules);
  SmtpReply refused = setup.send(kCleanClient, "a@spf-fail.test");
  CHECK(refused.code == 550);
  CHECK_THAT(refused.text(), Catch::Contains("5.7.23 SPF check failed for a@spf-fail.test"));
  CHECK(setup.send(kCleanClient, "a@spf-pass.test").code == 250);
  CHECK(setup.sink().waitForMessages(1, deadlineIn(kTimeout)));
  CHECK(setup.sink().messageCount() == 1);
}

TEST_CASE("proxy dns: a DNS server that never answers tempfails in time and blocks nobody",
          "[proxy][dns]") {
  if (!canRun()) {
    WARN("skipped: needs unbound and root");
    return;
  }
  DnsSetup setup(kSpfRules);
  auto deadline = deadlineIn(kTimeout);

  // Session A: its MAIL needs SPF for slow.test, which unbound never answers.
  SmtpClient a;
  REQUIRE(setup.connect(a, kCleanClient, deadline).code == 220);
  REQUIRE(a.command("EHLO a.client.test", deadline).code == 250);
  auto started = std::chrono::steady_clock::now();
  a.send("MAIL FROM:<a@slow.test>\r\n");

  // Session B is served while A's lookup is pending: the proxy has one I/O
  // thread, so B's replies prove the lookup does not run on it.
  SmtpClient b;
  REQUIRE(setup.connect(b, kCleanClient, deadline).code == 220);
  REQUIRE(b.command("EHLO b.client.test", deadline).code == 250);
  CHECK_FALSE(a.tryReadReply(deadlineIn(0ms)).has_value());

  SmtpReply answer = a.readReply(deadline);
  auto took = std::chrono::steady_clock::now() - started;
  CHECK(answer.code == 451);
  CHECK_THAT(answer.text(), Catch::Contains("4.4.3 SPF lookup failed, try again"));
  CHECK(took < 15s);  // bounded by the 3 s DNS timeout (SPF may ask a few names), not hung
  CHECK(a.command("NOOP", deadline).code == 250);  // the session goes on
  CHECK(setup.sink().messageCount() == 0);
}

TEST_CASE("proxy dns: with every answer cached, DNS stages run inline, not on the pool",
          "[proxy][dns]") {
  if (!canRun()) {
    WARN("skipped: needs unbound and root");
    return;
  }
  const std::uint16_t metricsPort = freePort();
  // Connect (DNSBL) and mail (SPF) both may look up DNS.
  DnsSetup setup(std::string(kDnsblRule) + kSpfRules, metricsPort);
  waitFor([&] { return dnsStages(metricsPort, "pool") == 0; }, deadlineIn(kTimeout));
  REQUIRE(dnsStages(metricsPort, "inline") == 0);

  // First session: nothing is cached yet, so both stages go to the pool.
  CHECK(setup.send(kCleanClient, "a@spf-pass.test").code == 250);
  const long pool = dnsStages(metricsPort, "pool");
  CHECK(pool == 2);
  CHECK(dnsStages(metricsPort, "inline") == 0);

  // The same client and sender again: every answer (the DNSBL's NXDOMAIN,
  // the SPF record) is cached, so neither stage leaves the I/O thread.
  CHECK(setup.send(kCleanClient, "b@spf-pass.test").code == 250);
  CHECK(dnsStages(metricsPort, "pool") == pool);
  CHECK(dnsStages(metricsPort, "inline") == 2);
  CHECK(setup.sink().waitForMessages(2, deadlineIn(kTimeout)));
}

}  // namespace smtpgate::testing
