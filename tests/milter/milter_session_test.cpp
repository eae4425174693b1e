// MilterSession without an MTA: every (stage x action) cell to SMFIS_* and
// reply, reply escaping, protocol negotiation, the message rebuilt from
// header/body callbacks, per-transaction state, and the decision log lines.
#include <libmilter/mfapi.h>

#include <catch2/catch.hpp>

#include "milter/milter_session.h"
#include "policies/list_builder.h"

using namespace smtpgate;
using milter::MilterSession;
using milter::Response;

namespace {

rules::RuleSetPtr load(const std::string& text) {
  policies::StandardListBuilder lists;
  rules::Diagnostics diags;
  auto set = rules::RuleSet::loadText(text, "test.rules", lists, diags);
  INFO(rules::format(diags));
  REQUIRE(set);
  return set;
}

struct Logged {
  std::vector<policies::DecisionRecord> lines;
  milter::LogFunction fn() {
    return [this](const policies::DecisionRecord& r) { lines.push_back(r); };
  }
};

policies::PolicyOptions enforce() {
  policies::PolicyOptions o;
  o.dryRun = false;
  return o;
}

Response runToEom(MilterSession& s, const char* rcpt = "<b@example.com>") {
  for (Response r :
       {s.connect(rules::IpAddress::parse("192.0.2.1"), 40000, 25), s.helo("mx.example.org", {}),
        s.envelopeFrom({"<a@example.org>", "SIZE=100"}), s.envelopeRecipient({rcpt})}) {
    if (r.status != SMFIS_CONTINUE) {
      return r;
    }
  }
  s.header("Subject", " cheap v1agra");
  s.header("X-Folded", " one\n\ttwo");
  s.endOfHeaders();
  s.body("buy now\r\n");
  return s.endOfMessage();
}

}  // namespace

TEST_CASE("every stage and action maps to SMFIS_* and the rule's reply", "[milter]") {
  struct Cell {
    const char* stage;
    const char* action;
    sfsistat status;
  };
  const Cell cells[] = {
      {"connect", "reject", SMFIS_REJECT},  {"connect", "tempfail", SMFIS_TEMPFAIL},
      {"connect", "accept", SMFIS_ACCEPT},  // nothing refuses later: accepted at eom
      {"helo", "reject", SMFIS_REJECT},     {"helo", "tempfail", SMFIS_TEMPFAIL},
      {"helo", "accept", SMFIS_ACCEPT},     {"mail", "reject", SMFIS_REJECT},
      {"mail", "tempfail", SMFIS_TEMPFAIL}, {"mail", "accept", SMFIS_ACCEPT},
      {"rcpt", "reject", SMFIS_REJECT},     {"rcpt", "tempfail", SMFIS_TEMPFAIL},
      {"rcpt", "accept", SMFIS_ACCEPT},     {"data", "reject", SMFIS_REJECT},
      {"data", "tempfail", SMFIS_TEMPFAIL}, {"data", "accept", SMFIS_ACCEPT},
  };
  for (const auto& c : cells) {
    std::string action = c.action;
    std::string reply = action == "reject"     ? " \"553 5.7.1 No 100% $rule\""
                        : action == "tempfail" ? " \"450 4.7.1 Later\""
                                               : "";
    std::string rules = std::string("rule r1 on ") + c.stage +
                        " when client.ip == 192.0.2.1 then " + action + reply + "\n";
    INFO(rules);
    Logged log;
    MilterSession s(load(rules), enforce(), log.fn());
    Response r = runToEom(s);
    CHECK(r.status == c.status);
    if (action == "reject") {
      REQUIRE(r.reply);
      CHECK(r.reply->code == 553);
      CHECK(r.reply->esc.toString() == "5.7.1");
      CHECK(r.reply->text == "No 100% r1");
      CHECK(milter::escapeReplyText(r.reply->text) == "No 100%% r1");
    } else if (action == "tempfail") {
      REQUIRE(r.reply);
      CHECK(r.reply->code == 450);
    } else {
      CHECK_FALSE(r.reply);
    }
  }
}

TEST_CASE("accept before end of data keeps the MTA talking to us", "[milter]") {
  MilterSession s(load("rule ok on mail when sender ~ /^a@/ then accept\n"), enforce(), nullptr);
  CHECK(s.connect(rules::IpAddress::parse("192.0.2.1"), 1, 25).status == SMFIS_CONTINUE);
  CHECK(s.envelopeFrom({"<a@example.org>"}).status == SMFIS_CONTINUE);
}

