// The SPF record parser (policies/spf_record.h): which TXT strings are SPF
// records, what a valid record's terms become, and every syntax error with
// its reason (RFC 7208 section 12 ABNF, 4.6, 5, 6).
#include <catch2/catch.hpp>
#include <string>
#include <string_view>

#include "policies/spf_record.h"

using namespace smtpgate;
using namespace std::string_view_literals;
using policies::SpfMechanismKind;
using policies::SpfQualifier;

namespace {

rules::IpAddress ip(const char* text) {
  return *rules::IpAddress::parse(text);
}

/// The only mechanism of "v=spf1 <term>".
policies::SpfMechanism mechanism(const std::string& term) {
  auto parsed = policies::parseSpfRecord("v=spf1 " + term);
  INFO(term << ": " << parsed.error);
  REQUIRE(parsed.record);
  REQUIRE(parsed.record->mechanisms.size() == 1);
  return parsed.record->mechanisms.front();
}

}  // namespace

TEST_CASE("spf record: which TXT strings are SPF records", "[spf]") {
  struct Case {
    std::string_view text;
    bool spf;
  };
  const Case cases[] = {
      {"v=spf1", true},           {"v=spf1 -all", true},   {"V=SpF1 ~all", true},
      {"v=spf1 ", true},          {"v=spf10", false},      {"v=spf1-all", false},
      {" v=spf1 -all", false},    {"v=spf2.0/pra", false}, {"", false},
      {"v=spf", false},           {"v=spf1\t-all", false}, {"spf1 -all", false},
      {"v=spf1\0 -all"sv, false},
  };
  for (const auto& c : cases) {
    INFO(std::string(c.text));
    CHECK(policies::isSpfRecord(c.text) == c.spf);
  }
}

TEST_CASE("spf record: mechanisms, qualifiers, targets and CIDR lengths", "[spf]") {
  struct Case {
    const char* term;
    SpfMechanismKind kind;
    SpfQualifier qualifier;
    const char* domain;  ///< the domain-spec as written; "" = none
    int cidr4;
    int cidr6;
  };
  using K = SpfMechanismKind;
  using Q = SpfQualifier;
  const Case cases[] = {
      {"all", K::All, Q::Pass, "", 32, 128},
      {"+all", K::All, Q::Pass, "", 32, 128},
      {"-all", K::All, Q::Fail, "", 32, 128},
      {"~ALL", K::All, Q::SoftFail, "", 32, 128},
      {"?all", K::All, Q::Neutral, "", 32, 128},
      {"include:_spf.example.com", K::Include, Q::Pass, "_spf.example.com", 32, 128},
      {"-include:_spfh.%{d2}", K::Include, Q::Fail, "_spfh.%{d2}", 32, 128},
      {"a", K::A, Q::Pass, "", 32, 128},
      {"a/24", K::A, Q::Pass, "", 24, 128},
      {"a//64", K::A, Q::Pass, "", 32, 64},
      {"a/24//64", K::A, Q::Pass, "", 24, 64},
      {"a/0//0", K::A, Q::Pass, "", 0, 0},
      {"A:mail.example.com/24", K::A, Q::Pass, "mail.example.com", 24, 128},
      {"a:foo:bar/baz.example.com", K::A, Q::Pass, "foo:bar/baz.example.com", 32, 128},
      {"a:foo.example.xn--zckzah", K::A, Q::Pass, "foo.example.xn--zckzah", 32, 128},
      {"a:%{H}", K::A, Q::Pass, "%{H}", 32, 128},
      {"mx", K::Mx, Q::Pass, "", 32, 128},
      {"mx:%{d}//0", K::Mx, Q::Pass, "%{d}", 32, 0},
      {"MX:example.org.", K::Mx, Q::Pass, "example.org.", 32, 128},
      {"ptr", K::Ptr, Q::Pass, "", 32, 128},
      {"?ptr:example.Com", K::Ptr, Q::Neutral, "example.Com", 32, 128},
      {"ip4:192.0.2.0/24", K::Ip4, Q::Pass, "", 24, 128},
      {"ip4:0.0.0.0/0", K::Ip4, Q::Pass, "", 0, 128},
      {"IP4:192.0.2.1", K::Ip4, Q::Pass, "", 32, 128},
      {"ip6:2001:db8::/32", K::Ip6, Q::Pass, "", 32, 32},
      {"ip6:::1.1.1.1/0", K::Ip6, Q::Pass, "", 32, 0},
      {"ip6:Cafe:Babe:8000::/33", K::Ip6, Q::Pass, "", 32, 33},
      {"exists:%{ir}.%{v}._spf.%{d2}", K::Exists, Q::Pass, "%{ir}.%{v}._spf.%{d2}", 32, 128},
      {"exists:macro%%percent%_%_space%-url-space.example.com", K::Exists, Q::Pass,
       "macro%%percent%_%_space%-url-space.example.com", 32, 128},
  };
  for (const auto& c : cases) {
    const auto m = mechanism(c.term);
    INFO(c.term);
    CHECK(m.text == c.term);
    CHECK(m.kind == c.kind);
    CHECK(m.qualifier == c.qualifier);
    CHECK((m.domain ? m.domain->text() : std::string()) == c.domain);
    CHECK(m.cidr4 == c.cidr4);
    CHECK(m.cidr6 == c.cidr6);
  }
  CHECK(mechanism("ip4:192.0.2.1").network == ip("192.0.2.1"));
  CHECK(mechanism("ip6:2001:DB8::1/64").network == ip("2001:db8::1"));
  CHECK(mechanism("a").queriesDns());
  CHECK(mechanism("include:x.example").queriesDns());
  CHECK_FALSE(mechanism("ip4:192.0.2.1").queriesDns());
  CHECK_FALSE(mechanism("-all").queriesDns());
}

