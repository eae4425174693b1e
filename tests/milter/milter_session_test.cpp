// MilterSession without an MTA: every (stage x action) cell to SMFIS_* and
// reply, reply escaping, protocol negotiation, the message rebuilt from
// header/body callbacks, per-transaction state, and the decision log lines.
#include <libmilter/mfapi.h>

#include <catch2/catch.hpp>

#include "milter/milter_session.h"
#include "tests/policies/test_rules.h"

using namespace smtpgate;
using milter::MilterSession;
using milter::Response;

namespace {

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
    MilterSession s(testing::loadRules(rules), enforce(), log.fn());
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
  MilterSession s(testing::loadRules("rule ok on mail when sender ~ /^a@/ then accept\n"),
                  enforce(), nullptr);
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
  unsigned long nothing = milter::protocolFlags(all, false, false);
  CHECK((nothing & SMFIP_NOHDRS) != 0);
  CHECK((nothing & SMFIP_NOBODY) != 0);
  CHECK((nothing & SMFIP_NOEOH) != 0);
  CHECK((nothing & (SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT)) == 0);
  // No rule reads the message, but forged Authentication-Results must be
  // found: the header fields come, the body does not.
  unsigned long headersOnly = milter::protocolFlags(all, false, true);
  CHECK((headersOnly & SMFIP_NOHDRS) == 0);
  CHECK((headersOnly & SMFIP_NR_HDR) != 0);
  CHECK((headersOnly & SMFIP_HDR_LEADSPC) != 0);
  CHECK((headersOnly & SMFIP_NOBODY) != 0);
  CHECK((headersOnly & SMFIP_NOEOH) != 0);
  for (bool edits : {false, true}) {
    unsigned long message = milter::protocolFlags(all, true, edits);
    CHECK((message & (SMFIP_NOHDRS | SMFIP_NOBODY | SMFIP_NOEOH)) == 0);
    CHECK((message & SMFIP_NR_HDR) != 0);
    CHECK((message & SMFIP_HDR_LEADSPC) != 0);
    // The body needs no answer (the rules run at end of message): Postfix
    // then sends header fields, body and end of message in one write.
    CHECK((message & SMFIP_NR_BODY) != 0);
  }
  // Never SMFIP_NODATA: Postfix would send the DATA macros alone and Nagle
  // would hold the message behind them for a delayed ACK (milter_server.h).
  for (bool needsMessage : {false, true}) {
    for (bool edits : {false, true}) {
      CHECK((milter::protocolFlags(all, needsMessage, edits) & SMFIP_NODATA) == 0);
    }
  }
  // Never more than the MTA offers.
  CHECK(milter::protocolFlags(SMFIP_NOBODY, false, false) == SMFIP_NOBODY);
  CHECK(milter::protocolFlags(0, true, true) == 0);
}

TEST_CASE("header actions are asked for when the policy edits headers, as far as offered",
          "[milter]") {
  const unsigned long all = 0x1FF;
  CHECK(milter::actionFlags(all, true) == (SMFIF_ADDHDRS | SMFIF_CHGHDRS));
  CHECK(milter::actionFlags(all, false) == 0);
  CHECK(milter::actionFlags(SMFIF_ADDHDRS | SMFIF_ADDRCPT, true) == SMFIF_ADDHDRS);
  CHECK(milter::actionFlags(0, true) == 0);
}

