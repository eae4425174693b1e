// SPF macro-strings (policies/spf_macro.h): the examples of RFC 7208 7.4
// verbatim, URL-escaping, the explanation-only letters, syntax errors, the
// domain-end rule, and the bounds on expansion.
#include <catch2/catch.hpp>
#include <string>

#include "policies/spf_macro.h"

using namespace smtpgate;
using policies::SpfMacroString;
using policies::SpfMacroSyntax;

namespace {

/// The values of RFC 7208 7.4: "The <sender> is strong-bad@email.example.com.
/// The IPv4 SMTP client IP is 192.0.2.3. The IPv6 SMTP client IP is
/// 2001:db8::cb01. The PTR domain name of the client IP is mx.example.org."
policies::SpfMacroValues rfcValues(const char* client = "192.0.2.3") {
  policies::SpfMacroValues v;
  v.sender = "strong-bad@email.example.com";
  v.localPart = "strong-bad";
  v.senderDomain = "email.example.com";
  v.domain = "email.example.com";
  v.ip = *rules::IpAddress::parse(client);
  v.helo = "mx.example.org";
  v.receiver = "mx.receiver.example";
  v.timestamp = 1700000000;
  v.validatedName = [](const std::string&) { return std::string("mx.example.org"); };
  return v;
}

std::string expand(const std::string& text, const policies::SpfMacroValues& v,
                   SpfMacroSyntax syntax = SpfMacroSyntax::Explanation) {
  std::string error;
  auto macro = SpfMacroString::parse(text, syntax, error);
  INFO(text << ": " << error);
  REQUIRE(macro);
  auto out = macro->expand(v, error);
  INFO(error);
  REQUIRE(out);
  return *out;
}

std::string parseError(const std::string& text, SpfMacroSyntax syntax) {
  std::string error;
  auto macro = SpfMacroString::parse(text, syntax, error);
  INFO(text);
  CHECK_FALSE(macro);
  return error;
}

}  // namespace

TEST_CASE("spf macros: the examples of RFC 7208 7.4", "[spf]") {
  struct Case {
    const char* macro;
    const char* expansion;
  };
  const Case ipv4[] = {
      {"%{s}", "strong-bad@email.example.com"},
      {"%{o}", "email.example.com"},
      {"%{d}", "email.example.com"},
      {"%{d4}", "email.example.com"},
      {"%{d3}", "email.example.com"},
      {"%{d2}", "example.com"},
      {"%{d1}", "com"},
      {"%{dr}", "com.example.email"},
      {"%{d2r}", "example.email"},
      {"%{l}", "strong-bad"},
      {"%{l-}", "strong.bad"},
      {"%{lr}", "strong-bad"},
      {"%{lr-}", "bad.strong"},
      {"%{l1r-}", "strong"},
      {"%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"},
      {"%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"},
      {"%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"},
      {"%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"},
      {"%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"},
  };
  for (const auto& c : ipv4) {
    CHECK(expand(c.macro, rfcValues(), SpfMacroSyntax::DomainSpec) == c.expansion);
  }
  CHECK(expand("%{ir}.%{v}._spf.%{d2}", rfcValues("2001:db8::cb01"), SpfMacroSyntax::DomainSpec) ==
        "1.0.B.C.0.0.0.0."
        "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com");
}

TEST_CASE("spf macros: letters, escapes and URL-escaping", "[spf]") {
  const auto v = rfcValues();
  CHECK(expand("%{i} %{h} %{p} %{v}", v) == "192.0.2.3 mx.example.org mx.example.org in-addr");
  CHECK(expand("%{c} %{r} %{t}", v) == "192.0.2.3 mx.receiver.example 1700000000");
  CHECK(expand("%{c}/%{i}", rfcValues("2001:db8::cb01")) ==
        "2001:db8::cb01/2.0.0.1.0.D.B.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.C.B.0.1");
  // An IPv4-mapped client is IPv4 (RFC 7208 5).
  CHECK(expand("%{i} %{c} %{v}", rfcValues("::ffff:192.0.2.3")) == "192.0.2.3 192.0.2.3 in-addr");
  CHECK(expand("%%%_%-", v) == "% %20");
  CHECK(expand("macro%%percent%_%_space%-url-space.example.com", v, SpfMacroSyntax::DomainSpec) ==
        "macro%percent  space%20url-space.example.com");
  // Uppercase letters URL-escape after the transformers, with uppercase hex.
  auto jack = v;
  jack.localPart = "~jack&jill=up-a_b3.c";
  CHECK(expand("http://example.com/why.html?l=%{L}", jack) ==
        "http://example.com/why.html?l=~jack%26jill%3Dup-a_b3.c");
  jack.localPart = "a b/\xC3\xA9";
  CHECK(expand("%{L}", jack) == "a%20b%2F%C3%A9");
  CHECK(expand("%{D2R}", v) == "example.email");
  // Multiple delimiters, the "r" in either case, values without the delimiter.
  auto dash = v;
  dash.localPart = "foo-bar+zip+quux";
  CHECK(expand("%{l2r+-}.user.%{d2}", dash) == "bar.foo.user.example.com");
  CHECK(expand("%{l2R+-}", dash) == "bar.foo");
  dash.localPart = "philip-gladstone-test";
  CHECK(expand("%{i}.%{l2r-}.user.%{d2}", dash) == "192.0.2.3.gladstone.philip.user.example.com");
  CHECK(expand("%{d99}", v) == "email.example.com");
  CHECK(expand("%{d" + std::string(50, '9') + "}", v) == "email.example.com");
  // Empty parts are kept; r with no receiver, p with no validated name.
  auto odd = v;
  odd.localPart = "a..b";
  odd.receiver.clear();
  odd.validatedName = nullptr;
  CHECK(expand("%{lr} %{r} %{p}", odd) == "b..a unknown unknown");
  odd.validatedName = [](const std::string&) { return std::string(); };
  CHECK(expand("%{p}", odd) == "unknown");
  // p is asked with the current domain (it prefers names under it).
  auto pv = v;
  pv.validatedName = [](const std::string& domain) { return "host." + domain; };
  CHECK(expand("%{p}", pv) == "host.email.example.com");
}

