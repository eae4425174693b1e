// smtpgate replay's engine: the envelope a decision line keeps (transaction,
// rcpts_passed, rcpts_backend_refused, facts), and LogReplay rebuilding logged
// sessions and running them against candidate rules. Sessions are "logged"
// the way the proxy logs them (refusals, would-be refusals, deliveries),
// through toJsonLine and parseDecisionLine, so the format is part of the test.
#include "policies/log_replay.h"

#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <vector>

#include "policies/decision_log.h"
#include "policies/list_builder.h"
#include "policies/recorded_facts.h"
#include "tests/policies/test_resolver.h"
#include "tests/policies/test_rules.h"
#include "tests/support/unbound_server.h"

namespace smtpgate::policies {
namespace {

using rules::Stage;

const char* kMessage = "From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n";

/// One client session as the proxy sees it.
struct Dialog {
  std::string id;
  std::string ip = "192.0.2.1";
  std::string helo = "mx.example.org";
  struct Tx {
    std::string sender;
    std::vector<std::string> rcpts;
    std::set<std::string> backendRefuses = {};
    bool data = true;
  };
  std::vector<Tx> transactions;
};

LogEntry entryOf(const DecisionRecord& r) {
  LogEntry e;
  REQUIRE(parseDecisionLine(toJsonLine(r), e) == LineParse::Ok);
  return e;
}

/// Runs `d` on the live rules and logs it like SmtpSession does.
std::vector<LogEntry> live(const rules::RuleSetPtr& rules, const Dialog& d, int second = 0,
                           PolicyOptions options = {false, "proxy"}) {
  std::vector<LogEntry> lines;
  Policy p(rules, d.id, std::move(options));
  const auto at = std::chrono::system_clock::time_point{} + std::chrono::hours(24 * 20000) +
                  std::chrono::seconds(second);
  const auto log = [&](const Verdict& v, const char* action = nullptr) {
    if (v.refuses() || v.wouldBe || action != nullptr) {
      DecisionRecord r = p.record(v);
      r.time = at + std::chrono::milliseconds(lines.size());
      if (action != nullptr) {
        r.action = action;
      }
      lines.push_back(entryOf(r));
    }
  };
  Verdict v = p.onConnect({*rules::IpAddress::parse(d.ip), 40000, 25});
  log(v);
  if (v.refuses()) {
    return lines;
  }
  v = p.onHelo(d.helo);
  log(v);
  if (v.refuses()) {
    return lines;
  }
  for (const Dialog::Tx& tx : d.transactions) {
    v = p.onMail(tx.sender);
    log(v);
    if (v.refuses()) {
      continue;
    }
    std::size_t accepted = 0;
    for (const std::string& rcpt : tx.rcpts) {
      v = p.onRcpt(rcpt);
      log(v);
      if (!v.refuses() && tx.backendRefuses.count(rcpt) != 0) {
        p.dropLastRcpt();
      } else if (!v.refuses()) {
        ++accepted;
      }
    }
    if (tx.data && accepted > 0) {
      v = p.onEndOfData(kMessage);
      log(v);
      if (!v.refuses()) {
        log(v, "deliver");
      }
    }
    p.onReset();
  }
  return lines;
}

struct Replayed {
  std::vector<ReplayedSession> sessions;
  ReplaySummary summary;
  const ReplayedSession& get(const std::string& id) const {
    for (const auto& s : sessions) {
      if (s.id == id) {
        return s;
      }
    }
    FAIL("no session " << id);
    return sessions.front();
  }
};

Replayed replay(const rules::RuleSetPtr& candidate, const std::vector<LogEntry>& lines) {
  Replayed out;
  LogReplay r({candidate}, [&](ReplayedSession&& s) {
    out.summary.add(s);
    out.sessions.push_back(std::move(s));
  });
  for (const LogEntry& e : lines) {
    r.add(e);
  }
  r.finish();
  return out;
}

void append(std::vector<LogEntry>& all, const std::vector<LogEntry>& more) {
  all.insert(all.end(), more.begin(), more.end());
}

const char* kBase =
    "rule blocked on connect when client.ip == 192.0.2.66 then reject \"554 5.7.1 blocked\"\n"
    "rule no-relay on rcpt when rcpt.domain != \"our.example\" then reject \"554 5.7.1 Relay "
    "access denied\"\n";
const char* kBulk =
    "rule bulk on mail when sender ~ /@bulk\\.example$/i then reject \"550 5.7.1 Bulk mail "
    "refused\"\n";

}  // namespace

TEST_CASE("replay: a decision line keeps the envelope", "[replay]") {
  auto rules = testing::loadRules(std::string(kBase) +
                                  "rule watch on rcpt when rcpt ~ /^w@/ then monitor reject\n");
  Policy p(rules, "E1", {false, "proxy"});
  p.onConnect({*rules::IpAddress::parse("192.0.2.7"), 40123, 587, true});
  p.onHelo("h.example", {true, "TLSv1.3", "TLS_AES_128_GCM_SHA256"});
  p.onMail("s@example.org", 1234);
  CHECK_FALSE(p.onRcpt("a@our.example").refuses());
  CHECK_FALSE(p.onRcpt("gone@our.example").refuses());
  p.dropLastRcpt();  // the backend refused it
  Verdict watched = p.onRcpt("w@our.example");
  REQUIRE(watched.wouldBe);
  DecisionRecord first = p.record(watched);
  CHECK(first.transaction == 1);
  CHECK(first.rcpts == std::vector<std::string>{"w@our.example"});
  CHECK(first.rcptsPassed == std::vector<std::string>{"a@our.example", "gone@our.example"});
  CHECK(first.rcptsBackendRefused == std::vector<std::string>{"gone@our.example"});
  CHECK(first.facts == std::vector<std::string>{"client.port=40123", "local.port=587",
                                                "pregreet=true", "tls=true", "tls.version=TLSv1.3",
                                                "tls.cipher=TLS_AES_128_GCM_SHA256",
                                                "mail.size=1234"});
  Verdict refused = p.onRcpt("x@elsewhere.example");
  REQUIRE(refused.refuses());
  DecisionRecord second = p.record(refused);  // what the first line carried is not repeated
  CHECK(second.rcptsPassed.empty());
  CHECK(second.rcptsBackendRefused.empty());
  CHECK(second.rcpts == std::vector<std::string>{"x@elsewhere.example"});

  const std::string line = toJsonLine(first);
  CHECK_THAT(line, Catch::Contains(R"("score_rules":[],"transaction":1,"rcpts_passed":)"));
  LogEntry e;
  REQUIRE(parseDecisionLine(line, e) == LineParse::Ok);
  CHECK(e.record.transaction == 1);
  CHECK(e.record.rcptsPassed == first.rcptsPassed);
  CHECK(e.record.rcptsBackendRefused == first.rcptsBackendRefused);
  CHECK(e.record.facts == first.facts);
  CHECK(scanDecisionLine(line, e, kAllLogFields));  // the fast path reads the new keys too
}

TEST_CASE("replay: recorded facts are read back by type", "[replay]") {
  RecordedFacts f;
  f.addItems({"client.port=40123", "pregreet=false", "client.ptr=", "client.fcrdns=maybe",
              "mail.size=12e3", "tls.cipher=A=B", "dnsbl:2.0.0.127.bl.example=127.0.0.2,127.0.0.4",
              "dnsbl:3.0.0.127.bl.example=", "future.fact=1", "no equals sign"});
  f.addSpf("softfail");
  CHECK(std::get<double>(*f.find(rules::FieldId::ClientPort)) == 40123);
  CHECK(std::get<bool>(*f.find(rules::FieldId::Pregreet)) == false);
  CHECK(std::get<std::string>(*f.find(rules::FieldId::ClientPtr)).empty());  // known: no PTR
  CHECK(f.find(rules::FieldId::ClientFcrdns) == nullptr);  // not a boolean: unknown
  CHECK(std::get<double>(*f.find(rules::FieldId::MailSize)) == 12000);
  CHECK(std::get<std::string>(*f.find(rules::FieldId::TlsCipher)) == "A=B");
  CHECK(std::get<std::string>(*f.find(rules::FieldId::Spf)) == "softfail");
  CHECK(std::get<std::string>(*f.find(rules::FieldId::SpfExplanation)).empty());
  CHECK(f.dnsbl.at("2.0.0.127.bl.example") == std::vector<std::string>{"127.0.0.2", "127.0.0.4"});
  CHECK(f.dnsbl.at("3.0.0.127.bl.example").empty());
  CHECK(factItem("mail.size", 52428800.0) == "mail.size=52428800");
  CHECK(dnsblItem("q.bl", {"127.0.0.2", "127.0.0.3"}) == "dnsbl:q.bl=127.0.0.2,127.0.0.3");
}

TEST_CASE("replay: one added rule changes exactly the sessions it matches", "[replay]") {
  auto base = testing::loadRules(kBase);
  std::vector<LogEntry> lines;
  append(lines,
         live(base, {"S1", "192.0.2.1", "a.example", {{"news@bulk.example", {"u@our.example"}}}}));
  append(lines,
         live(base, {"S2", "192.0.2.2", "b.example", {{"alice@fine.example", {"u@our.example"}}}}));
  append(lines,
         live(base, {"S3", "192.0.2.66", "c.example", {{"x@bulk.example", {"u@our.example"}}}}));
  append(lines, live(base, {"S4",
                            "192.0.2.4",
                            "d.example",
                            {{"deals@BULK.example", {"v@other.example", "u@our.example"}}}}));
  append(lines,
         live(base, {"S5", "192.0.2.5", "e.example", {{"bob@fine.example", {"v@other.example"}}}}));
  append(lines, live(base, {"S6",
                            "192.0.2.6",
                            "f.example",
                            {{"bob@fine.example", {"u@our.example"}},
                             {"promo@bulk.example", {"w@our.example"}}}}));

  const Replayed r = replay(testing::loadRules(std::string(kBase) + kBulk), lines);
  CHECK(r.summary.sessions == 6);
  CHECK(r.summary.count(ReplayKind::NewlyRefused) == 3);
  CHECK(r.summary.count(ReplayKind::Unchanged) == 3);
  CHECK(r.summary.changed() == 3);
  CHECK(r.summary.refusedByRule == std::map<std::string, std::uint64_t>{{"bulk", 3}});
  CHECK(r.summary.acceptedByRule.empty());

  const ReplayedSession& s1 = r.get("S1");
  CHECK(s1.kind == ReplayKind::NewlyRefused);
  CHECK(s1.clientIp == "192.0.2.1");
  CHECK(s1.sender == "news@bulk.example");
  REQUIRE(s1.changes.size() == 1);
  CHECK(s1.changes[0].stage == Stage::Mail);
  CHECK(s1.changes[0].subject == "news@bulk.example");
  CHECK(s1.changes[0].before == ReplayOutcome{});
  CHECK(s1.changes[0].after == ReplayOutcome{"reject", "bulk", "550 5.7.1 Bulk mail refused"});
  // S4's refused recipient is never reached now: it is no "newly accepted".
  const ReplayedSession& s4 = r.get("S4");
  REQUIRE(s4.changes.size() == 1);
  CHECK(s4.changes[0].stage == Stage::Mail);
  // S6: only its second transaction changes.
  const ReplayedSession& s6 = r.get("S6");
  REQUIRE(s6.changes.size() == 1);
  CHECK(s6.changes[0].subject == "promo@bulk.example");
  CHECK(r.get("S3").kind == ReplayKind::Unchanged);  // refused at connect before and after
  CHECK(r.get("S5").kind == ReplayKind::Unchanged);

  SECTION("replayed against the live rules, nothing changes") {
    const Replayed same = replay(base, lines);
    CHECK(same.summary.count(ReplayKind::Unchanged) == 6);
    CHECK(same.summary.changed() == 0);
  }
  SECTION("dropping a rule accepts what it refused") {
    const Replayed fewer =
        replay(testing::loadRules("rule blocked on connect when client.ip == 192.0.2.66 then "
                                  "reject \"554 5.7.1 blocked\"\n"),
               lines);
    CHECK(fewer.summary.count(ReplayKind::NewlyAccepted) == 2);  // S4 and S5
    CHECK(fewer.summary.acceptedByRule == std::map<std::string, std::uint64_t>{{"no-relay", 2}});
    const ReplayedSession& s5 = fewer.get("S5");
    REQUIRE(s5.changes.size() == 1);
    CHECK(s5.changes[0].stage == Stage::Rcpt);
    CHECK(s5.changes[0].subject == "v@other.example");
    CHECK(s5.changes[0].before.action == "reject");
    CHECK(s5.changes[0].after == ReplayOutcome{});
  }
  SECTION("an accept before a refusal lifts it, with the reason") {
    const Replayed ok = replay(
        testing::loadRules("rule trusted on connect when client.ip == 192.0.2.5 then accept\n" +
                           std::string(kBase)),
        lines);
    CHECK(ok.summary.count(ReplayKind::NewlyAccepted) == 1);
    REQUIRE(ok.get("S5").changes.size() == 1);
    CHECK(ok.get("S5").changes[0].note == "a rule accepted this session earlier");
  }
  SECTION("a monitor rule is a change, not a refusal") {
    const Replayed m =
        replay(testing::loadRules(std::string(kBase) +
                                  "rule watch on helo when helo == \"b.example\" then monitor "
                                  "reject\n"),
               lines);
    CHECK(m.summary.count(ReplayKind::Changed) == 1);
    CHECK(m.summary.count(ReplayKind::NewlyRefused) == 0);
    REQUIRE(m.get("S2").changes.size() == 1);
    CHECK(m.get("S2").changes[0].after.action == "would-reject");
  }
}

TEST_CASE("replay: recipients the backend refused stay out of rcpt.count", "[replay]") {
  auto none =
      testing::loadRules("rule nothing on connect when client.ip == 198.51.100.1 then reject\n");
  // x passes, y passes the rules but the backend refuses it, z passes: z was
  // the second recipient the transaction held, not the third.
  const auto lines = live(none, {"R1",
                                 "192.0.2.1",
                                 "h.example",
                                 {{"s@example.org",
                                   {"x@our.example", "y@our.example", "z@our.example"},
                                   {"y@our.example"}}}});
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].record.rcptsBackendRefused == std::vector<std::string>{"y@our.example"});
  const auto many = testing::loadRules("rule many on rcpt when rcpt.count > 2 then reject\n");
  CHECK(replay(many, lines).get("R1").kind == ReplayKind::Unchanged);
  // Without the backend's refusal on record, z would be the third.
  std::vector<LogEntry> unaware = lines;
  unaware[0].record.rcptsBackendRefused.clear();
  const Replayed r = replay(many, unaware);
  const ReplayedSession& s = r.get("R1");
  REQUIRE(s.changes.size() == 1);
  CHECK(s.changes[0].subject == "z@our.example");
  CHECK(s.changes[0].kind == ReplayKind::NewlyRefused);
}

