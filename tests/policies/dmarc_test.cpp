// DMARC (policies/dmarc.h), the public suffix list, Authentication-Results
// (policies/authentication_results.h), and the dkim/dmarc facts through a
// Policy, against a real unbound serving keys and records.
#include "policies/dmarc.h"

#include <catch2/catch.hpp>
#include <chrono>

#include "policies/authentication_results.h"
#include "policies/policy.h"
#include "tests/policies/dkim_signer.h"
#include "tests/policies/test_resolver.h"
#include "tests/policies/test_rules.h"
#include "tests/support/unbound_server.h"

using namespace smtpgate;
using namespace std::chrono_literals;
using policies::DmarcPolicy;
using policies::DmarcStatus;
using policies::PublicSuffixList;
using testing::DkimKey;
using testing::dkimSign;
using testing::resolverFor;
using testing::txtRecord;
using testing::UnboundServer;

namespace {

const PublicSuffixList& testList() {
  static const PublicSuffixList list =
      PublicSuffixList::parse("// comment\ncom\norg\nuk\nco.uk\n*.ck\n!www.ck\nblogspot.com\n");
  return list;
}

const DkimKey& key() {
  static const DkimKey k = DkimKey::rsa(1024);
  return k;
}

void fillZone(UnboundServer& dns) {
  dns.addRecord(txtRecord("sel._domainkey.example.com", key().record()));
  dns.addRecord(txtRecord("sel._domainkey.mail.example.com", key().record()));
  dns.addRecord(txtRecord("sel._domainkey.elsewhere.org", key().record()));
  dns.addRecord("_dmarc.example.com. TXT \"v=DMARC1; p=reject; sp=quarantine; adkim=r\"");
  dns.addRecord("_dmarc.strict.example.org. TXT \"v=DMARC1; p=quarantine; adkim=s; aspf=s\"");
  dns.addRecord("sel._domainkey.strict.example.org. TXT \"" + key().record() + "\"");
  dns.addRecord("sel._domainkey.mail.strict.example.org. TXT \"" + key().record() + "\"");
  dns.addRecord("_dmarc.twice.example. TXT \"v=DMARC1; p=reject\"");
  dns.addRecord("_dmarc.twice.example. TXT \"v=DMARC1; p=none\"");
  dns.addRecord("_dmarc.nop.example. TXT \"v=DMARC1; adkim=s\"");
  dns.addRecord("_dmarc.spf.example. TXT \"v=DMARC1; p=reject\"");
  dns.addRecord("spf.example. TXT \"v=spf1 ip4:192.0.2.1 -all\"");
  dns.addRecord("example.com. TXT \"v=spf1 -all\"");
  dns.timeoutName("_dmarc.slow.example");
}

std::string message(const std::string& from) {
  return "From: " + from +
         "\r\nTo: bob@example.net\r\nSubject: hello\r\nMessage-ID: <1@x>\r\n\r\nhi there\r\n";
}

}  // namespace

TEST_CASE("public suffix list: organizational domains", "[dmarc]") {
  const auto& l = testList();
  CHECK(l.organizationalDomain("mail.example.com") == "example.com");
  CHECK(l.organizationalDomain("Example.COM.") == "example.com");
  CHECK(l.organizationalDomain("a.b.example.co.uk") == "example.co.uk");
  CHECK(l.organizationalDomain("co.uk") == "co.uk");
  CHECK(l.organizationalDomain("x.y.foo.ck") == "y.foo.ck");  // *.ck: foo.ck is a suffix
  CHECK(l.organizationalDomain("a.www.ck") == "www.ck");      // !www.ck
  CHECK(l.organizationalDomain("me.blogspot.com") == "me.blogspot.com");
  CHECK(l.organizationalDomain("a.b.unlisted") == "b.unlisted");  // default rule "*"

  const auto& system = PublicSuffixList::system();
  if (system.size() == 0) {
    WARN("skipped: " << PublicSuffixList::kSystemPath << " is missing (package publicsuffix)");
    return;
  }
  CHECK(system.organizationalDomain("mail.example.co.uk") == "example.co.uk");
  CHECK(system.organizationalDomain("a.b.example.com") == "example.com");
}