TEST_CASE("spf macros: syntax errors", "[spf]") {
  struct Case {
    const char* text;
    SpfMacroSyntax syntax;
    const char* reason;
  };
  using S = SpfMacroSyntax;
  const Case cases[] = {
      {"%", S::UnknownModifier, "'%' at the end"},
      {"foo%", S::Explanation, "'%' at the end"},
      {"%abc", S::UnknownModifier, "'%' followed by 'a'"},
      {"%(ir).sbl.example.com", S::DomainSpec, "'%' followed by '('"},
      {"The %{x}-files.", S::Explanation, "unknown macro letter 'x'"},
      {"%{", S::Explanation, "unterminated macro"},
      {"%{d", S::Explanation, "unterminated macro"},
      {"%{d2rr}", S::Explanation, "invalid character 'r' in macro"},
      {"%{d:}", S::Explanation, "invalid character ':' in macro"},
      {"%{d0}", S::Explanation, "transformer 0"},
      {"%{d00r}", S::Explanation, "transformer 0"},
      {"%{c}.example.com", S::DomainSpec, "macro letter 'c' is allowed only in explanation"},
      {"%{R}.example.com", S::DomainSpec, "macro letter 'r' is allowed only in explanation"},
      {"%{t}.example.com", S::DomainSpec, "macro letter 't' is allowed only in explanation"},
      {"a b.example.com", S::DomainSpec, "invalid character \\x20"},
      {"a b", S::UnknownModifier, "invalid character \\x20"},
      {"caf\xC3\xA9", S::Explanation, "invalid character \\xC3"},
      {"line\r\nbreak", S::Explanation, "invalid character \\x0D"},
      {"tab\there", S::Explanation, "invalid character \\x09"},
      // domain-end = ( "." toplabel [ "." ] ) / macro-expand (7.1)
      {"", S::DomainSpec, "empty domain-spec"},
      {"museum", S::DomainSpec, "valid top label"},
      {"museum.", S::DomainSpec, "valid top label"},
      {"example.-com", S::DomainSpec, "valid top label"},
      {"abc.123", S::DomainSpec, "valid top label"},
      {"%{d}com", S::DomainSpec, "valid top label"},
      {"%{d}.com-", S::DomainSpec, "valid top label"},
  };
  for (const auto& c : cases) {
    CHECK_THAT(parseError(c.text, c.syntax), Catch::Contains(c.reason));
  }
  // Valid: a macro ends it, or "." toplabel with an optional final dot.
  std::string error;
  for (const char* ok : {"%{d}", "foo.%{d}", "%{d}.com", "example.com.", "_spf.%{d2}", "x%%", "x%-",
                         "a.xn--zckzah", "a.b-2", "a.1-2", "foo:bar/baz.example.com"}) {
    INFO(ok);
    CHECK(SpfMacroString::parse(ok, SpfMacroSyntax::DomainSpec, error));
  }
  CHECK(SpfMacroString::parse("", SpfMacroSyntax::Explanation, error));
  CHECK(SpfMacroString::parse("", SpfMacroSyntax::UnknownModifier, error));
  CHECK(SpfMacroString::parse("%{c}", SpfMacroSyntax::UnknownModifier, error));
}

TEST_CASE("spf macros: top labels and domain truncation", "[spf]") {
  for (const char* good : {"com", "xn--zckzah", "a1", "1a", "a-b", "1-2", "1--2", "COM"}) {
    INFO(good);
    CHECK(policies::isSpfTopLabel(good));
  }
  for (const char* bad : {"", "123", "-com", "com-", "c_m", "com:8080", "co m", "com/24"}) {
    INFO(bad);
    CHECK_FALSE(policies::isSpfTopLabel(bad));
  }
  CHECK(policies::truncateSpfDomain("example.com.") == "example.com");
  CHECK(policies::truncateSpfDomain("example.com") == "example.com");
  // 7.3: labels are removed from the left until at most 253 bytes remain.
  std::string label = "somewhat.long.exp.example.com";
  std::string name = "foobar";
  for (int i = 0; i < 8; ++i) {
    name += "." + label;
  }
  name += ".example.com";
  const std::string cut = policies::truncateSpfDomain(name);
  CHECK(cut.size() <= 253);
  CHECK(cut == name.substr(std::string("foobar.").size()));
  CHECK(policies::truncateSpfDomain(std::string(300, 'a')).empty());
  CHECK(policies::truncateSpfDomain(std::string(300, 'a') + ".example.com") == "example.com");
}

TEST_CASE("spf macros: expansion is bounded", "[spf]") {
  auto v = rfcValues();
  v.sender = std::string(2000, 's');
  std::string bomb;
  for (int i = 0; i < 100; ++i) {
    bomb += "%{s}";
  }
  std::string error;
  auto macro = SpfMacroString::parse(bomb + ".example.com", SpfMacroSyntax::DomainSpec, error);
  REQUIRE(macro);
  CHECK_FALSE(macro->expand(v, error));
  CHECK_THAT(error, Catch::Contains("longer than 65536 bytes"));
  // Just under the bound is fine.
  v.sender = std::string(600, 's');
  CHECK(macro->expand(v, error));
}