TEST_CASE("the message is rebuilt from header and body callbacks", "[milter]") {
  MilterSession s(
      testing::loadRules("rule w on data when body ~ /buy now/ then reject \"550 5.7.1 words\"\n"),
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
  MilterSession s(testing::loadRules("rule m on mail when sender ~ /^x@/ then reject\n"), enforce(),
                  nullptr);
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
  MilterSession s(
      testing::loadRules("rule m on rcpt when rcpt ~ /^x@/ then reject \"550 5.7.1 no x\"\n"), dry,
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

namespace {

using milter::HeaderChange;

policies::PolicyOptions withAuthservId(bool dryRun = false) {
  policies::PolicyOptions o;
  o.dryRun = dryRun;
  o.authservId = "mx.test.example";
  return o;
}

/// A session as negotiated with Postfix (header actions granted, header
/// values with their leading space), connected and greeted.
void open(MilterSession& s) {
  s.setProtocolFlags(SMFIP_HDR_LEADSPC);
  s.setActionFlags(SMFIF_ADDHDRS | SMFIF_CHGHDRS);
  s.connect(rules::IpAddress::parse("192.0.2.1"), 1, 25);
  s.helo("h.example.org", {});
}

void envelope(MilterSession& s) {
  s.envelopeFrom({"<a@example.org>"});
  s.envelopeRecipient({"<b@example.com>"});
}

using Fields = std::vector<std::pair<std::string, std::string>>;

/// A whole message with these header fields, on a fresh session, to its end.
Response deliver(MilterSession& s, const Fields& incoming) {
  open(s);
  envelope(s);
  for (const auto& [name, value] : incoming) {
    s.header(name, value);
  }
  s.endOfHeaders();
  s.body("text\r\n");
  return s.endOfMessage();
}

/// Makes `changes` on `fields` the way libmilter defines them (and Postfix
/// implements them): a deletion's index counts the fields of that name from
/// 1, case-insensitively; an insertion's index counts all fields from 0.
Fields applyChanges(Fields fields, const std::vector<HeaderChange>& changes) {
  for (const auto& c : changes) {
    if (c.kind == HeaderChange::Kind::Insert) {
      fields.insert(fields.begin() + std::min<std::size_t>(c.index, fields.size()),
                    {c.name, c.value});
      continue;
    }
    int seen = 0;
    for (auto it = fields.begin(); it != fields.end(); ++it) {
      if (policies::headerNameIs(it->first, c.name) && ++seen == c.index) {
        fields.erase(it);
        break;
      }
    }
  }
  return fields;
}

}  // namespace

TEST_CASE("forged Authentication-Results are deleted last to first, ours goes below Received",
          "[milter]") {
  // Forged (ours, case and trailing dot aside), foreign, forged: deleting
  // #1 then #3 front to back would miss the second forged one.
  const Fields incoming = {
      {"Authentication-Results", " mx.test.example; spf=pass smtp.mailfrom=x@example.org"},
      {"Authentication-Results", " other.example; dkim=pass header.d=example.org"},
      {"Subject", " hi"},
      {"authentication-results", " (forged) MX.TEST.EXAMPLE.; dkim=pass header.d=paypal.com"},
  };
  // With and without a rule reading the message.
  for (const char* rules : {"rule m on mail when sender ~ /^x@/ then reject\n",
                            "rule s on data when header.subject ~ /v1agra/ then reject\n"}) {
    INFO(rules);
    MilterSession s(testing::loadRules(rules), withAuthservId(), nullptr);
    Response r = deliver(s, incoming);
    CHECK(r.status == SMFIS_ACCEPT);
    REQUIRE(r.headerChanges.size() == 3);
    CHECK(r.headerChanges[0].kind == HeaderChange::Kind::Delete);
    CHECK(policies::isAuthenticationResultsName(r.headerChanges[0].name));
    CHECK(r.headerChanges[0].index == 3);
    CHECK(r.headerChanges[1].kind == HeaderChange::Kind::Delete);
    CHECK(r.headerChanges[1].index == 1);
    CHECK(r.headerChanges[2].kind == HeaderChange::Kind::Insert);
    CHECK(r.headerChanges[2].index == milter::kInsertIndex);
    CHECK(r.headerChanges[2].name == "Authentication-Results");
    CHECK(r.headerChanges[2].value == " mx.test.example; none");  // HDR_LEADSPC: with its space

    // The MTA's own Received header, which it hides from milters, is on top.
    Fields atMta = incoming;
    atMta.insert(atMta.begin(), {"Received", " from h.example.org by mta"});
    CHECK(applyChanges(atMta, r.headerChanges) ==
          Fields{{"Received", " from h.example.org by mta"},
                 {"Authentication-Results", " mx.test.example; none"},
                 {"Authentication-Results", " other.example; dkim=pass header.d=example.org"},
                 {"Subject", " hi"}});
    // The same deletions front to back leave a forged field behind.
    std::vector<HeaderChange> wrongOrder = {r.headerChanges[1], r.headerChanges[0]};
    CHECK(applyChanges(atMta, wrongOrder).size() == 4);
  }
}

TEST_CASE("[headers] spam_score: X-Spam-Score and X-Spam-Rules added, incoming ones deleted",
          "[milter]") {
  const char* rules =
      "rule big on mail when sender ~ /@example\\.org$/ then score 2.5\n"
      "rule pills on data when header.subject ~ /v1agra/ then score 1\n";
  const Fields incoming = {
      {"X-Spam-Score", " -100"},
      {"Subject", " cheap v1agra"},
      {"x-spam-rules", " none"},
      {"X-Spam-Score ", " -50"},
  };
  for (bool on : {true, false}) {
    INFO("spam_score = " << on);
    policies::PolicyOptions options = withAuthservId();
    options.spamHeaders = on;
    MilterSession s(testing::loadRules(rules), options, nullptr);
    Response r = deliver(s, incoming);
    REQUIRE(r.status == SMFIS_ACCEPT);
    Fields atMta = incoming;
    atMta.insert(atMta.begin(), {"Received", " from h.example.org by mta"});
    Fields expected = {{"Received", " from h.example.org by mta"},
                       {"Authentication-Results", " mx.test.example; none"}};
    if (on) {
      // Ours below Authentication-Results; every incoming X-Spam-* gone
      // (the two X-Spam-Score deleted last to first).
      expected.push_back({"X-Spam-Score", " 3.5"});
      expected.push_back({"X-Spam-Rules", " big, pills"});
      expected.push_back({"Subject", " cheap v1agra"});
    } else {
      expected.insert(expected.end(), incoming.begin(), incoming.end());
    }
    CHECK(applyChanges(atMta, r.headerChanges) == expected);
  }
}

TEST_CASE("header changes only for messages let through, per message, as negotiated", "[milter]") {
  const char* dataReject = "rule s on data when header.subject ~ /v1agra/ then reject\n";
  auto runMessage = [](MilterSession& s, const char* subject) {
    envelope(s);
    s.header("Authentication-Results", " mx.test.example; dkim=pass");
    s.header("Subject", subject);
    s.endOfHeaders();
    return s.endOfMessage();
  };

  SECTION("a refused message gets none") {
    MilterSession s(testing::loadRules(dataReject), withAuthservId(), nullptr);
    open(s);
    Response r = runMessage(s, " v1agra");
    CHECK(r.status == SMFIS_REJECT);
    CHECK(r.headerChanges.empty());
  }
  SECTION("dry-run lets the message through with them") {
    MilterSession s(testing::loadRules(dataReject), withAuthservId(true), nullptr);
    open(s);
    Response r = runMessage(s, " v1agra");
    CHECK(r.status == SMFIS_ACCEPT);
    CHECK(r.headerChanges.size() == 2);
  }
  SECTION("forged fields of an aborted message are forgotten") {
    MilterSession s(testing::loadRules(dataReject), withAuthservId(), nullptr);
    open(s);
    envelope(s);
    s.header("Authentication-Results", " mx.test.example; spf=pass");
    s.abort();
    envelope(s);
    s.header("Authentication-Results", " other.example; spf=pass");
    s.endOfHeaders();
    Response r = s.endOfMessage();
    REQUIRE(r.headerChanges.size() == 1);
    CHECK(r.headerChanges[0].kind == HeaderChange::Kind::Insert);
  }
  SECTION("a new MAIL without an abort starts the count afresh") {
    MilterSession s(testing::loadRules(dataReject), withAuthservId(), nullptr);
    open(s);
    envelope(s);
    s.header("Authentication-Results", " other.example; spf=pass");
    s.header("Authentication-Results", " mx.test.example; spf=pass");
    Response r = runMessage(s, " hi");  // its MAIL comes without an abort
    REQUIRE(r.headerChanges.size() == 2);
    CHECK(r.headerChanges[0].kind == HeaderChange::Kind::Delete);
    CHECK(r.headerChanges[0].index == 1);
  }
  SECTION("only the actions the MTA granted") {
    MilterSession s(testing::loadRules(dataReject), withAuthservId(), nullptr);
    open(s);
    s.setProtocolFlags(0);  // no HDR_LEADSPC
    s.setActionFlags(SMFIF_ADDHDRS);
    Response r = runMessage(s, "hi");
    REQUIRE(r.headerChanges.size() == 1);
    CHECK(r.headerChanges[0].kind == HeaderChange::Kind::Insert);
    CHECK(r.headerChanges[0].value == "mx.test.example; none");
    s.setActionFlags(0);
    CHECK(runMessage(s, "hi").headerChanges.empty());
  }
}

TEST_CASE("an added header value is one line whatever it is built from", "[milter]") {
  policies::PolicyOptions o = withAuthservId();
  o.authservId = "mx.test.example\r\nX-Injected: yes";
  MilterSession s(testing::loadRules("rule m on mail when sender ~ /^x@/ then reject\n"), o,
                  nullptr);
  open(s);
  envelope(s);
  s.endOfHeaders();
  Response r = s.endOfMessage();
  REQUIRE(r.headerChanges.size() == 1);
  const std::string& value = r.headerChanges[0].value;
  CHECK(value.find_first_of(std::string("\r\n\0", 3)) == std::string::npos);
}
