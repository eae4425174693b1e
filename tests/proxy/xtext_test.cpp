// xtext encoding (RFC 3461 section 4) and the XCLIENT commands built with it.

#include "proxy/xtext.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "test_util.h"

namespace smtpgate::proxy {
namespace {

using test::visible;

TEST_CASE("xtextEncode", "[proxy][xtext]") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", ""},
      {"mail.example.org", "mail.example.org"},
      {"a+b", "a+2Bb"},
      {"a=b", "a+3Db"},
      {"a b", "a+20b"},
      {"\r\n", "+0D+0A"},
      {std::string(1, '\0'), "+00"},
      {"!~", "!~"},
      {"\x7f", "+7F"},
      {"\xC3\xA9", "+C3+A9"},
      {"[UNAVAILABLE]", "[UNAVAILABLE]"},
      {"IPV6:2001:db8::1", "IPV6:2001:db8::1"},
  };
  for (const auto& [raw, encoded] : cases) {
    INFO(visible(raw));
    CHECK(xtextEncode(raw) == encoded);
    CHECK(xtextDecode(encoded) == raw);
  }
}

TEST_CASE("xtext round-trips every byte and never emits CR, LF or space", "[proxy][xtext]") {
  std::string all;
  for (int c = 0; c < 256; ++c) {
    all += static_cast<char>(c);
  }
  std::string encoded = xtextEncode(all);
  CHECK(encoded.find_first_of("\r\n =") == std::string::npos);
  for (char c : encoded) {
    CHECK((c >= 33 && c <= 126));
  }
  CHECK(xtextDecode(encoded) == all);
}

TEST_CASE("xtextDecode refuses malformed xtext", "[proxy][xtext]") {
  for (std::string bad : {"+", "+2", "+G0", "a b", "a=b", "\x01", "\xC3\xA9", "a+2"}) {
    INFO(visible(bad));
    CHECK_FALSE(xtextDecode(bad).has_value());
  }
  CHECK(xtextDecode("+2b") == "+");  // lower-case hex, seen in the wild
}

std::set<std::string> caps(std::string xclient) {
  return {"PIPELINING", "SIZE 10240000", std::move(xclient), "8BITMIME"};
}

XclientFields typical() {
  XclientFields f;
  f.addr = "192.0.2.1";
  f.port = 51234;
  f.name = "mail.example.org";
  f.nameStatus = LookupStatus::Ok;
  f.helo = "mail.example.org";
  f.proto = SmtpProtocol::Esmtp;
  return f;
}

TEST_CASE("xclientCommands: the attributes the backend advertised", "[proxy][xtext]") {
  CHECK(xclientCommands(typical(), caps("XCLIENT ADDR PORT NAME HELO PROTO")) ==
        std::vector<std::string>{"XCLIENT ADDR=192.0.2.1 PORT=51234 NAME=mail.example.org "
                                 "HELO=mail.example.org PROTO=ESMTP"});
  CHECK(xclientCommands(typical(), caps("XCLIENT NAME ADDR")) ==
        std::vector<std::string>{"XCLIENT ADDR=192.0.2.1 NAME=mail.example.org"});
  CHECK(xclientCommands(typical(), {"PIPELINING", "8BITMIME"}).empty());
  CHECK(xclientCommands(typical(), caps("XCLIENT")).empty());
}

TEST_CASE("xclientCommands: IPv6, unknown and failed values", "[proxy][xtext]") {
  const auto all = caps("XCLIENT ADDR PORT NAME REVERSE_NAME HELO PROTO LOGIN DESTADDR DESTPORT");
  XclientFields f;
  f.addr = "2001:db8::1";
  f.nameStatus = LookupStatus::TempFailure;
  f.reverseName = "ptr.example.org";
  f.reverseNameStatus = LookupStatus::Ok;
  CHECK(xclientCommands(f, all) ==
        std::vector<std::string>{"XCLIENT ADDR=IPV6:2001:db8::1 PORT=[UNAVAILABLE] "
                                 "NAME=[TEMPUNAVAIL] REVERSE_NAME=ptr.example.org "
                                 "HELO=[UNAVAILABLE]"});
  XclientFields g;
  g.addr = "IPv6:2001:db8::2";  // already tagged: not tagged twice
  g.name = "ignored.example";   // status Unavailable wins over a stale name
  g.helo = "helo with space+plus=eq";
  g.proto = SmtpProtocol::Smtp;
  g.login = "user@example.org";
  g.destAddr = "198.51.100.25";
  g.destPort = 25;
  CHECK(xclientCommands(g, all) ==
        std::vector<std::string>{"XCLIENT ADDR=IPv6:2001:db8::2 PORT=[UNAVAILABLE] "
                                 "NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE] "
                                 "HELO=helo+20with+20space+2Bplus+3Deq PROTO=SMTP "
                                 "LOGIN=user@example.org DESTADDR=198.51.100.25 DESTPORT=25"});
}

TEST_CASE("xclientCommands: every command fits 512 bytes with CRLF", "[proxy][xtext]") {
  const auto all = caps("XCLIENT ADDR PORT NAME REVERSE_NAME HELO PROTO LOGIN");
  XclientFields f = typical();
  f.name = std::string(300, 'n');
  f.reverseName = std::string(255, 'r');
  f.reverseNameStatus = LookupStatus::Ok;
  f.helo = std::string(2000, '\x01');  // hostile HELO: 3 bytes each once encoded
  f.login = std::string(600, '=');
  std::vector<std::string> commands = xclientCommands(f, all);
  REQUIRE(commands.size() >= 3);
  std::string joined;
  for (const auto& c : commands) {
    INFO(c);
    CHECK(c.size() + 2 <= 512);
    CHECK(c.rfind("XCLIENT ", 0) == 0);
    CHECK(c.find_first_of("\r\n") == std::string::npos);
    joined += c + "\n";
  }
  CHECK(joined.find("NAME=" + std::string(255, 'n')) != std::string::npos);  // cut to 255
  CHECK(joined.find(std::string(256, 'n')) == std::string::npos);
  CHECK(joined.find("HELO=+01+01") != std::string::npos);
  CHECK(joined.find("+01+0\n") == std::string::npos);  // cut on an encoding boundary
  CHECK(joined.find("PROTO=ESMTP") != std::string::npos);
  CHECK(joined.find("ADDR=192.0.2.1") != std::string::npos);
}

TEST_CASE("xclientTakesAddress: XCLIENT hands over the client only with ADDR", "[proxy][xtext]") {
  CHECK(xclientTakesAddress(caps("XCLIENT NAME ADDR PORT PROTO HELO")));
  CHECK_FALSE(xclientTakesAddress(caps("XCLIENT NAME HELO")));  // smtp-sink's offer
  CHECK_FALSE(xclientTakesAddress(caps("XCLIENT")));
  CHECK_FALSE(xclientTakesAddress({"PIPELINING", "XFORWARD NAME ADDR PROTO HELO"}));
}

}  // namespace
}  // namespace smtpgate::proxy
