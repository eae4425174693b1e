// checkSpf end to end against a real unbound on loopback: the Received-SPF
// line (RFC 7208 9.1) and comment, identities, and hostile records and
// identities (deep include chains, macro bombs, control bytes, CR/LF in the
// sender) that must end in a result within the limits, never a crash.
#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include "policies/dns_resolver.h"
#include "policies/spf.h"
#include "tests/policies/test_resolver.h"
#include "tests/support/unbound_server.h"

using namespace smtpgate;
using namespace std::chrono_literals;
using policies::SpfStatus;
using testing::resolverFor;
using testing::UnboundServer;

namespace {

rules::IpAddress ip(const char* text) {
  return *rules::IpAddress::parse(text);
}

/// A TXT record for zone-file syntax: `text` in character-strings of at most 255 bytes.
void addTxt(UnboundServer& dns, const std::string& name, const std::string& text) {
  std::string rdata;
  for (std::size_t i = 0; i == 0 || i < text.size(); i += 255) {
    rdata += " " + UnboundServer::quoteCharacterString(text.substr(i, 255));
  }
  dns.addRecord(name + ". TXT" + rdata);
}

void fillZone(UnboundServer& dns) {
  addTxt(dns, "example.org", "v=spf1 ip4:198.51.100.0/24 ip6:2001:db8::/32 -all");
  addTxt(dns, "neutral.example.org", "v=spf1 ?ip4:192.0.2.0/24");
  addTxt(dns, "broken.example.org", "v=spf1 ip4:192.0.2.0/24 moo -all");
  addTxt(dns, "two.example.org", "v=spf1 -all");
  addTxt(dns, "two.example.org", "v=spf1 +all");
  addTxt(dns, "ctrl.example.org", "v=spf1 a:ctrl.example.org\rptr -all");
  // A chain of 20 includes: the 11th DNS term is a permerror.
  for (int i = 0; i < 20; ++i) {
    addTxt(dns, "c" + std::to_string(i) + ".example.org",
           "v=spf1 include:c" + std::to_string(i + 1) + ".example.org -all");
  }
  // Each %{s} is the whole sender: with a long one, past 64 KiB.
  std::string bomb = "v=spf1 exists:";
  for (int i = 0; i < 60; ++i) {
    bomb += "%{s}";
  }
  addTxt(dns, "bomb.example.org", bomb + ".example.org -all");
  // A record longer than a UDP answer: a thousand terms, the match at the end.
  std::string big = "v=spf1";
  for (int i = 0; i < 150; ++i) {
    big += " ip4:203.0.113." + std::to_string(i);
  }
  addTxt(dns, "big.example.org", big + " ip4:192.0.2.77 -all");
  addTxt(dns, "expl.example.org", "v=spf1 -all exp=why.example.org");
  addTxt(dns, "why.example.org", "%{l} may not send from %{i}");
  addTxt(dns, "ptr.example.org", "v=spf1 ptr -all exp=ptrwhy.example.org");
  addTxt(dns, "ptrwhy.example.org", "%{p} is not allowed");
  dns.addRecord("9.113.0.203.in-addr.arpa. PTR mail.ptr.example.org.");
  dns.addRecord("mail.ptr.example.org. A 203.0.113.9");
  dns.addRecord("10.113.0.203.in-addr.arpa. PTR liar.ptr.example.org.");
  dns.addRecord("liar.ptr.example.org. A 203.0.113.99");
  addTxt(dns, "helo.example.net", "v=spf1 a -all");
  dns.addRecord("helo.example.net. A 192.0.2.25");
}

struct Fixture {
  UnboundServer dns;
  std::shared_ptr<policies::DnsResolver> resolver;

  Fixture() {
    fillZone(dns);
    dns.start();
    resolver = resolverFor(dns.address(), 2s);
  }

  policies::SpfResult check(const char* client, const std::string& sender,
                            const std::string& helo = "helo.example.net",
                            const std::string& receiver = "mx.example.com") {
    return policies::checkSpf(*resolver, {ip(client), helo, sender, receiver});
  }
};

}  // namespace

TEST_CASE("spf check: comment and Received-SPF header", "[dns][spf]") {
  SKIP_WITHOUT_UNBOUND();
  Fixture f;

  auto pass = f.check("198.51.100.7", "alice@example.org");
  CHECK(pass.status == SpfStatus::Pass);
  CHECK(pass.comment == "matched ip4:198.51.100.0/24 in example.org");
  CHECK(pass.receivedSpf ==
        "Received-SPF: pass (mx.example.com: domain of alice@example.org designates "
        "198.51.100.7 as permitted sender) client-ip=198.51.100.7; "
        "envelope-from=\"alice@example.org\"; helo=helo.example.net; receiver=mx.example.com; "
        "identity=mailfrom; mechanism=\"ip4:198.51.100.0/24\"");
  CHECK(pass.dnsLookups == 1);

  auto v6 = f.check("2001:db8::25", "alice@example.org");
  CHECK(v6.status == SpfStatus::Pass);
  CHECK_THAT(v6.receivedSpf, Catch::Contains("client-ip=\"2001:db8::25\";"));

  auto fail = f.check("192.0.2.66", "alice@example.org");
  CHECK(fail.status == SpfStatus::Fail);
  CHECK_THAT(fail.receivedSpf, Catch::StartsWith("Received-SPF: fail (mx.example.com: domain of "
                                                 "alice@example.org does not designate"));
  CHECK_THAT(fail.receivedSpf, Catch::EndsWith("mechanism=-all"));

  auto neutral = f.check("198.51.100.7", "bob@neutral.example.org");
  CHECK(neutral.status == SpfStatus::Neutral);
  CHECK(neutral.comment == "no mechanism matched in neutral.example.org");
  CHECK_THAT(neutral.receivedSpf, Catch::EndsWith("mechanism=default"));

  auto broken = f.check("192.0.2.1", "x@broken.example.org");
  CHECK(broken.status == SpfStatus::PermError);
  CHECK(broken.comment == "broken.example.org: unknown mechanism 'moo'");
  CHECK_THAT(broken.receivedSpf,
             Catch::EndsWith("problem=\"broken.example.org: unknown mechanism 'moo'\""));

  auto two = f.check("192.0.2.1", "x@two.example.org");
  CHECK(two.status == SpfStatus::PermError);
  CHECK_THAT(two.comment, Catch::Contains("2 SPF records"));

  auto none = f.check("192.0.2.1", "x@nowhere.example.org");
  CHECK(none.status == SpfStatus::None);
  CHECK(none.comment == "no SPF record at nowhere.example.org");
}