TEST_CASE("author domain: exactly one From address", "[dmarc]") {
  std::string error;
  CHECK(policies::authorDomain({"\"Doe, John\" <john@Example.COM>"}, error) == "example.com");
  CHECK(policies::authorDomain({"john@example.org (John, at home)"}, error) == "example.org");
  CHECK(policies::authorDomain({"a@x.org", "b@y.org"}, error).empty());
  CHECK(error == "more than one From header field");
  CHECK(policies::authorDomain({"a@x.org, b@y.org"}, error).empty());
  CHECK(error == "more than one From address");
  CHECK(policies::authorDomain({}, error).empty());
  CHECK(policies::authorDomain({"undisclosed"}, error).empty());
}

TEST_CASE("Authentication-Results: forged headers that claim our authserv-id", "[auth]") {
  using policies::claimsAuthservId;
  CHECK(claimsAuthservId("mx.example.com; dkim=pass header.d=paypal.com", "mx.example.com"));
  CHECK(claimsAuthservId("MX.Example.COM; spf=pass", "mx.example.com"));
  CHECK(claimsAuthservId("mx.example.com.; spf=pass", "mx.example.com"));
  CHECK(claimsAuthservId("mx.example.com; spf=pass", "mx.example.com."));
  CHECK(
      claimsAuthservId("  (forged (nested) comment)\r\n\tmx.example.com ; none", "mx.example.com"));
  CHECK(claimsAuthservId("mx.example.com 1; none", "mx.example.com"));  // with a version
  CHECK(claimsAuthservId("\"mx.example.com\"; none", "mx.example.com"));
  CHECK(claimsAuthservId("mx.example.com(comment); none", "mx.example.com"));
  CHECK_FALSE(claimsAuthservId("mx.example.com.evil.org; spf=pass", "mx.example.com"));
  CHECK_FALSE(claimsAuthservId("other.example.com; spf=pass", "mx.example.com"));
  CHECK_FALSE(claimsAuthservId("x; comment mx.example.com", "mx.example.com"));
  CHECK_FALSE(claimsAuthservId("", "mx.example.com"));
  CHECK_FALSE(claimsAuthservId("mx.example.com; none", ""));
}

TEST_CASE("Authentication-Results: forged fields are cut from the header block only", "[auth]") {
  const std::string msg =
      "Received: from a\r\n"
      "Authentication-Results: mx.example.com;\r\n"
      "\tdkim=pass header.d=paypal.com\r\n"
      "authentication-results : other.example; spf=pass\r\n"
      "Subject: hi\r\n"
      "Authentication-Results: (x) MX.EXAMPLE.COM. ; none\r\n"
      "\r\n"
      "Authentication-Results: mx.example.com; in the body, kept\r\n";
  const auto r = policies::withoutForgedAuthenticationResults(msg, "mx.example.com");
  CHECK(r.removed == 2);
  CHECK(r.headers ==
        "Received: from a\r\n"
        "authentication-results : other.example; spf=pass\r\n"
        "Subject: hi\r\n");
  CHECK(msg.substr(r.headerLength) ==
        "\r\nAuthentication-Results: mx.example.com; in the body, kept\r\n");
  const auto clean = policies::withoutForgedAuthenticationResults("Subject: x\r\n\r\nbody", "mx");
  CHECK(clean.removed == 0);
  CHECK(clean.headerLength == 12);
}