TEST_CASE("replay: a recipient refused by max_recipients is not judged by the rules", "[replay]") {
  auto none =
      testing::loadRules("rule nothing on connect when client.ip == 198.51.100.1 then reject\n");
  // Live: x passes the rules, y meets the proxy's max_recipients (logged as
  // SmtpSession::logLimit does), the message with x is delivered.
  Policy p(none, "L1", {false, "proxy"});
  p.onConnect({*rules::IpAddress::parse("192.0.2.1"), 40000, 25});
  p.onHelo("h.example");
  p.onMail("s@example.org");
  REQUIRE_FALSE(p.onRcpt("x@our.example").refuses());
  Verdict limit;
  limit.action = Action::Tempfail;
  limit.stage = Stage::Rcpt;
  limit.reply = Reply{452, {4, 5, 3}, "Error: too many recipients"};
  limit.ruleId = limit_rule::kMaxRecipients;
  DecisionRecord limited = p.record(limit);
  limited.rcpts = {"y@our.example"};
  CHECK(refusedByLimit(limited));
  Verdict delivered = p.onEndOfData(kMessage);
  DecisionRecord delivery = p.record(delivered);
  delivery.action = "deliver";
  const std::vector<LogEntry> lines = {entryOf(limited), entryOf(delivery)};

  // A candidate that refuses y changes nothing: the limit refused it first.
  auto refusesY =
      testing::loadRules("rule no-y on rcpt when rcpt == \"y@our.example\" then reject\n");
  CHECK(replay(refusesY, lines).get("L1").kind == ReplayKind::Unchanged);
  // A rule of the admin's that happens to have a limit's name is a rule.
  DecisionRecord named = limited;
  named.ruleWhere = "local.rules:3";
  CHECK_FALSE(refusedByLimit(named));
}

