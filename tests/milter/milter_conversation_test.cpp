// The milter protocol engine without an MTA: packet framing and payload
// parsing (hostile lengths and missing NULs refused), reply encoding, and a
// MilterConversation driven packet by packet the way Postfix drives it
// (tests/integration/milter_test.cpp runs it against a real Postfix), then
// the same over a socketpair with everything pipelined in one write.
#include <libmilter/mfapi.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>
#include <thread>
#include <vector>

#include "milter/milter_conversation.h"
#include "milter/milter_protocol.h"
#include "tests/policies/test_rules.h"

using namespace smtpgate;
using namespace std::string_literals;
using milter::MilterConversation;
using milter::protocol::Packet;
using milter::protocol::PacketReader;
using milter::protocol::ProtocolError;

namespace {

std::string packet(char command, const std::string& data = {}) {
  std::string out;
  milter::protocol::appendPacket(out, command, data);
  return out;
}

std::string uint32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>((v >> 16) & 0xFF),
          static_cast<char>((v >> 8) & 0xFF), static_cast<char>(v & 0xFF)};
}

std::vector<Packet> packetsIn(const std::string& bytes) {
  PacketReader reader;
  reader.feed(bytes);
  std::vector<Packet> out;
  while (auto p = reader.next()) {
    out.push_back(*p);
  }
  REQUIRE(reader.buffered() == 0);
  return out;
}

std::string commands(const std::vector<Packet>& packets) {
  std::string out;
  for (const auto& p : packets) {
    out += p.command;
  }
  return out;
}

/// A conversation whose sessions load `rules` and log into `logged`.
struct Harness {
  rules::RuleSetPtr rules;
  std::vector<policies::DecisionRecord> logged;
  MilterConversation conversation;

  explicit Harness(const std::string& text)
      : rules(testing::loadRules(text)), conversation([this] {
          policies::PolicyOptions o;
          o.dryRun = false;
          o.authservId = "mx.test.example";
          return std::make_unique<milter::MilterSession>(
              rules, o, [this](const policies::DecisionRecord& r) { logged.push_back(r); });
        }) {}

  /// The reply packets to `bytes` (one or more packets).
  std::vector<Packet> send(const std::string& bytes) {
    std::string out;
    for (const Packet& p : packetsIn(bytes)) {
      REQUIRE(conversation.handle(p, out));
    }
    return out.empty() ? std::vector<Packet>{} : packetsIn(out);
  }
};

// What Postfix offers with milter_protocol = 6.
constexpr std::uint32_t kPostfixActions = SMFI_CURR_ACTS;
constexpr std::uint32_t kPostfixProtocol = SMFI_CURR_PROT;

std::string negotiation() {
  return packet(SMFIC_OPTNEG, uint32(6) + uint32(kPostfixActions) + uint32(kPostfixProtocol));
}

std::string macros(char stage, const std::vector<std::pair<std::string, std::string>>& values) {
  std::string data(1, stage);
  for (const auto& [name, value] : values) {
    data += name + '\0' + value + '\0';
  }
  return packet(SMFIC_MACRO, data);
}

std::string connect4(const std::string& ip, std::uint16_t port) {
  return packet(SMFIC_CONNECT, "client.example\0"s + "4" + static_cast<char>(port >> 8) +
                                   static_cast<char>(port & 0xFF) + ip + '\0');
}

/// Rules that read the body: Postfix then sends headers, EOH and body.
const std::string kReadsBody = "rule w on data when body ~ /cheap watches/ then reject\n";

/// A whole clean SMTP session up to end of message, as Postfix sends it.
std::string sessionUpToEom(const std::string& rcpt = "<b@example.com>") {
  return negotiation() + macros('C', {{"{daemon_port}", "25"}}) + connect4("192.0.2.7", 40000) +
         packet(SMFIC_HELO, "mx.example.org\0"s) + macros('M', {{"i", "4XyZ1"}}) +
         packet(SMFIC_MAIL, "<a@example.org>\0SIZE=100\0"s) + packet(SMFIC_RCPT, rcpt + '\0') +
         packet(SMFIC_DATA) + packet(SMFIC_HEADER, "Subject\0 hello\0"s) +
         packet(SMFIC_HEADER, "From\0 a@example.org\0"s) + packet(SMFIC_EOH) +
         packet(SMFIC_BODY, "hello world\r\n") + packet(SMFIC_BODYEOB);
}

}  // namespace

TEST_CASE("milter protocol: packets are cut from a byte stream", "[milter]") {
  const std::string two = packet('H', "a\0"s) + packet('Q');
  SECTION("one byte at a time") {
    PacketReader reader;
    std::vector<Packet> got;
    for (char c : two) {
      reader.feed(std::string(1, c));
      while (auto p = reader.next()) {
        got.push_back(*p);
      }
    }
    REQUIRE(got.size() == 2);
    CHECK(got[0].command == 'H');
    CHECK(got[0].data == "a\0"s);
    CHECK(got[1].command == 'Q');
    CHECK(got[1].data.empty());
  }
  SECTION("a length of zero or past the limit is refused before anything is buffered") {
    PacketReader reader;
    reader.feed(uint32(0) + "Q");
    CHECK_THROWS_AS(reader.next(), ProtocolError);
    PacketReader big;
    big.feed(uint32(0xFFFFFFFF) + "B");
    CHECK_THROWS_AS(big.next(), ProtocolError);
    PacketReader justOver;
    justOver.feed(uint32(milter::protocol::kMaxPacket + 1));
    CHECK_THROWS_AS(justOver.next(), ProtocolError);
  }
  SECTION("an incomplete packet waits") {
    PacketReader reader;
    reader.feed(uint32(10) + "B123");
    CHECK_FALSE(reader.next());
    CHECK(reader.buffered() == 8);
  }
}