TEST_CASE("spf check: identities", "[dns][spf]") {
  SKIP_WITHOUT_UNBOUND();
  Fixture f;
  // Null sender: postmaster@HELO (RFC 7208 2.4).
  auto helo = f.check("192.0.2.25", "");
  CHECK(helo.status == SpfStatus::Pass);
  CHECK(helo.identity == "helo");
  CHECK(helo.domain == "helo.example.net");
  CHECK_THAT(helo.receivedSpf, Catch::Contains("domain of helo.example.net designates"));
  CHECK(helo.receivedSpf.find("envelope-from") == std::string::npos);

  auto postmaster = f.check("192.0.2.66", "@expl.example.org");
  CHECK(postmaster.status == SpfStatus::Fail);
  CHECK(postmaster.explanation == "postmaster may not send from 192.0.2.66");
  CHECK(f.check("192.0.2.66", "x@expl.example.org.").domain == "expl.example.org");

  // 4.3: what cannot be a domain has no policy, and nothing is looked up.
  for (const char* sender : {"x@localhost", "x@[192.0.2.1]", "x@a..example.org", "x@",
                             "x@192.0.2.1", "x@ex ample.org"}) {
    auto r = f.check("192.0.2.1", sender);
    INFO(sender << ": " << r.comment);
    CHECK(r.status == SpfStatus::None);
    CHECK(r.dnsLookups == 0);
  }
  auto nothing = f.check("192.0.2.1", "", "");
  CHECK(nothing.status == SpfStatus::None);
  CHECK_THAT(nothing.comment, Catch::Contains("no identity"));
}

TEST_CASE("spf check: ptr and %{p} use validated names only", "[dns][spf]") {
  SKIP_WITHOUT_UNBOUND();
  Fixture f;
  CHECK(f.check("203.0.113.9", "x@ptr.example.org").status == SpfStatus::Pass);
  auto liar = f.check("203.0.113.10", "x@ptr.example.org");
  CHECK(liar.status == SpfStatus::Fail);
  CHECK(liar.explanation == "unknown is not allowed");
}

TEST_CASE("spf check: hostile records and identities end in a bounded result", "[dns][spf]") {
  SKIP_WITHOUT_UNBOUND();
  Fixture f;

  auto chain = f.check("192.0.2.1", "x@c0.example.org");
  CHECK(chain.status == SpfStatus::PermError);
  CHECK_THAT(chain.comment, Catch::Contains("more than 10 DNS-querying terms"));
  CHECK(chain.dnsLookups == 11);  // the TXT of c0 .. c10

  auto bomb = f.check("192.0.2.1", std::string(1200, 'b') + "@bomb.example.org");
  CHECK(bomb.status == SpfStatus::PermError);
  CHECK_THAT(bomb.comment, Catch::Contains("macro expansion longer than"));
  CHECK(bomb.comment.size() < 300);

  auto ctrl = f.check("192.0.2.1", "x@ctrl.example.org");
  CHECK(ctrl.status == SpfStatus::PermError);
  CHECK_THAT(ctrl.comment, Catch::Contains("invalid character \\x0D"));

  auto big = f.check("192.0.2.77", "x@big.example.org");
  INFO(big.comment << " " << big.dnsError);
  CHECK(big.status == SpfStatus::Pass);

  // A sender with CR, LF and quotes (a milter passes what Postfix took):
  // nothing of it breaks the header line or the explanation.
  auto evil = f.check("192.0.2.66", "\"a\r\nX-Evil: 1\\\"\"@expl.example.org", "bad\r\nhelo",
                      "mx\r\n.example.com");
  CHECK(evil.status == SpfStatus::Fail);
  for (const std::string* text : {&evil.receivedSpf, &evil.explanation, &evil.comment}) {
    INFO(*text);
    CHECK(text->find('\r') == std::string::npos);
    CHECK(text->find('\n') == std::string::npos);
  }
  CHECK_THAT(evil.receivedSpf,
             Catch::Contains("envelope-from=\"\\\"a??X-Evil: 1\\\\\\\"\\\"@expl.example.org\""));
  CHECK_THAT(evil.receivedSpf, Catch::Contains("helo=\"bad??helo\""));
  CHECK(evil.explanation == "\"a??X-Evil: 1\\\"\" may not send from 192.0.2.66");
}
