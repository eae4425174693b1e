// Values (three-valued truth, IP addresses, describe) and the field table.

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "rules/fields.h"
#include "rules/list.h"
#include "rules/stage.h"
#include "rules/value.h"

namespace smtpgate::rules {
namespace {

constexpr Tri F = Tri::False;
constexpr Tri T = Tri::True;
constexpr Tri U = Tri::Unknown;

TEST_CASE("Kleene and, or and not", "[values]") {
  struct Case {
    Tri a;
    Tri b;
    Tri andResult;
    Tri orResult;
  };
  const std::vector<Case> cases = {
      {F, F, F, F}, {F, T, F, T}, {F, U, F, U}, {T, F, F, T}, {T, T, T, T},
      {T, U, U, T}, {U, F, F, U}, {U, T, U, T}, {U, U, U, U},
  };
  for (const auto& c : cases) {
    INFO(toString(c.a) << " , " << toString(c.b));
    CHECK(triAnd(c.a, c.b) == c.andResult);
    CHECK(triOr(c.a, c.b) == c.orResult);
  }
  CHECK(triNot(T) == F);
  CHECK(triNot(F) == T);
  CHECK(triNot(U) == U);
  CHECK(toTri(true) == T);
  CHECK(toTri(false) == F);
  CHECK(toString(U) == "unknown");
}

TEST_CASE("IP addresses parse, compare and print", "[values]") {
  struct Case {
    std::string text;
    std::optional<std::string> printed;
    bool v4;
  };
  const std::vector<Case> cases = {
      {"192.0.2.1", "192.0.2.1", true},
      {"0.0.0.0", "0.0.0.0", true},
      {"255.255.255.255", "255.255.255.255", true},
      {"::1", "::1", false},
      {"2001:DB8::1", "2001:db8::1", false},
      {"[2001:db8::1]", "2001:db8::1", false},
      {"[192.0.2.1]", "192.0.2.1", true},
      {"::ffff:192.0.2.1", "192.0.2.1", true},  // v4-mapped is the IPv4 address
      {"", std::nullopt, false},
      {"192.0.2", std::nullopt, false},
      {"192.0.2.256", std::nullopt, false},
      {"10.0.0.0/8", std::nullopt, false},
      {"example.com", std::nullopt, false},
      {" 192.0.2.1", std::nullopt, false},
      {"2001:db8::1::2", std::nullopt, false},
      {std::string(100, '1'), std::nullopt, false},
  };
  for (const auto& c : cases) {
    INFO("address: " << c.text);
    auto a = IpAddress::parse(c.text);
    CHECK(a.has_value() == c.printed.has_value());
    if (a && c.printed) {
      CHECK(a->toString() == *c.printed);
      CHECK(a->isV4() == c.v4);
      CHECK(IpAddress::parse(a->toString()) == a);
    }
  }
  CHECK(IpAddress::parse("192.0.2.1") == IpAddress::fromV4(0xC0000201));
  CHECK(IpAddress::parse("192.0.2.1") != IpAddress::parse("192.0.2.2"));
  auto v4 = *IpAddress::parse("128.0.0.1");
  CHECK(v4.bit(96));
  CHECK_FALSE(v4.bit(97));
  CHECK(v4.bit(127));
}

TEST_CASE("describe shows a fact for humans", "[values]") {
  struct Case {
    FactValue value;
    std::string shown;
  };
  const std::vector<Case> cases = {
      {Unavailable{"DNS timeout"}, "unavailable (DNS timeout)"},
      {true, "true"},
      {false, "false"},
      {25.0, "25"},
      {2.5, "2.5"},
      {std::string("a \"b\"\\"), "\"a \\\"b\\\"\\\\\""},
      {std::string("x\r\ny"), "\"x\\x0d\\x0ay\""},
      {*IpAddress::parse("2001:db8::1"), "2001:db8::1"},
      {Strings{}, "(none)"},
      {Strings{"a", "b"}, "[\"a\", \"b\"]"},
  };
  for (const auto& c : cases) {
    CHECK(describe(c.value) == c.shown);
  }
}

TEST_CASE("the field table is declared once, in FieldId order, as in DESIGN.md", "[fields]") {
  struct Case {
    std::string name;
    FieldType type;
    Stage stage;
  };
  const std::vector<Case> cases = {
      {"client.ip", FieldType::Ip, Stage::Connect},
      {"client.port", FieldType::Number, Stage::Connect},
      {"client.ptr", FieldType::Text, Stage::Connect},
      {"client.fcrdns", FieldType::Bool, Stage::Connect},
      {"local.port", FieldType::Number, Stage::Connect},
      {"pregreet", FieldType::Bool, Stage::Connect},
      {"helo", FieldType::Text, Stage::Helo},
      {"tls", FieldType::Bool, Stage::Helo},
      {"tls.version", FieldType::Text, Stage::Helo},
      {"tls.cipher", FieldType::Text, Stage::Helo},
      {"sender", FieldType::Text, Stage::Mail},
      {"sender.domain", FieldType::Text, Stage::Mail},
      {"mail.size", FieldType::Number, Stage::Mail},
      {"spf", FieldType::AuthResult, Stage::Mail},
      {"spf.explanation", FieldType::Text, Stage::Mail},
      {"rcpt", FieldType::TextList, Stage::Rcpt},
      {"rcpt.domain", FieldType::TextList, Stage::Rcpt},
      {"rcpt.count", FieldType::Number, Stage::Rcpt},
      {"header.x", FieldType::TextList, Stage::Data},
      {"body", FieldType::Text, Stage::Data},
      {"rawbody", FieldType::Text, Stage::Data},
      {"size", FieldType::Number, Stage::Data},
      {"dkim", FieldType::AuthResult, Stage::Data},
      {"dkim.domain", FieldType::TextList, Stage::Data},
      {"dmarc", FieldType::AuthResult, Stage::Data},
      {"dmarc.policy", FieldType::AuthResult, Stage::Data},
      {"score", FieldType::Number, Stage::Data},
  };
  REQUIRE(allFields().size() == cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    INFO("field " << c.name);
    const FieldInfo& info = allFields()[i];
    CHECK(static_cast<std::size_t>(info.id) == i);
    CHECK(&fieldInfo(info.id) == &info);
    auto ref = lookupField(c.name);
    REQUIRE(ref.has_value());
    CHECK(ref->info == &info);
    CHECK(ref->display() == c.name);
    CHECK(info.type == c.type);
    CHECK(info.knownAt == c.stage);
    CHECK_FALSE(info.help.empty());
    CHECK(info.words.empty() == (info.type != FieldType::AuthResult));
  }
}

TEST_CASE("authentication results accept the RFC 8601 words", "[fields]") {
  struct Case {
    std::string field;
    std::vector<std::string> words;
  };
  const std::vector<Case> cases = {
      {"spf", {"none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"}},
      {"dkim", {"none", "pass", "fail", "neutral", "temperror", "permerror"}},
      {"dmarc", {"none", "pass", "fail", "temperror", "permerror"}},
      {"dmarc.policy", {"none", "quarantine", "reject"}},
  };
  for (const auto& c : cases) {
    INFO("field " << c.field);
    auto ref = lookupField(c.field);
    REQUIRE(ref);
    std::vector<std::string> words(ref->info->words.begin(), ref->info->words.end());
    CHECK(words == c.words);
  }
}

TEST_CASE("lookupField resolves names and the header.NAME family", "[fields]") {
  struct Case {
    std::string name;
    std::optional<std::string> display;
  };
  const std::vector<Case> cases = {
      {"header.Subject", "header.subject"},
      {"HEADER.X-Mailer", "header.x-mailer"},
      {"header.a.b", "header.a.b"},
      {"header.", std::nullopt},
      {"header", std::nullopt},
      {"header.a:b", std::nullopt},
      {"Helo", std::nullopt},
      {"client", std::nullopt},
      {"client.ip.x", std::nullopt},
      {"", std::nullopt},
  };
  for (const auto& c : cases) {
    INFO("name " << c.name);
    auto ref = lookupField(c.name);
    CHECK(ref.has_value() == c.display.has_value());
    if (ref && c.display) {
      CHECK(ref->display() == *c.display);
      CHECK(ref->info->id == FieldId::Header);
    }
  }
  CHECK(*lookupField("header.subject") == *lookupField("Header.SUBJECT"));
  CHECK_FALSE(*lookupField("header.subject") == *lookupField("header.from"));
  CHECK(FieldRef{}.display() == "?");
}

TEST_CASE("stage and list kind names round-trip", "[fields]") {
  for (Stage s : kAllStages) {
    CHECK(parseStage(toString(s)) == s);
  }
  CHECK(toString(Stage::Connect) == "connect");
  CHECK(toString(Stage::Data) == "data");
  CHECK_FALSE(parseStage("Data"));
  CHECK_FALSE(parseStage("eom"));
  for (ListKind k :
       {ListKind::Cidr, ListKind::Domain, ListKind::Regex, ListKind::String, ListKind::Dnsbl}) {
    CHECK(parseListKind(toString(k)) == k);
  }
  CHECK_FALSE(parseListKind("ip"));
}

}  // namespace
}  // namespace smtpgate::rules