TEST_CASE("[headers] spam_score: X-Spam-Score and X-Spam-Rules, incoming ones removed", "[auth]") {
  policies::PolicyOptions options;
  options.authservId = "mx.example.com";
  auto rules = testing::loadRules(
      "rule big on mail when sender ~ /@example\\.org$/ then score 2.5\n"
      "rule pills on data when header.subject ~ /v1agra/ then score 1\n");
  const std::string msg =
      "X-Spam-Score: -100\r\n"
      "Subject: cheap v1agra\r\n"
      "x-spam-rules : none\r\n"
      "Authentication-Results: mx.example.com; dkim=pass\r\n"
      "\r\n"
      "X-Spam-Score: in the body, kept\r\n";
  for (bool on : {true, false}) {
    INFO("spam_score = " << on);
    options.spamHeaders = on;
    policies::Policy p(rules, "S1", options);
    p.onConnect({*rules::IpAddress::parse("192.0.2.1"), 40000, 25});
    p.onHelo("client.example.net");
    p.onMail("a@example.org");
    p.onRcpt("bob@example.net");
    p.onEndOfData(msg);
    std::vector<std::string> added;
    for (const auto& field : p.headersToAdd()) {
      added.push_back(field.line());
    }
    auto cleaned =
        policies::withoutHeaderFields(msg, [&p](std::string_view name, std::string_view value) {
          return p.removesIncoming(name, value);
        });
    if (on) {
      CHECK(added == std::vector<std::string>{"Authentication-Results: mx.example.com; none\r\n",
                                              "X-Spam-Score: 3.5\r\n",
                                              "X-Spam-Rules: big, pills\r\n"});
      CHECK(cleaned.removed == 3);
      CHECK(cleaned.headers == "Subject: cheap v1agra\r\n");
    } else {
      CHECK(added.size() == 1);
      CHECK(cleaned.removed == 1);  // only the forged Authentication-Results
      CHECK(cleaned.headers ==
            "X-Spam-Score: -100\r\nSubject: cheap v1agra\r\nx-spam-rules : none\r\n");
    }
    CHECK(msg.substr(cleaned.headerLength) == "\r\nX-Spam-Score: in the body, kept\r\n");
  }
}

TEST_CASE("Authentication-Results: the value lists what was checked", "[auth]") {
  policies::AuthResults none;
  CHECK(policies::authenticationResultsValue("mx.example.com", none) == "mx.example.com; none");

  policies::SpfResult spf;
  spf.status = policies::SpfStatus::Pass;
  spf.identity = "mailfrom";
  spf.domain = "example.org";
  policies::DkimResult dkim;
  dkim.status = policies::DkimStatus::Pass;
  policies::DkimSignature sig;
  sig.status = policies::DkimStatus::Pass;
  sig.domain = "example.org";
  sig.selector = "sel";
  sig.algorithm = "rsa-sha256";
  sig.keyBits = 2048;
  sig.headerB = "AbCdEfGh/+12";
  dkim.signatures.push_back(sig);
  sig.status = policies::DkimStatus::Fail;
  sig.reason = "body hash (did) not verify";
  dkim.signatures.push_back(sig);
  policies::DmarcResult dmarc;
  dmarc.status = DmarcStatus::Pass;
  dmarc.policy = DmarcPolicy::Reject;
  dmarc.record = "v=DMARC1; p=reject";
  dmarc.fromDomain = "example.org";
  policies::AuthResults all{&spf, "alice@example.org", "mx.example.org", &dkim, &dmarc};
  CHECK(policies::authenticationResultsValue("mx.example.com", all) ==
        "mx.example.com; spf=pass smtp.mailfrom=alice@example.org; "
        "dkim=pass (2048-bit key) header.d=example.org header.s=sel header.a=rsa-sha256 "
        "header.b=\"AbCdEfGh/+12\"; "  // '/' is not a token character: quoted
        "dkim=fail (2048-bit key; body hash  did  not verify) header.d=example.org "
        "header.s=sel header.a=rsa-sha256 header.b=\"AbCdEfGh/+12\"; "
        "dmarc=pass (p=reject) header.from=example.org");
}