TEST_CASE("reply text is escaped, control characters removed, length bounded", "[milter]") {
  CHECK(milter::escapeReplyText("50% off") == "50%% off");
  CHECK(milter::escapeReplyText("a\r\nb\tc") == "a  b c");
  std::string longText(2000, 'x');
  longText += "\xC3\xA9";
  CHECK(milter::escapeReplyText(longText).size() == milter::kMaxReplyTextBytes);
  std::string utf8;
  for (int i = 0; i < 600; ++i) {
    utf8 += "\xC3\xA9";  // é, two bytes
  }
  std::string cut = milter::escapeReplyText(utf8);
  CHECK(cut.size() == milter::kMaxReplyTextBytes);
  CHECK((static_cast<unsigned char>(cut.back()) & 0xC0) == 0x80);  // ends on a whole é
}

TEST_CASE("protocol flags switch off what the rules don't need", "[milter]") {
  const unsigned long all = 0x001FFFFF;
  unsigned long noMessage = milter::protocolFlags(all, false);
  CHECK((noMessage & SMFIP_NOHDRS) != 0);
  CHECK((noMessage & SMFIP_NOBODY) != 0);
  CHECK((noMessage & SMFIP_NOEOH) != 0);
  CHECK((noMessage & (SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT)) == 0);
  unsigned long message = milter::protocolFlags(all, true);
  CHECK((message & (SMFIP_NOHDRS | SMFIP_NOBODY | SMFIP_NOEOH)) == 0);
  CHECK((message & SMFIP_NR_HDR) != 0);
  CHECK((message & SMFIP_HDR_LEADSPC) != 0);
  // Never more than the MTA offers.
  CHECK(milter::protocolFlags(SMFIP_NOBODY, false) == SMFIP_NOBODY);
  CHECK(milter::protocolFlags(0, true) == 0);
}

TEST_CASE("the message is rebuilt from header and body callbacks", "[milter]") {
  MilterSession s(load("rule w on data when body ~ /buy now/ then reject \"550 5.7.1 words\"\n"),
                  enforce(), nullptr);
  s.setProtocolFlags(SMFIP_HDR_LEADSPC);
  s.connect(rules::IpAddress::parse("192.0.2.1"), 1, 25);
  s.envelopeFrom({"<a@example.org>"});
  s.envelopeRecipient({"<b@example.com>"});
  s.header("Subject", " hi");
  s.header("X-Folded", " one\n\ttwo");
  s.endOfHeaders();
  CHECK(s.body("buy now\r\n"));
  CHECK(s.message() == "Subject: hi\r\nX-Folded: one\r\n\ttwo\r\n\r\nbuy now\r\n");
  CHECK(s.endOfMessage().status == SMFIS_REJECT);
  CHECK(s.message().empty());  // the transaction is over
}

TEST_CASE("no rule reads the message: nothing is kept, the body is skipped", "[milter]") {
  MilterSession s(load("rule m on mail when sender ~ /^x@/ then reject\n"), enforce(), nullptr);
  s.connect(rules::IpAddress::parse("192.0.2.1"), 1, 25);
  s.envelopeFrom({"<a@example.org>"});
  s.header("Subject", "hi");
  CHECK_FALSE(s.body("text\r\n"));
  CHECK(s.message().empty());
}

TEST_CASE("log lines: refusals, would-be refusals and deliveries, with the queue id", "[milter]") {
  Logged log;
  policies::PolicyOptions dry;
  dry.dryRun = true;
  MilterSession s(load("rule m on rcpt when rcpt ~ /^x@/ then reject \"550 5.7.1 no x\"\n"), dry,
                  log.fn());
  s.connect(rules::IpAddress::parse("192.0.2.1"), 1, 25);
  s.helo("h.example.org", {});
  s.envelopeFrom({"<a@example.org>"});
  s.setQueueId("4ABCDEF");
  CHECK(s.envelopeRecipient({"<x@example.com>"}).status == SMFIS_CONTINUE);  // dry-run
  CHECK(s.endOfMessage().status == SMFIS_ACCEPT);
  REQUIRE(log.lines.size() == 2);
  CHECK(log.lines[0].action == "would-reject");
  CHECK(log.lines[0].frontend == "milter");
  CHECK(log.lines[0].queueId == "4ABCDEF");
  CHECK(log.lines[0].rcpts == std::vector<std::string>{"x@example.com"});
  CHECK(log.lines[1].action == "deliver");
  CHECK(log.lines[1].queueId == "4ABCDEF");
  CHECK(log.lines[1].helo == "h.example.org");

  // The next transaction starts without the old queue id.
  s.envelopeFrom({"<a@example.org>"});
  s.envelopeRecipient({"<y@example.com>"});
  s.abort();
  s.envelopeFrom({"<a@example.org>"});
  s.envelopeRecipient({"<y@example.com>"});
  s.endOfMessage();
  REQUIRE(log.lines.size() == 3);
  CHECK(log.lines[2].queueId.empty());
  CHECK(log.lines[2].rcpts == std::vector<std::string>{"y@example.com"});
}