TEST_CASE("replay: facts the log lacks make a session undecidable, recorded ones decide",
          "[replay]") {
  auto base = testing::loadRules(kBase);
  std::vector<LogEntry> lines =
      live(base, {"U1", "192.0.2.1", "h.example", {{"s@example.org", {"u@our.example"}}}});
  REQUIRE(lines.size() == 1);  // the delivery
  const auto ptrRule =
      testing::loadRules("rule no-ptr on connect when not client.ptr then reject\n");
  const Replayed unknown = replay(ptrRule, lines);
  const ReplayedSession& u = unknown.get("U1");
  CHECK(u.kind == ReplayKind::Undecidable);
  CHECK(u.undecidableStage == "connect");
  CHECK(u.missingFacts == std::vector<std::string>{"client.ptr"});
  CHECK(unknown.summary.missingFacts == std::map<std::string, std::uint64_t>{{"client.ptr", 1}});

  SECTION("a rule that does not need the fact to decide") {
    const Replayed r = replay(
        testing::loadRules(
            "rule no-ptr on connect when client.ip == 10.0.0.1 and not client.ptr then reject\n"),
        lines);
    CHECK(r.get("U1").kind == ReplayKind::Unchanged);
  }
  SECTION("a recorded PTR decides") {
    lines[0].record.facts.push_back("client.ptr=");  // looked up live: no PTR
    const Replayed r = replay(ptrRule, lines);
    CHECK(r.get("U1").kind == ReplayKind::NewlyRefused);
  }
  SECTION("DNSBL answers as recorded") {
    const auto bl = testing::loadRules(
        "list bl dnsbl \"bl.example\"\n"
        "rule listed on connect when client.ip in @bl:127.0.0.2 then reject\n");
    const Replayed missing = replay(bl, lines);
    CHECK(missing.get("U1").missingFacts == std::vector<std::string>{"dnsbl:1.2.0.192.bl.example"});
    lines[0].record.facts.push_back("dnsbl:1.2.0.192.bl.example=127.0.0.2");
    CHECK(replay(bl, lines).get("U1").kind == ReplayKind::NewlyRefused);
    lines[0].record.facts.back() = "dnsbl:1.2.0.192.bl.example=";  // not listed
    CHECK(replay(bl, lines).get("U1").kind == ReplayKind::Unchanged);
  }
  SECTION("an SPF result the log kept") {
    const auto spf = testing::loadRules("rule spf-fail on mail when spf == fail then reject\n");
    CHECK(replay(spf, lines).get("U1").missingFacts == std::vector<std::string>{"spf"});
    lines[0].record.spf = "fail";
    CHECK(replay(spf, lines).get("U1").kind == ReplayKind::NewlyRefused);
  }
}