TEST_CASE("dmarc: alignment, policies and missing records", "[dmarc]") {
  SKIP_WITHOUT_UNBOUND();
  UnboundServer dns;
  fillZone(dns);
  dns.start();
  auto resolver = resolverFor(dns.address(), 1s);
  auto check = [&](const std::string& from, const policies::DkimResult* dkim,
                   const policies::SpfResult* spf = nullptr) {
    policies::DmarcRequest request{{from}, dkim, spf};
    return policies::checkDmarc(*resolver, request, std::chrono::steady_clock::now() + 5s);
  };
  auto dkimFor = [&](const std::string& from, const std::string& d) {
    return policies::verifyDkim(*resolver, dkimSign(message(from), key(), d, "sel"));
  };

  SECTION("aligned DKIM pass (relaxed: a subdomain signs) and p=reject read") {
    const auto dkim = dkimFor("a@example.com", "mail.example.com");
    REQUIRE(dkim.status == policies::DkimStatus::Pass);
    const auto r = check("a@example.com", &dkim);
    CHECK(r.status == DmarcStatus::Pass);
    CHECK(r.policy == DmarcPolicy::Reject);
    CHECK(r.dkimAlignedDomain == "mail.example.com");
  }
  SECTION("unaligned: DKIM passes for another domain -> fail") {
    const auto dkim = dkimFor("a@example.com", "elsewhere.org");
    REQUIRE(dkim.status == policies::DkimStatus::Pass);
    const auto r = check("a@example.com", &dkim);
    CHECK(r.status == DmarcStatus::Fail);
    CHECK(r.policy == DmarcPolicy::Reject);
  }
  SECTION("a subdomain without a record gets the organizational sp=") {
    const auto dkim = dkimFor("a@news.example.com", "elsewhere.org");
    const auto r = check("a@news.example.com", &dkim);
    CHECK(r.status == DmarcStatus::Fail);
    CHECK(r.recordDomain == "example.com");
    CHECK(r.policy == DmarcPolicy::Quarantine);
  }
  SECTION("strict alignment: a subdomain's signature does not align") {
    auto dkim = dkimFor("a@strict.example.org", "mail.strict.example.org");
    REQUIRE(dkim.status == policies::DkimStatus::Pass);
    CHECK(check("a@strict.example.org", &dkim).status == DmarcStatus::Fail);
    dkim = dkimFor("a@strict.example.org", "strict.example.org");
    const auto r = check("a@strict.example.org", &dkim);
    CHECK(r.status == DmarcStatus::Pass);
    CHECK(r.policy == DmarcPolicy::Quarantine);
  }
  SECTION("aligned SPF pass alone is enough") {
    policies::SpfResult spf;
    spf.status = policies::SpfStatus::Pass;
    spf.identity = "mailfrom";
    spf.domain = "spf.example";
    const auto r = check("a@spf.example", nullptr, &spf);
    CHECK(r.status == DmarcStatus::Pass);
    CHECK(r.spfAligned);
    spf.status = policies::SpfStatus::TempError;
    CHECK(check("a@spf.example", nullptr, &spf).status == DmarcStatus::TempError);
  }
  SECTION("no record: none; two records: none; no valid p=: none") {
    CHECK(check("a@norecord.example", nullptr).status == DmarcStatus::None);
    CHECK(check("a@twice.example", nullptr).status == DmarcStatus::None);
    CHECK(check("a@nop.example", nullptr).status == DmarcStatus::None);
  }
  SECTION("record lookup not answering: temperror within the timeout") {
    const auto started = std::chrono::steady_clock::now();
    const auto r = check("a@slow.example", nullptr);
    CHECK(r.status == DmarcStatus::TempError);
    CHECK(std::chrono::steady_clock::now() - started < 3s);
  }
  SECTION("two From fields: permerror") {
    policies::DmarcRequest request{{"a@example.com", "b@example.com"}, nullptr, nullptr};
    CHECK(policies::checkDmarc(*resolver, request, std::chrono::steady_clock::now() + 5s).status ==
          DmarcStatus::PermError);
  }
}

