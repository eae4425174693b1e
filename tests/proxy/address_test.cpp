// parsePath / parseMailbox: the one address parser. Dot-strings, quoted
// strings, domains, address literals, source routes, <> and <postmaster>,
// UTF-8 and the RFC 5321 length limits.

#include "proxy/address.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "test_util.h"

namespace smtpgate::proxy {
namespace {

using test::visible;

struct Good {
  std::string text;
  std::string address;
  std::string localPart;
  std::string domain;
  bool utf8 = false;
};

TEST_CASE("parsePath accepts RFC 5321 paths", "[proxy][address]") {
  const std::vector<Good> cases = {
      {"<user@example.org>", "user@example.org", "user", "example.org"},
      {"<first.last@sub.example.org>", "first.last@sub.example.org", "first.last",
       "sub.example.org"},
      {"<a!#$%&'*+-/=?^_`{|}~@example.org>", "a!#$%&'*+-/=?^_`{|}~@example.org",
       "a!#$%&'*+-/=?^_`{|}~", "example.org"},
      {"<\"john doe\"@example.org>", "\"john doe\"@example.org", "\"john doe\"", "example.org"},
      {"<\"a\\\"b\"@example.org>", "\"a\\\"b\"@example.org", "\"a\\\"b\"", "example.org"},
      {"<\"a>b\"@example.org>", "\"a>b\"@example.org", "\"a>b\"", "example.org"},
      {"<\"\"@example.org>", "\"\"@example.org", "\"\"", "example.org"},
      {"<u@[192.0.2.1]>", "u@[192.0.2.1]", "u", "[192.0.2.1]"},
      {"<u@[IPv6:2001:db8::1]>", "u@[IPv6:2001:db8::1]", "u", "[IPv6:2001:db8::1]"},
      {"<u@[ipv6:::ffff:192.0.2.1]>", "u@[ipv6:::ffff:192.0.2.1]", "u", "[ipv6:::ffff:192.0.2.1]"},
      {"<@a.example,@b.example:u@c.example>", "u@c.example", "u", "c.example"},
      {"<u@xn--bcher-kva.example>", "u@xn--bcher-kva.example", "u", "xn--bcher-kva.example"},
      {"<u@a-b.c_d.example>", "u@a-b.c_d.example", "u", "a-b.c_d.example"},  // "_": like Postfix
      {"<a..b@docomo.example>", "a..b@docomo.example", "a..b", "docomo.example"},  // lenient
      {"<.a.@example.org>", ".a.@example.org", ".a.", "example.org"},
      {"<u@localhost>", "u@localhost", "u", "localhost"},
      {"<u@123.example>", "u@123.example", "u", "123.example"},
      {"<j\xC3\xB6rg@b\xC3\xBC"
       "cher.example>",
       "j\xC3\xB6rg@b\xC3\xBC"
       "cher.example",
       "j\xC3\xB6rg",
       "b\xC3\xBC"
       "cher.example",
       true},
      {"<\"\xE2\x82\xAC\"@example.org>", "\"\xE2\x82\xAC\"@example.org", "\"\xE2\x82\xAC\"",
       "example.org", true},
      {"<\xF0\x9F\x98\x80@example.org>", "\xF0\x9F\x98\x80@example.org", "\xF0\x9F\x98\x80",
       "example.org", true},
  };
  for (const auto& c : cases) {
    INFO(visible(c.text));
    PathParse r = parsePath(c.text + " SIZE=1");
    REQUIRE(r.error == AddressError::None);
    CHECK(r.consumed == c.text.size());
    CHECK(r.path.address == c.address);
    CHECK(r.path.localPart == c.localPart);
    CHECK(r.path.domain == c.domain);
    CHECK(r.path.needsSmtputf8 == c.utf8);
    CHECK(r.path.addressLiteral == (c.domain.front() == '['));
  }
}

struct Bad {
  std::string text;
  AddressError error;
};

TEST_CASE("parsePath refuses malformed paths", "[proxy][address]") {
  const std::vector<Bad> cases = {
      {"", AddressError::Syntax},
      {"user@example.org", AddressError::Syntax},
      {"<user@example.org", AddressError::Syntax},
      {"<>", AddressError::Syntax},  // not allowed by default
      {"<postmaster>", AddressError::Syntax},
      {"<user>", AddressError::Syntax},
      {"<@example.org>", AddressError::Syntax},
      {"<user@>", AddressError::Syntax},
      {"<user@@example.org>", AddressError::Syntax},
      {"<us er@example.org>", AddressError::Syntax},
      {"<user@exa mple.org>", AddressError::Syntax},
      {"<(comment)user@example.org>", AddressError::Syntax},
      {"<user@example..org>", AddressError::Syntax},
      {"<user@.example.org>", AddressError::Syntax},
      {"<user@example.org.>", AddressError::Syntax},
      {"<user@-example.org>", AddressError::Syntax},
      {"<user@example-.org>", AddressError::Syntax},
      {"<user@" + std::string(64, 'a') + ".org>", AddressError::Syntax},
      {"<user@[192.0.2]>", AddressError::Syntax},
      {"<user@[192.0.2.256]>", AddressError::Syntax},
      {"<user@[192.0.2.1.5]>", AddressError::Syntax},
      {"<user@[IPv6:2001:db8::g]>", AddressError::Syntax},
      {"<user@[IPv6:192.0.2.1]>", AddressError::Syntax},
      {"<user@[192.0.2.1>", AddressError::Syntax},
      {"<user@[tag:a]b]>", AddressError::Syntax},
      {"<user@[x-tag:content]>", AddressError::Syntax},  // no registered tag but IPv6
      {"<user@[IP66:a\"b]>", AddressError::Syntax},
      {"<\"unterminated@example.org>", AddressError::Syntax},
      {"<\"bad\\\x01\"@example.org>", AddressError::Syntax},
      {"<\"tab\tin\"@example.org>", AddressError::Syntax},
      {"<user\r\n@example.org>", AddressError::Syntax},
      {"<@a.example:>", AddressError::Syntax},
      {"<@a.example,b.example:u@c.example>", AddressError::Syntax},
      {"<@:u@c.example>", AddressError::Syntax},
      {"<u@c.example:>", AddressError::Syntax},
      {"<\xC3(@example.org>", AddressError::BadUtf8},
      {"<\xC0\xAF@example.org>", AddressError::BadUtf8},          // overlong "/"
      {"<\xED\xA0\x80@example.org>", AddressError::BadUtf8},      // surrogate
      {"<\xF4\x90\x80\x80@example.org>", AddressError::BadUtf8},  // above U+10FFFF
      {"<u@\xFF.example>", AddressError::BadUtf8},
      {"<\"\x80\"@example.org>", AddressError::BadUtf8},
      {"<" + std::string(65, 'a') + "@example.org>", AddressError::LocalPartTooLong},
      {"<a@" + std::string(50, 'b') + "." + std::string(50, 'c') + "." + std::string(50, 'd') +
           "." + std::string(50, 'e') + "." + std::string(60, 'f') + ">",
       AddressError::DomainTooLong},
      {"<@" + std::string(60, 'r') + ".example,@" + std::string(60, 's') + ".example,@" +
           std::string(60, 't') + ".example:" + std::string(60, 'u') + "@" + std::string(20, 'v') +
           ".example>",
       AddressError::PathTooLong},
  };
  for (const auto& c : cases) {
    INFO(visible(c.text));
    PathParse r = parsePath(c.text);
    CHECK(r.error == c.error);
    CHECK(r.consumed == 0);
  }
}

TEST_CASE("parsePath: <> and <postmaster> only where allowed", "[proxy][address]") {
  PathOptions mail;
  mail.allowNull = true;
  PathParse r = parsePath("<> BODY=8BITMIME", mail);
  REQUIRE(r.ok());
  CHECK(r.path.isNull);
  CHECK(r.path.address.empty());
  CHECK(r.consumed == 2);
  CHECK(parsePath("<postmaster>", mail).error == AddressError::Syntax);

  PathOptions rcpt;
  rcpt.allowPostmaster = true;
  for (const char* text : {"<postmaster>", "<Postmaster>", "<POSTMASTER>"}) {
    INFO(text);
    r = parsePath(text, rcpt);
    REQUIRE(r.ok());
    CHECK(r.path.isPostmaster);
    CHECK(r.path.domain.empty());
  }
  CHECK(parsePath("<>", rcpt).error == AddressError::Syntax);
  CHECK(parsePath("<postmasters>", rcpt).error == AddressError::Syntax);
  r = parsePath("<postmaster@example.org>", rcpt);
  REQUIRE(r.ok());
  CHECK_FALSE(r.path.isPostmaster);
}

TEST_CASE("parsePath: limits at the boundary, and relaxed", "[proxy][address]") {
  std::string local64(64, 'a');
  CHECK(parsePath("<" + local64 + "@example.org>").ok());
  // 255-byte domain: path = 1 + 1 + 1 + 255 + 1 = 259 > 256, so PathTooLong wins.
  std::string domain255 = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                          std::string(63, 'c') + "." + std::string(63, 'd');
  REQUIRE(domain255.size() == 255);
  CHECK(parsePath("<u@" + domain255 + ">").error == AddressError::PathTooLong);
  PathOptions relaxed;
  relaxed.limits.path = 1000;
  CHECK(parsePath("<u@" + domain255 + ">", relaxed).ok());
  CHECK(parsePath("<u@" + domain255 + "e>", relaxed).error == AddressError::Syntax);  // label 64
  std::string path256 = "<" + std::string(64, 'a') + "@" + std::string(63, 'b') + "." +
                        std::string(63, 'c') + "." + std::string(61, 'd') + ">";
  REQUIRE(path256.size() == 256);
  CHECK(parsePath(path256).ok());
  std::string path257 = "<" + std::string(64, 'a') + "@" + std::string(63, 'b') + "." +
                        std::string(63, 'c') + "." + std::string(62, 'd') + ">";
  CHECK(parsePath(path257).error == AddressError::PathTooLong);
}

TEST_CASE("parseMailbox takes bare addresses", "[proxy][address]") {
  PathParse r = parseMailbox("user@example.org");
  REQUIRE(r.ok());
  CHECK(r.path.address == "user@example.org");
  CHECK(r.consumed == 16);
  CHECK(parseMailbox("\"a b\"@example.org").ok());
  CHECK(parseMailbox("user@[192.0.2.1]").ok());
  CHECK(parseMailbox("<user@example.org>").error == AddressError::Syntax);
  CHECK(parseMailbox("user@example.org ").error == AddressError::Syntax);
  CHECK(parseMailbox("user").error == AddressError::Syntax);
  CHECK(parseMailbox("postmaster").error == AddressError::Syntax);
  CHECK(parseMailbox("").error == AddressError::Syntax);
}

TEST_CASE("utf8SequenceLength follows RFC 3629", "[proxy][address]") {
  struct Case {
    std::string bytes;
    std::size_t length;
  };
  const std::vector<Case> cases = {
      {"\xC3\xA9", 2},
      {"\xE2\x82\xAC", 3},
      {"\xF0\x9F\x98\x80", 4},
      {"\xC2\x80", 2},
      {"\xC1\xBF", 0},
      {"\xE0\x9F\xBF", 0},
      {"\xED\x9F\xBF", 3},
      {"\xED\xA0\x80", 0},
      {"\xF4\x8F\xBF\xBF", 4},
      {"\xF4\x90\x80\x80", 0},
      {"\xF5\x80\x80\x80", 0},
      {"\x80", 0},
      {"\xC3", 0},
      {"\xE2\x82", 0},
      {"\xC3\x41", 0},
  };
  for (const auto& c : cases) {
    INFO(visible(c.bytes));
    CHECK(utf8SequenceLength(c.bytes, 0) == c.length);
  }
}

}  // namespace
}  // namespace smtpgate::proxy
