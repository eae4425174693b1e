// The DNS resolver, reverse DNS and SPF against a real unbound on loopback
// (tests/support/unbound_server.h), and against a server that never answers.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "policies/dns_resolver.h"
#include "policies/reverse_dns.h"
#include "policies/spf.h"
#include "tests/policies/test_resolver.h"
#include "tests/support/unbound_server.h"

using namespace smtpgate;
using namespace std::chrono_literals;
using policies::DnsResolver;
using policies::DnsStatus;
using policies::DnsType;
using policies::SpfStatus;
using testing::resolverFor;
using testing::UnboundServer;

namespace {

rules::IpAddress ip(const char* text) {
  return *rules::IpAddress::parse(text);
}

/// The test zone: an SPF domain, PTRs with and without forward confirmation.
void fillZone(UnboundServer& dns) {
  dns.addRecord("example.org. TXT \"v=spf1 ip4:198.51.100.0/24 a:mail.example.org -all\"");
  dns.addRecord("mail.example.org. A 203.0.113.9");
  dns.addRecord("mail.example.org. AAAA 2001:db8::25");
  dns.addRecord("soft.example.org. TXT \"v=spf1 ~all\"");
  dns.addRecord("split.example.org. TXT \"v=spf1 \" \"ip4:192.0.2.1 -all\"");
  dns.addRecord("expl.example.org. TXT \"v=spf1 -all exp=why.example.org\"");
  dns.addRecord("why.example.org. TXT \"%{i} is not one of the servers of %{d}\"");
  dns.addRecord("slow.example.org. TXT \"v=spf1 include:hang.example.org -all\"");
  dns.timeoutName("hang.example.org");
  dns.addRecord("9.113.0.203.in-addr.arpa. PTR mail.example.org.");
  dns.addRecord("10.113.0.203.in-addr.arpa. PTR liar.example.org.");
  dns.addRecord("liar.example.org. A 203.0.113.99");
  dns.addRecord(
      "5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR "
      "mail.example.org.");
  dns.timeoutName("11.113.0.203.in-addr.arpa");
}

/// A UDP socket bound on 127.0.0.1 that nobody ever reads: a dead DNS server.
struct SilentServer {
  int fd = -1;
  std::uint16_t port = 0;
  SilentServer() {
    fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
  }
  ~SilentServer() { ::close(fd); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

}  // namespace

TEST_CASE("rdata parsers and reverse names", "[dns]") {
  CHECK(policies::reverseName(ip("192.0.2.1")) == "1.2.0.192.in-addr.arpa");
  CHECK(policies::reverseName(ip("2001:db8::1")) ==
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
  CHECK(policies::parseTxtRdata(std::string("\3abc\2de", 7)) == "abcde");
  CHECK_FALSE(policies::parseTxtRdata(std::string("\5ab", 3)));
  CHECK(policies::parseNameRdata(std::string("\4mail\7example\3org\0", 18)) == "mail.example.org");
  CHECK_FALSE(policies::parseNameRdata(std::string("\300\14", 2)));  // compression pointer
  CHECK(policies::parseAddressRdata(std::string("\xc0\x00\x02\x01", 4)) == ip("192.0.2.1"));
}

TEST_CASE("resolver: answer, nxdomain, nodata, and a name that never answers", "[dns]") {
  SKIP_WITHOUT_UNBOUND();
  UnboundServer dns;
  fillZone(dns);
  dns.start();
  auto resolver = resolverFor(dns.address(), 1500ms);

  auto a = resolver->query("mail.example.org", DnsType::A);
  REQUIRE(a.status == DnsStatus::Answer);
  REQUIRE(a.rdata.size() == 1);
  CHECK(policies::parseAddressRdata(a.rdata[0]) == ip("203.0.113.9"));

  auto txt = resolver->query("split.example.org", DnsType::Txt);
  REQUIRE(txt.status == DnsStatus::Answer);
  CHECK(policies::parseTxtRdata(txt.rdata.at(0)) == "v=spf1 ip4:192.0.2.1 -all");

  CHECK(resolver->query("nowhere.example.org", DnsType::A).status == DnsStatus::NxDomain);
  CHECK(resolver->query("example.org", DnsType::A).status == DnsStatus::NoData);
  CHECK(resolver->query("a..b", DnsType::A).status == DnsStatus::NxDomain);

  auto started = std::chrono::steady_clock::now();
  auto hung = resolver->query("hang.example.org", DnsType::Txt);
  auto took = std::chrono::steady_clock::now() - started;
  CHECK(hung.status == DnsStatus::TempFail);
  CHECK_THAT(hung.error, Catch::Contains("timed out"));
  CHECK(took >= 1400ms);
  CHECK(took < 3s);

  // The caller's deadline wins when it is earlier than the timeout.
  started = std::chrono::steady_clock::now();
  hung = resolver->query("hang.example.org", DnsType::A, std::chrono::steady_clock::now() + 200ms);
  CHECK(hung.status == DnsStatus::TempFail);
  CHECK(std::chrono::steady_clock::now() - started < 1s);
}

TEST_CASE("resolver: many threads share one resolver", "[dns]") {
  SKIP_WITHOUT_UNBOUND();
  UnboundServer dns;
  fillZone(dns);
  dns.start();
  auto resolver = resolverFor(dns.address());
  std::atomic<int> answers{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        if (resolver->query("mail.example.org", DnsType::Aaaa).ok()) {
          ++answers;
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  CHECK(answers == 400);
}

TEST_CASE("resolver: async callbacks each run once", "[dns]") {
  SKIP_WITHOUT_UNBOUND();
  UnboundServer dns;
  fillZone(dns);
  dns.start();
  auto resolver = resolverFor(dns.address(), 500ms);
  std::mutex m;
  std::vector<DnsStatus> got;
  auto record = [&](policies::DnsAnswer a) {
    std::lock_guard lock(m);
    got.push_back(a.status);
  };
  const auto far = std::chrono::steady_clock::now() + 10s;
  resolver->queryAsync("mail.example.org", DnsType::A, far, record);
  resolver->queryAsync("hang.example.org", DnsType::A, far, record);
  resolver->queryAsync("nope.example.org", DnsType::A, far, record);
  REQUIRE(testing::waitFor(
      [&] {
        std::lock_guard lock(m);
        return got.size() == 3;
      },
      testing::deadlineIn(5s)));
  std::lock_guard lock(m);
  CHECK(std::count(got.begin(), got.end(), DnsStatus::Answer) == 1);
  CHECK(std::count(got.begin(), got.end(), DnsStatus::TempFail) == 1);
  CHECK(std::count(got.begin(), got.end(), DnsStatus::NxDomain) == 1);
}

TEST_CASE("reverse DNS: ptr and forward confirmation", "[dns]") {
  SKIP_WITHOUT_UNBOUND();
  UnboundServer dns;
  fillZone(dns);
  dns.start();
  auto resolver = resolverFor(dns.address(), 1s);
  auto deadline = [] { return std::chrono::steady_clock::now() + 5s; };

  auto good = policies::lookupReverseDns(*resolver, ip("203.0.113.9"), deadline());
  CHECK(good.ptrKnown);
  CHECK(good.ptr == "mail.example.org");
  CHECK(good.fcrdns == true);

  auto liar = policies::lookupReverseDns(*resolver, ip("203.0.113.10"), deadline());
  CHECK(liar.ptr == "liar.example.org");
  CHECK(liar.fcrdns == false);

  auto none = policies::lookupReverseDns(*resolver, ip("203.0.113.12"), deadline());
  CHECK(none.ptrKnown);
  CHECK(none.ptr.empty());
  CHECK(none.fcrdns == false);

  auto v6 = policies::lookupReverseDns(*resolver, ip("2001:db8::25"), deadline());
  CHECK(v6.ptr == "mail.example.org");
  CHECK(v6.fcrdns == true);

  auto failed = policies::lookupReverseDns(*resolver, ip("203.0.113.11"), deadline());
  CHECK_FALSE(failed.ptrKnown);
  CHECK_FALSE(failed.fcrdns.has_value());
  CHECK_THAT(failed.error, Catch::Contains("timed out"));
}

TEST_CASE("SPF through our resolver", "[dns][spf]") {
  SKIP_WITHOUT_UNBOUND();
  UnboundServer dns;
  fillZone(dns);
  dns.start();
  auto resolver = resolverFor(dns.address(), 1s);
  auto spf = [&](const char* client, const char* sender, const char* helo = "helo.example.net") {
    return policies::checkSpf(*resolver, {ip(client), helo, sender, "mx.example.com"});
  };

  auto pass = spf("198.51.100.7", "alice@example.org");
  CHECK(pass.status == SpfStatus::Pass);
  CHECK(pass.identity == "mailfrom");
  CHECK(pass.domain == "example.org");
  CHECK_THAT(pass.receivedSpf, Catch::StartsWith("Received-SPF: pass"));
  CHECK_THAT(pass.receivedSpf, Catch::Contains("mx.example.com"));

  CHECK(spf("203.0.113.9", "alice@example.org").status == SpfStatus::Pass);   // a:mail...
  CHECK(spf("2001:db8::25", "alice@example.org").status == SpfStatus::Pass);  // a: asks AAAA
  auto fail = spf("192.0.2.66", "alice@example.org");
  CHECK(fail.status == SpfStatus::Fail);
  CHECK_THAT(fail.receivedSpf, Catch::StartsWith("Received-SPF: fail"));
  CHECK(spf("192.0.2.66", "bob@soft.example.org").status == SpfStatus::SoftFail);
  CHECK(spf("192.0.2.1", "x@split.example.org").status == SpfStatus::Pass);
  CHECK(spf("192.0.2.66", "x@nowhere.example.org").status == SpfStatus::None);

  auto explained = spf("192.0.2.66", "x@expl.example.org");
  CHECK(explained.status == SpfStatus::Fail);
  CHECK(explained.explanation == "192.0.2.66 is not one of the servers of expl.example.org");

  // Null sender: the HELO identity is checked.
  auto helo = spf("198.51.100.7", "", "example.org");
  CHECK(helo.status == SpfStatus::Pass);
  CHECK(helo.identity == "helo");
}

TEST_CASE("SPF: a name that never answers is temperror within the timeout", "[dns][spf]") {
  SKIP_WITHOUT_UNBOUND();
  UnboundServer dns;
  fillZone(dns);
  dns.start();
  auto resolver = resolverFor(dns.address(), 1s);
  auto started = std::chrono::steady_clock::now();
  auto r = policies::checkSpf(*resolver,
                              {ip("192.0.2.66"), "h.example.net", "x@slow.example.org", "mx"});
  CHECK(r.status == SpfStatus::TempError);
  CHECK_THAT(r.dnsError, Catch::Contains("timed out"));
  CHECK(std::chrono::steady_clock::now() - started < 3s);
}

TEST_CASE("SPF: a dead DNS server is temperror within the timeout, nothing hangs", "[dns][spf]") {
  SilentServer silent;
  auto resolver = resolverFor(silent.address(), 1s);
  auto started = std::chrono::steady_clock::now();
  auto r =
      policies::checkSpf(*resolver, {ip("192.0.2.66"), "h.example.net", "x@example.org", "mx"});
  auto took = std::chrono::steady_clock::now() - started;
  CHECK(r.status == SpfStatus::TempError);
  CHECK(took >= 900ms);
  CHECK(took < 3s);

  // The overall deadline bounds a check whatever the per-query timeout.
  auto slowResolver = resolverFor(silent.address(), 10s);
  started = std::chrono::steady_clock::now();
  r = policies::checkSpf(*slowResolver, {ip("192.0.2.66"), "h", "x@example.org", "mx"},
                         policies::SpfOptions{500ms});
  CHECK(r.status == SpfStatus::TempError);
  CHECK(std::chrono::steady_clock::now() - started < 2s);
}

TEST_CASE("resolver: bad server addresses are refused at creation", "[dns]") {
  std::string error;
  CHECK_FALSE(DnsResolver::create({{"dns.example.org:53"}, 1s}, error));
  CHECK_THAT(error, Catch::Contains("dns.example.org"));
  CHECK(DnsResolver::create({{"[::1]:5353", "127.0.0.1"}, 1s}, error));
}