TEST_CASE("policy: dkim and dmarc facts, Authentication-Results, DNS failure", "[dmarc][policy]") {
  SKIP_WITHOUT_UNBOUND();
  UnboundServer dns;
  fillZone(dns);
  dns.timeoutName("hang._domainkey.example.com");
  dns.start();
  policies::PolicyOptions options;
  options.resolver = resolverFor(dns.address(), 1s);
  options.hostname = "mx.test.example";
  const auto rules = testing::loadRules(
      "rule dmarc-reject on data when dmarc == fail and dmarc.policy == reject "
      "then reject \"550 5.7.1 DMARC policy of the From domain\"\n"
      "rule signed on data when dkim == pass and dkim.domain == example.com then score 1\n");
  auto run = [&](policies::Policy& p, const std::string& msg) {
    p.onConnect({*rules::IpAddress::parse("192.0.2.1"), 40000, 25});
    p.onHelo("client.example.net");
    p.onMail("a@example.com");
    p.onRcpt("bob@example.net");
    return p.onEndOfData(msg);
  };

  SECTION("a signed, aligned message passes and gets an honest header") {
    policies::Policy p(rules, "A1", options);
    CHECK(p.needsMessage());
    const auto v = run(p, dkimSign(message("a@example.com"), key(), "example.com", "sel"));
    CHECK(v.action == policies::Action::Continue);
    CHECK(v.score == 1);
    REQUIRE(p.dkimResult() != nullptr);
    REQUIRE(p.dmarcResult() != nullptr);
    CHECK(p.dmarcResult()->status == DmarcStatus::Pass);
    const std::string ar = p.authenticationResults();
    CHECK_THAT(ar, Catch::StartsWith("mx.test.example; spf=fail"));
    CHECK_THAT(ar, Catch::Contains("dkim=pass (1024-bit key) header.d=example.com header.s=sel"));
    CHECK_THAT(ar, Catch::Contains("dmarc=pass (p=reject) header.from=example.com"));
    CHECK(p.isForgedAuthenticationResults("MX.TEST.EXAMPLE.; dkim=pass"));
    CHECK_FALSE(p.isForgedAuthenticationResults("mx.other.example; dkim=pass"));
    CHECK(p.record(v).dmarc == "pass");
  }
  SECTION("an unsigned message from a p=reject domain is rejected by the rule") {
    policies::Policy p(rules, "A2", options);
    const auto v = run(p, message("a@example.com"));
    CHECK(v.action == policies::Action::Reject);
    CHECK(v.ruleId == "dmarc-reject");
    CHECK(p.dkimResult()->status == policies::DkimStatus::None);
  }
  SECTION("a key lookup that times out makes the stage tempfail ([failure] dns)") {
    policies::Policy p(rules, "A3", options);
    const auto v = run(p, dkimSign(message("a@example.com"), key(), "example.com", "hang"));
    CHECK(v.action == policies::Action::Tempfail);
    CHECK(v.ruleId == "dns-failure");
    CHECK(p.dkimResult()->status == policies::DkimStatus::TempError);
    CHECK(p.dmarcResult()->status == DmarcStatus::TempError);
  }
  SECTION("no rule reads dkim: no verification, and the header says so") {
    policies::Policy p(testing::loadRules("rule s on data when size > 1000000 then reject\n"), "A4",
                       options);
    run(p, dkimSign(message("a@example.com"), key(), "example.com", "sel"));
    CHECK(p.dkimResult() == nullptr);
    CHECK(p.authenticationResults() == "mx.test.example; none");
  }
  SECTION("[auth] authserv_id wins over the hostname") {
    options.authservId = "auth.example";
    policies::Policy p(rules, "A5", options);
    CHECK(p.authservId() == "auth.example");
  }
}