TEST_CASE("milter protocol: payloads are checked before they are read", "[milter]") {
  using namespace milter::protocol;
  const auto v4 = parseConnect("host\0"s + "4\x9c\x40" + "192.0.2.1\0"s);
  CHECK(v4.hostname == "host");
  CHECK(v4.family == '4');
  CHECK(v4.port == 40000);
  CHECK(v4.address == "192.0.2.1");
  CHECK(parseConnect("host\0U"s).family == 'U');
  CHECK(parseConnect("h\0"s + "6" + std::string("\x00\x19", 2) + "IPv6:2001:db8::1\0"s).address ==
        "IPv6:2001:db8::1");
  for (const std::string& bad : {"no nul"s, "host\0"s, "host\0X\0\0a\0"s, "host\0004\x01"s,
                                 "host\0004\x01\x02noterminator"s}) {
    INFO(bad);
    CHECK_THROWS_AS(parseConnect(bad), ProtocolError);
  }
  CHECK(parseStrings("<a@b>\0SIZE=1\0"s) == std::vector<std::string_view>{"<a@b>", "SIZE=1"});
  CHECK(parseStrings("").empty());
  CHECK_THROWS_AS(parseStrings("<a@b>"), ProtocolError);
  const auto m = parseMacros("Mi\0ABC\0{mail_addr}\0a@b\0"s);
  CHECK(m.stage == 'M');
  REQUIRE(m.values.size() == 2);
  CHECK(m.values[1] == std::pair<std::string, std::string>{"{mail_addr}", "a@b"});
  CHECK_THROWS_AS(parseMacros(""), ProtocolError);
  CHECK_THROWS_AS(parseMacros("Mi\0"s), ProtocolError);
  CHECK(parseHeader("Subject\0 hi\0"s) ==
        std::pair<std::string_view, std::string_view>{"Subject", " hi"});
  CHECK_THROWS_AS(parseHeader("Subject\0 hi"s), ProtocolError);
  CHECK_THROWS_AS(parseHeader("Subject\0 hi\0extra"s), ProtocolError);
  CHECK_THROWS_AS(parseNegotiation("short"), ProtocolError);
}

TEST_CASE("milter protocol: replies are encoded as libmilter sends them", "[milter]") {
  using namespace milter::protocol;
  std::string out;
  appendReplyCode(out, 550, "5.7.1", "go away");
  CHECK(out == uint32(19) + "y550 5.7.1 go away\0"s);
  out.clear();
  appendInsertHeader(out, 1, "Authentication-Results", " mx; none");
  CHECK(out == uint32(1 + 4 + 23 + 10) + "i" + uint32(1) + "Authentication-Results\0 mx; none\0"s);
  out.clear();
  appendDeleteHeader(out, 2, "X-Spam-Score");
  CHECK(out == uint32(1 + 4 + 13 + 1) + "m" + uint32(2) + "X-Spam-Score\0\0"s);

  SECTION("a refusal's code must match its kind, or the plain code is sent") {
    policies::Reply reply{451, {4, 7, 1}, "later"};
    out.clear();
    milter::appendResponse(out, {SMFIS_REJECT, reply});
    CHECK(commands(packetsIn(out)) == "r");
    out.clear();
    milter::appendResponse(out, {SMFIS_TEMPFAIL, reply});
    CHECK(out == packet(SMFIR_REPLYCODE, "451 4.7.1 later\0"s));
    out.clear();
    milter::appendResponse(out, {SMFIS_NOREPLY, std::nullopt});
    CHECK(out.empty());
  }
}

TEST_CASE("milter conversation: a clean message, as Postfix sends it", "[milter]") {
  Harness h(kReadsBody);
  const auto replies = h.send(sessionUpToEom());
  // O(ptneg) c(onnect) c(helo) c(mail) c(rcpt) c(data), no header, eoh or
  // body replies (NR_HDR, NR_EOH, NR_BODY), then our header and a(ccept).
  CHECK(commands(replies) == "Occccci"s + "a");
  const Packet& negotiated = replies.front();
  REQUIRE(negotiated.data.size() > 12);
  const std::uint32_t protocolFlags = milter::protocol::parseNegotiation(negotiated.data).protocol;
  CHECK((protocolFlags & SMFIP_NR_HDR) != 0);
  CHECK((protocolFlags & SMFIP_NR_BODY) != 0);
  CHECK((protocolFlags & SMFIP_NODATA) == 0);  // see "Nagle" in milter_server.h
  // Postfix offers SMFIF_SETSYMLIST: we name the macros we read.
  const std::uint32_t actions = milter::protocol::parseNegotiation(negotiated.data).actions;
  CHECK((actions & SMFIF_SETSYMLIST) != 0);
  CHECK(negotiated.data.find(uint32(SMFIM_CONNECT) + "{daemon_port}\0"s) == 12);
  CHECK(negotiated.data.find(uint32(SMFIM_EOM) + "i\0"s) != std::string::npos);
  CHECK(replies[6].data.find("Authentication-Results\0"s) != std::string::npos);
  REQUIRE(h.logged.size() == 1);
  CHECK(h.logged[0].action == "deliver");
  CHECK(h.logged[0].queueId == "4XyZ1");
  CHECK(h.logged[0].clientIp == "192.0.2.7");
  CHECK(h.logged[0].helo == "mx.example.org");
}