TEST_CASE("replay: old lines, check lines and a DNSBL list recorded live", "[replay]") {
  auto base = testing::loadRules(kBase);
  std::vector<LogEntry> lines =
      live(base, {"O1", "192.0.2.5", "h.example", {{"s@example.org", {"v@other.example"}}}});
  REQUIRE(lines.size() == 1);
  lines[0].record.facts.clear();  // as written before the envelope keys existed
  lines[0].record.transaction = 0;
  std::vector<LogEntry> checked =
      live(base, {"C1", "192.0.2.5", "h.example", {{"s@example.org", {"v@other.example"}}}});
  checked[0].record.frontend = "check";
  lines.push_back(checked[0]);
  Replayed r;
  LogReplay engine({testing::loadRules(kBase)}, [&](ReplayedSession&& s) {
    r.summary.add(s);
    r.sessions.push_back(std::move(s));
  });
  for (const LogEntry& e : lines) {
    engine.add(e);
  }
  engine.finish();
  CHECK(engine.checkLines() == 1);
  CHECK(r.summary.sessions == 1);
  CHECK(r.get("O1").kind == ReplayKind::NotReplayable);
}

TEST_CASE("replay: another client with the same session id is another session", "[replay]") {
  auto base = testing::loadRules(kBase);
  std::vector<LogEntry> lines =
      live(base, {"SAME", "192.0.2.5", "h", {{"s@x.org", {"v@other.example"}}}}, 0);
  append(lines, live(base, {"SAME", "192.0.2.6", "h", {{"s@y.org", {"v@other.example"}}}}, 10));
  const Replayed r = replay(testing::loadRules(std::string(kBase) + kBulk), lines);
  CHECK(r.summary.sessions == 2);
  CHECK(r.summary.count(ReplayKind::Unchanged) == 2);
}