TEST_CASE("spf record: modifiers, spaces and the whole record", "[spf]") {
  auto parsed = policies::parseSpfRecord(
      "v=spf1  a  mx:example.org ~all redirect=_spf.%{d} exp=explain.example.org "
      "moo.cow-far_out=man:dog/cat default=+ x-future=%{c} ");
  INFO(parsed.error);
  REQUIRE(parsed.record);
  const auto& r = *parsed.record;
  CHECK(r.mechanisms.size() == 3);
  CHECK(r.hasAll);
  REQUIRE(r.redirect);
  CHECK(r.redirect->text() == "_spf.%{d}");
  REQUIRE(r.explanation);
  CHECK(r.explanation->text() == "explain.example.org");

  auto empty = policies::parseSpfRecord("v=spf1");
  REQUIRE(empty.record);
  CHECK(empty.record->mechanisms.empty());
  CHECK_FALSE(empty.record->hasAll);

  auto upper = policies::parseSpfRecord("V=SPF1 REDIRECT=example.org EXP=x.example.org");
  REQUIRE(upper.record);
  CHECK(upper.record->redirect);
  CHECK(upper.record->explanation);
}

TEST_CASE("spf record: syntax errors anywhere, with their reason", "[spf]") {
  struct Case {
    std::string_view record;
    const char* reason;
  };
  const Case cases[] = {
      // Unknown or malformed mechanism names (4.6.1, 5).
      {"v=spf1 ip4:1.2.3.4 -all moo", "unknown mechanism 'moo'"},
      {"v=spf1 -all.", "unknown mechanism '-all.'"},
      {"v=spf1 redirect:t2.example.com", "unknown mechanism 'redirect:t2.example.com'"},
      {"v=spf1 1up=foo", "unknown mechanism '1up=foo'"},
      {"v=spf1 =all", "unknown mechanism '=all'"},
      {"v=spf1 moo.cow/far_out=man:dog/cat", "unknown mechanism"},
      {"v=spf1 moo.cow:far_out=man:dog/cat", "unknown mechanism"},
      {"v=spf1 +", "unknown mechanism '+'"},
      {"v=spf1 -all=x", "unknown mechanism"},
      {"v=spf1 -all:foobar", "'all' takes no argument"},
      {"v=spf1 -all/8", "'all' takes no argument"},
      // Targets (5.2-5.7) and domain-spec (7.1).
      {"v=spf1 include", "'include' needs ':' and a domain-spec"},
      {"v=spf1 include: -all", "empty domain-spec"},
      {"v=spf1 include:ip5.example.com/24", "does not end in a macro or a valid top label"},
      {"v=spf1 exists", "'exists' needs ':' and a domain-spec"},
      {"v=spf1 exists:mail.example.com/24", "valid top label"},
      {"v=spf1 a:", "empty domain-spec"},
      {"v=spf1 mx: -all", "empty domain-spec"},
      {"v=spf1 ptr:", "empty domain-spec"},
      {"v=spf1 a:foo-bar -all", "valid top label"},
      {"v=spf1 a:museum", "valid top label"},
      {"v=spf1 a:museum.", "valid top label"},
      {"v=spf1 a:111.222.33.44", "valid top label"},
      {"v=spf1 a:abc.123", "valid top label"},
      {"v=spf1 a:example.-com", "valid top label"},
      {"v=spf1 mx:example.com:8080", "valid top label"},
      {"v=spf1 ptr/0 -all", "invalid argument in 'ptr/0'"},
      // CIDR lengths (5.6): range, no leading zero, dual form only on a/mx.
      {"v=spf1 a/33 -all", "invalid IPv4 CIDR length in 'a/33'"},
      {"v=spf1 a//129 -all", "invalid IPv6 CIDR length in 'a//129'"},
      {"v=spf1 a/24/64 -all", "invalid IPv4 CIDR length"},
      {"v=spf1 mx/032", "invalid IPv4 CIDR length"},
      {"v=spf1 ip4:1.2.3.4/33", "invalid CIDR length in 'ip4:1.2.3.4/33'"},
      {"v=spf1 ip4:1.2.3.4/032", "invalid CIDR length"},
      {"v=spf1 ip4:1.2.3.4//32", "invalid CIDR length"},
      {"v=spf1 ip6:::1.1.1.1/129", "invalid CIDR length"},
      {"v=spf1 ip6:::1.1.1.1//33", "invalid CIDR length"},
      // Networks (5.6).
      {"v=spf1 ip4", "'ip4' needs ':' and a network"},
      {"v=spf1 -all ip6", "'ip6' needs ':' and a network"},
      {"v=spf1 ip4:1.2.3", "invalid IPv4 network in 'ip4:1.2.3'"},
      {"v=spf1 ip4:1.2.3.4:8080", "invalid IPv4 network"},
      {"v=spf1 ip4:01.2.3.4", "invalid IPv4 network"},
      {"v=spf1 ip4:256.2.3.4", "invalid IPv4 network"},
      {"v=spf1 ip4:1.2.3.4.", "invalid IPv4 network"},
      {"v=spf1 ip4:[1.2.3.4]", "invalid IPv4 network"},
      {"v=spf1 ip6::CAFE::BABE", "invalid IPv6 network"},
      {"v=spf1 ip6:192.0.2.1", "invalid IPv6 network"},
      // Modifiers (6): syntax, and redirect=/exp= at most once.
      {"v=spf1 exp= -all", "empty domain-spec in 'exp='"},
      {"v=spf1 exp=-all", "valid top label in 'exp=-all'"},
      {"v=spf1 ?all redirect=", "empty domain-spec"},
      {"v=spf1 redirect=-all ?all", "valid top label"},
      {"v=spf1 exp=e13msg.example.com -all exp=e11msg.example.com", "exp= appears twice"},
      {"v=spf1 redirect=a.example.com -all redirect=a.example.com", "redirect= appears twice"},
      {"v=spf1 -all foo=%abc", "'%' followed by 'a'"},
      {"v=spf1 -all exp=%{r}.example.com", "macro letter 'r' is allowed only in explanation"},
      {"v=spf1 a:%{a}.example.com -all", "unknown macro letter 'a'"},
      {"v=spf1 -exists:%(ir).sbl.example.com ?all", "'%' followed by '('"},
      {"v=spf1 exists:foo%.sbl.example.com", "'%' followed by '.'"},
      // Only spaces separate terms; every byte of a term is checked (3.1, 4.6.1).
      {"v=spf1 a:ctrl.example.com\rptr -all", "invalid character \\x0D"},
      {"v=spf1 ip4:192.0.2.5\n include:spf.protection.outlook.com ~all", "invalid IPv4 network"},
      {"v=spf1 \x80"
       "a:example.net -all",
       "unknown mechanism '\\x80a:example.net'"},
      {"v=spf1 a:example.net \x96"
       "all",
       "unknown mechanism '\\x96all'"},
      {"v=spf1 a:\xEF\xBB\xBFgarbage.example.net -all", "invalid character \\xEF"},
      {"v=spf1 a:foo.example.com\0"sv, "invalid character \\x00"},
      {"v=spf1\t-all", "not an SPF record"},
  };
  for (const auto& c : cases) {
    const auto parsed = policies::parseSpfRecord(c.record);
    INFO(std::string(c.record));
    CHECK_FALSE(parsed.record);
    CHECK_THAT(parsed.error, Catch::Contains(c.reason));
  }
}

TEST_CASE("spf record: hostile records are parsed in bounds", "[spf]") {
  // A long term is quoted in the error at most 64 bytes long, escaped.
  const std::string junk(10'000, '\x01');
  const auto bad = policies::parseSpfRecord("v=spf1 " + junk);
  CHECK_FALSE(bad.record);
  CHECK(bad.error.size() < 64 * 4 + 40);
  CHECK(bad.error.find('\x01') == std::string::npos);

  // Thousands of terms (a DNS message's worth) parse; limits are the evaluator's.
  std::string many = "v=spf1";
  for (int i = 0; i < 4000; ++i) {
    many += " ip4:192.0.2." + std::to_string(i % 256);
  }
  const auto parsed = policies::parseSpfRecord(many);
  REQUIRE(parsed.record);
  CHECK(parsed.record->mechanisms.size() == 4000);

  // A thousand digits in a CIDR length or a macro transformer do not overflow.
  CHECK_FALSE(policies::parseSpfRecord("v=spf1 a/" + std::string(1000, '9')).record);
  CHECK(policies::parseSpfRecord("v=spf1 exists:%{d" + std::string(1000, '9') + "}").record);
}