TEST_CASE("milter conversation: a refused recipient gets the rule's reply", "[milter]") {
  Harness h("rule nox on rcpt when rcpt ~ /^x@/ then reject \"550 5.7.1 no x here\"\n");
  const auto replies =
      h.send(negotiation() + connect4("192.0.2.7", 1) + packet(SMFIC_HELO, "h\0"s) +
             packet(SMFIC_MAIL, "<a@example.org>\0"s) + packet(SMFIC_RCPT, "<x@example.com>\0"s) +
             packet(SMFIC_RCPT, "<y@example.com>\0"s));
  REQUIRE(commands(replies) == "Occcyc");
  CHECK(replies[4].data == "550 5.7.1 no x here\0"s);
}

TEST_CASE("milter conversation: macros, abort and a reused connection", "[milter]") {
  Harness h("rule nothing on mail when sender ~ /^nobody@/ then reject\n");
  h.send(negotiation() + macros('C', {{"j", "mx.example"}, {"{daemon_port}", "587"}}) +
         macros('M', {{"{i}", "ABC"}}));
  CHECK(h.conversation.macro("{j}") == "mx.example");  // "{j}" and "j" are one macro
  CHECK(h.conversation.macro("i") == "ABC");
  CHECK(h.conversation.macro("{daemon_port}") == "587");
  h.send(macros('R', {{"i", "DEF"}}));
  CHECK(h.conversation.macro("i") == "DEF");  // the newest stage wins
  h.send(packet(SMFIC_ABORT));
  CHECK(h.conversation.macro("i").empty());  // transaction macros go with the transaction
  CHECK(h.conversation.macro("j") == "mx.example");
  const std::string before = h.conversation.session()->policy().session().id;
  h.send(packet(SMFIC_QUIT_NC));
  CHECK(h.conversation.session() == nullptr);
  CHECK(h.conversation.macro("j").empty());
  CHECK(h.send(connect4("192.0.2.8", 2)).size() == 1);
  REQUIRE(h.conversation.session() != nullptr);
  CHECK(h.conversation.session()->policy().session().id != before);
}

TEST_CASE("milter conversation: unknown commands and QUIT", "[milter]") {
  Harness h("rule nothing on mail when sender ~ /^nobody@/ then reject\n");
  std::string out;
  CHECK_THROWS_AS(h.conversation.handle(Packet{'Z', ""}, out), ProtocolError);
  CHECK_THROWS_AS(
      h.conversation.handle(Packet{SMFIC_OPTNEG, uint32(1) + uint32(0) + uint32(0)}, out),
      ProtocolError);  // protocol version 1
  CHECK_FALSE(h.conversation.handle(Packet{SMFIC_QUIT, ""}, out));
  CHECK(out.empty());
}

TEST_CASE("milter connection: pipelined packets over a socket, hostile length closes", "[milter]") {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  Harness h(kReadsBody);
  std::thread server([&] {
    milter::serveConnection(fds[1], h.conversation);
    ::close(fds[1]);
  });
  const std::string all = sessionUpToEom() + packet(SMFIC_QUIT);
  REQUIRE(::write(fds[0], all.data(), all.size()) == static_cast<ssize_t>(all.size()));
  std::string replies;
  char buffer[4096];
  for (ssize_t n; (n = ::read(fds[0], buffer, sizeof buffer)) > 0;) {
    replies.append(buffer, static_cast<std::size_t>(n));
  }
  server.join();
  ::close(fds[0]);
  CHECK(commands(packetsIn(replies)) == "Occccci"s + "a");

  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  Harness hostile("rule nothing on mail when sender ~ /^nobody@/ then reject\n");
  std::thread second([&] {
    milter::serveConnection(fds[1], hostile.conversation);
    ::close(fds[1]);
  });
  const std::string bad = negotiation() + uint32(0x7FFFFFFF) + "B";
  REQUIRE(::write(fds[0], bad.data(), bad.size()) == static_cast<ssize_t>(bad.size()));
  std::string got;
  for (ssize_t n; (n = ::read(fds[0], buffer, sizeof buffer)) > 0;) {
    got.append(buffer, static_cast<std::size_t>(n));
  }
  second.join();  // the server closed the connection on its own
  ::close(fds[0]);
  CHECK(commands(packetsIn(got)) == "O");
}
