/// proxy_protocol_test — `smtpgate proxy` behind a TCP load balancer: with
/// `proxy_protocol = true` the real client's address comes from the PROXY
/// header (v1 or v2) and reaches the rules, the decision log and, through
/// XCLIENT, the backend Postfix. A header from a peer outside
/// `trusted_proxies`, a malformed one, or a client that speaks SMTP first is
/// cut off without a reply, and no command reaches the backend.
///
/// The test plays the balancer itself with SmtpClient (exact bytes), so each
/// case knows precisely which header was sent.

#include <catch2/catch.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "tests/support/postfix_instance.h"
#include "tests/support/process.h"
#include "tests/support/smtp_client.h"
#include "tests/support/smtpgate_process.h"

namespace smtpgate::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr auto kTimeout = 20s;

constexpr const char* kRules = R"(
rule listed on connect when client.ip == 203.0.113.66 then reject "554 5.7.1 $client_ip is listed"
)";

SmtpgateOptions balancedOptions(const std::string& trusted) {
  SmtpgateOptions options;
  options.binary = SMTPGATE_BINARY;
  options.rules = kRules;
  options.proxy = {{"proxy_protocol", "true"}, {"trusted_proxies", "[\"" + trusted + "\"]"}};
  return options;
}

/// The v2 binary header for a TCP4 client 198.51.100.7:40000 -> 192.0.2.25:25.
std::string proxyV2Header() {
  std::string h("\r\n\r\n\0\r\nQUIT\n", 12);
  h += '\x21';                              // version 2, PROXY
  h += '\x11';                              // TCP over IPv4
  h += std::string("\x00\x0c", 2);          // 12 address bytes follow
  h += std::string("\xc6\x33\x64\x07", 4);  // 198.51.100.7
  h += std::string("\xc0\x00\x02\x19", 4);  // 192.0.2.25
  h += std::string("\x9c\x40\x00\x19", 4);  // ports 40000, 25
  return h;
}

/// Sends `header` and one message; returns the final reply's code.
int deliverThrough(SmtpgateProcess& proxy, const std::string& header) {
  auto deadline = deadlineIn(kTimeout);
  SmtpClient client;
  client.connect(proxy.host(), proxy.port(), deadline);
  client.send(header);
  REQUIRE(client.readBanner(deadline).code == 220);
  REQUIRE(client.command("EHLO balanced.client.test", deadline).code == 250);
  REQUIRE(client.command("MAIL FROM:<sender@example.org>", deadline).code == 250);
  REQUIRE(client.command("RCPT TO:<user@example.com>", deadline).code == 250);
  REQUIRE(client.command("DATA", deadline).code == 354);
  client.send("Subject: via a balancer\r\n\r\nhello\r\n.\r\n");
  int code = client.readReply(deadline).code;
  client.command("QUIT", deadline);
  return code;
}

/// True if the proxy closes the connection without a single byte of reply.
bool closedSilently(SmtpgateProcess& proxy, const std::string& firstBytes) {
  auto deadline = deadlineIn(kTimeout);
  SmtpClient client;
  client.connect(proxy.host(), proxy.port(), deadline);
  client.send(firstBytes);
  bool closed = client.waitForClose(deadline);
  INFO("received: " << client.pending());
  return closed && client.pending().empty();
}

}  // namespace

TEST_CASE("proxy protocol: the client named by a v1 or v2 header reaches rules, log and Postfix",
          "[proxy][proxy-protocol]") {
  SKIP_WITHOUT_POSTFIX();
  PostfixOptions backend;
  backend.mynetworks = "192.0.2.1/32";  // the proxy relays only through XCLIENT + relay_domains
  PostfixInstance postfix(backend);
  postfix.start();
  SmtpgateOptions options = balancedOptions("127.0.0.1");
  options.backend = postfix.host() + ":" + std::to_string(postfix.port());
  SmtpgateProcess proxy(options);
  proxy.start();

  std::string header;
  std::string expectedIp;
  SECTION("v1") {
    header = "PROXY TCP4 198.51.100.7 192.0.2.25 40000 25\r\n";
    expectedIp = "198.51.100.7";
  }
  SECTION("v1 over IPv6") {
    header = "PROXY TCP6 2001:db8::7 2001:db8::25 40000 25\r\n";
    expectedIp = "2001:db8::7";
  }
  SECTION("v2") {
    header = proxyV2Header();
    expectedIp = "198.51.100.7";
  }
  REQUIRE(deliverThrough(proxy, header) == 250);

  // Postfix learned the client from XCLIENT: its queue line names it, while
  // every TCP connection it saw came from 127.0.0.1.
  std::string escaped = std::regex_replace(expectedIp, std::regex(R"([.])"), R"(\.)");
  auto line =
      postfix.waitForLog(std::regex(R"(: client=\S*\[)" + escaped + R"(\])"), deadlineIn(kTimeout));
  CHECK(line.has_value());
  REQUIRE(postfix.sink().waitForMessages(1, deadlineIn(kTimeout)));

  bool logged = waitFor(
      [&] {
        for (const auto& l : proxy.decisionLines()) {
          json record = json::parse(l);
          if (record["action"] == "deliver" && record["client_ip"] == expectedIp) {
            return true;
          }
        }
        return false;
      },
      deadlineIn(kTimeout));
  CHECK(logged);
}

TEST_CASE("proxy protocol: rules see the header's address, not the balancer's",
          "[proxy][proxy-protocol]") {
  SmtpgateOptions options = balancedOptions("127.0.0.1");
  options.backend = "127.0.0.1:" + std::to_string(freePort());  // never reached
  SmtpgateProcess proxy(options);
  proxy.start();

  auto deadline = deadlineIn(kTimeout);
  SmtpClient client;
  client.connect(proxy.host(), proxy.port(), deadline);
  client.send("PROXY TCP4 203.0.113.66 192.0.2.25 40000 25\r\n");
  SmtpReply banner = client.readBanner(deadline);
  CHECK(banner.code == 554);
  CHECK_THAT(banner.text(), Catch::Contains("203.0.113.66 is listed"));
}

TEST_CASE("proxy protocol: untrusted peers, bad headers and early talkers get no reply",
          "[proxy][proxy-protocol]") {
  SECTION("a valid header from a peer outside trusted_proxies") {
    SmtpgateOptions options = balancedOptions("192.0.2.1");
    options.backend = "127.0.0.1:" + std::to_string(freePort());
    SmtpgateProcess proxy(options);
    proxy.start();
    CHECK(closedSilently(proxy, "PROXY TCP4 198.51.100.7 192.0.2.25 40000 25\r\n"));
    CHECK_THAT(proxy.log(), Catch::Contains("not in proxy.trusted_proxies"));
  }
  SECTION("a trusted peer") {
    SmtpgateOptions options = balancedOptions("127.0.0.0/8");
    options.backend = "127.0.0.1:" + std::to_string(freePort());
    SmtpgateProcess proxy(options);
    proxy.start();
    SECTION("speaking SMTP first") {
      CHECK(closedSilently(proxy, "EHLO direct.client.test\r\n"));
    }
    SECTION("with a malformed v1 header") {
      CHECK(closedSilently(proxy, "PROXY TCP4 198.51.100.700 192.0.2.25 40000 25\r\n"));
    }
    SECTION("with a header longer than v1 allows") {
      CHECK(closedSilently(proxy, "PROXY UNKNOWN " + std::string(200, 'x') + "\r\n"));
    }
  }
}

}  // namespace smtpgate::testing