TEST_CASE("replay: sessions idle past the horizon are replayed as the log goes on", "[replay]") {
  auto base = testing::loadRules(kBase);
  std::vector<std::string> done;
  LogReplay engine({base, {}, std::chrono::seconds(60)},
                   [&](ReplayedSession&& s) { done.push_back(s.id); });
  for (const auto& e :
       live(base, {"H1", "192.0.2.5", "h", {{"s@x.org", {"v@other.example"}}}}, 0)) {
    engine.add(e);
  }
  for (const auto& e :
       live(base, {"H2", "192.0.2.5", "h", {{"s@x.org", {"v@other.example"}}}}, 30)) {
    engine.add(e);
  }
  CHECK(done.empty());
  for (const auto& e :
       live(base, {"H3", "192.0.2.5", "h", {{"s@x.org", {"v@other.example"}}}}, 200)) {
    engine.add(e);
  }
  CHECK(std::set<std::string>(done.begin(), done.end()) == std::set<std::string>{"H1", "H2"});
  engine.finish();
  CHECK(done.size() == 3);
}

TEST_CASE("replay: DNS facts a live rule got are logged, and replayed without DNS",
          "[replay][dns]") {
  SKIP_WITHOUT_UNBOUND();
  testing::UnboundServer dns;
  dns.addRecord("9.113.0.203.in-addr.arpa. PTR mail.example.org.");
  dns.addRecord("mail.example.org. A 203.0.113.9");
  dns.addRecord("9.113.0.203.bl.example. A 127.0.0.2");
  dns.start();
  auto resolver = testing::resolverFor(dns.address());
  const char* liveRules =
      "list bl dnsbl \"bl.example\"\n"
      "rule no-fcrdns on connect when not client.fcrdns then reject\n"
      "rule listed-9 on connect when client.ip in @bl:127.0.0.9 then reject\n";
  StandardListBuilder lists(resolver);
  rules::Diagnostics diags;
  auto rules = rules::RuleSet::loadText(liveRules, "live.rules", lists, diags);
  REQUIRE(rules);
  PolicyOptions options{false, "proxy"};
  options.resolver = resolver;
  const auto lines =
      live(rules, {"D1", "203.0.113.9", "mail.example.org", {{"s@example.org", {"u@our.example"}}}},
           0, options);
  REQUIRE(lines.size() == 1);  // delivered: nothing refused it
  const DecisionRecord& r = lines[0].record;
  CHECK(r.clientPtr == "mail.example.org");
  CHECK_THAT(r.facts,
             Catch::VectorContains(std::string("client.ptr=mail.example.org")) &&
                 Catch::VectorContains(std::string("client.fcrdns=true")) &&
                 Catch::VectorContains(std::string("dnsbl:9.113.0.203.bl.example=127.0.0.2")));

  dns.stop();  // replay asks nobody
  const Replayed listed =
      replay(testing::loadRules("list bl dnsbl \"bl.example\"\n"
                                "rule listed on connect when client.ip in @bl then reject\n"),
             lines);
  CHECK(listed.get("D1").kind == ReplayKind::NewlyRefused);
  const Replayed byName = replay(
      testing::loadRules(
          "rule mail-ptr on helo when client.ptr ~ /^mail\\./ and client.fcrdns then reject\n"),
      lines);
  CHECK(byName.get("D1").kind == ReplayKind::NewlyRefused);
  CHECK(replay(rules, lines).get("D1").kind == ReplayKind::Unchanged);
}

}  // namespace smtpgate::policies
