// Policy semantics: stage order, first terminal rule, accept scope, scores
// and thresholds, monitor and dry-run, default replies, unavailable facts.
#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "policies/policy.h"
#include "tests/policies/test_rules.h"

using namespace smtpgate;
using policies::Action;
using policies::Policy;
using policies::Verdict;
using rules::Stage;

namespace {

policies::ConnectInfo client(const char* ip) {
  return {*rules::IpAddress::parse(ip), 40000, 25};
}

const char* kMessage =
    "From: a@example.org\r\nTo: b@example.com\r\nSubject: cheap v1agra\r\n"
    "Message-ID: <m1@example.org>\r\n\r\nbuy now\r\n";

/// Runs a whole transaction and returns the first refusal, else the data verdict.
Verdict transaction(Policy& p, const char* rcpt = "b@example.com") {
  for (auto v : {p.onConnect(client("192.0.2.1")), p.onHelo("mx.example.org"),
                 p.onMail("a@example.org"), p.onRcpt(rcpt)}) {
    if (v.refuses()) {
      return v;
    }
  }
  return p.onEndOfData(kMessage);
}

}  // namespace

TEST_CASE("every stage and action maps to the right verdict and reply class", "[policy]") {
  struct Cell {
    const char* stage;
    const char* action;
    Action expected;
    int replyClass;
    bool disconnect;
  };
  const Cell cells[] = {
      {"connect", "reject", Action::Reject, 5, true},
      {"connect", "tempfail", Action::Tempfail, 4, true},
      {"connect", "accept", Action::Accept, 0, false},
      {"helo", "reject", Action::Reject, 5, false},
      {"helo", "tempfail", Action::Tempfail, 4, false},
      {"helo", "accept", Action::Accept, 0, false},
      {"mail", "reject", Action::Reject, 5, false},
      {"mail", "tempfail", Action::Tempfail, 4, false},
      {"mail", "accept", Action::Accept, 0, false},
      {"rcpt", "reject", Action::Reject, 5, false},
      {"rcpt", "tempfail", Action::Tempfail, 4, false},
      {"rcpt", "accept", Action::Accept, 0, false},
      {"data", "reject", Action::Reject, 5, false},
      {"data", "tempfail", Action::Tempfail, 4, false},
      {"data", "accept", Action::Accept, 0, false},
  };
  for (const auto& c : cells) {
    std::string text = std::string("rule r1 on ") + c.stage + " when client.ip == 192.0.2.1 then " +
                       c.action + "\n";
    Policy p(testing::loadRules(text), "ABCD1234");
    Verdict v;
    for (auto stage : {p.onConnect(client("192.0.2.1")), p.onHelo("h"), p.onMail("a@b.c"),
                       p.onRcpt("x@y.z"), p.onEndOfData(kMessage)}) {
      if (stage.action != Action::Continue) {
        v = stage;
        break;
      }
    }
    INFO(c.stage << " " << c.action);
    CHECK(v.action == c.expected);
    CHECK(toString(v.stage) == std::string(c.stage));
    CHECK(v.ruleId == "r1");
    CHECK(v.disconnect == c.disconnect);
    if (c.replyClass != 0) {
      REQUIRE(v.reply);
      CHECK(v.reply->code / 100 == c.replyClass);
      CHECK(v.reply->esc.klass == c.replyClass);
      CHECK_THAT(v.reply->text, Catch::Contains("ABCD1234"));  // default replies quote the session
    } else {
      CHECK_FALSE(v.reply);
    }
  }
}

TEST_CASE("default replies are 554/421 at connect and 550/451 elsewhere", "[policy]") {
  CHECK(policies::Reply::defaultFor(Action::Reject, Stage::Connect).code() == 554);
  CHECK(policies::Reply::defaultFor(Action::Tempfail, Stage::Connect).code() == 421);
  CHECK(policies::Reply::defaultFor(Action::Reject, Stage::Mail).code() == 550);
  CHECK(policies::Reply::defaultFor(Action::Tempfail, Stage::Rcpt).code() == 451);
}

TEST_CASE("the first terminal rule of a stage wins, in file order", "[policy]") {
  Policy p(testing::loadRules("rule a on mail when sender ~ /@example/ then tempfail\n"
                              "rule b on mail when sender ~ /@example/ then reject\n"),
           "S1");
  p.onConnect(client("192.0.2.1"));
  p.onHelo("h");
  Verdict v = p.onMail("x@example.org");
  CHECK(v.action == Action::Tempfail);
  CHECK(v.ruleId == "a");
  CHECK(v.ruleWhere == "test.rules:1");
  CHECK(p.transaction() == nullptr);  // a refused MAIL starts no transaction
}

TEST_CASE("reply templates expand variables", "[policy]") {
  Policy p(testing::loadRules(
               "rule r on rcpt when rcpt ~ /^bad@/ then reject \"550 5.1.1 $rcpt from $sender "
               "via $client_ip refused by $rule ($session)\"\n"),
           "S2");
  p.onConnect(client("2001:db8::7"));
  p.onHelo("h");
  p.onMail("s@example.org");
  Verdict v = p.onRcpt("bad@example.com");
  REQUIRE(v.reply);
  CHECK(v.reply->line() ==
        "550 5.1.1 bad@example.com from s@example.org via 2001:db8::7 refused by r (S2)");
  CHECK(p.onRcpt("good@example.com").action == Action::Continue);
  CHECK(p.transaction()->rcpts == std::vector<std::string>{"good@example.com"});
}

TEST_CASE("accept at connect or helo covers the whole session", "[policy]") {
  for (const char* stage : {"connect", "helo"}) {
    Policy p(testing::loadRules(std::string("rule ok on ") + stage +
                                " when client.ip == 192.0.2.1 then accept\n"
                                "rule no on mail when sender ~ /./ then reject\n"
                                "rule no2 on data when body ~ /buy/ then reject\n"),
             "S3");
    Verdict v = transaction(p);
    INFO(stage);
    CHECK(v.action == Action::Continue);
    // A second transaction in the same session is covered too.
    CHECK(p.onMail("b@example.org").action == Action::Continue);
  }
}

TEST_CASE("accept at mail covers that transaction only", "[policy]") {
  Policy p(testing::loadRules("rule ok on mail when sender == a@example.org then accept\n"
                              "rule no on rcpt when rcpt ~ /./ then reject\n"),
           "S4");
  CHECK(transaction(p).action == Action::Continue);
  p.onReset();
  CHECK(p.onMail("other@example.org").action == Action::Continue);
  CHECK(p.onRcpt("b@example.com").action == Action::Reject);
}

TEST_CASE("accept at rcpt accepts that recipient; data rules skip when all were", "[policy]") {
  auto rules = testing::loadRules(
      "rule pm on rcpt when rcpt ~ /^postmaster@/i then accept\n"
      "rule spam on data when header.subject ~ /v[i1]agra/i then reject\n");
  Policy all(rules, "S5");
  CHECK(transaction(all, "Postmaster@example.com").action == Action::Continue);

  Policy mixed(rules, "S6");
  mixed.onConnect(client("192.0.2.1"));
  mixed.onHelo("h");
  mixed.onMail("a@example.org");
  CHECK(mixed.onRcpt("postmaster@example.com").action == Action::Accept);
  CHECK(mixed.onRcpt("user@example.com").action == Action::Continue);
  CHECK(mixed.onEndOfData(kMessage).action == Action::Reject);
}

TEST_CASE("scores add up across stages and thresholds decide at end of data", "[policy]") {
  const char* base =
      "rule s1 on mail when sender.domain == example.org then score 2.5\n"
      "rule s2 on data when header.subject ~ /v[i1]agra/i then score 5\n"
      "rule s3 on data when body ~ /buy now/ then score 1\n"
      "rule big on data when score >= 100 then reject\n"
      "threshold tempfail at 6 \"451 4.7.1 deferred, score $score\"\n";
  SECTION("tempfail threshold reached") {
    Policy p(testing::loadRules(base), "S7");
    Verdict v = transaction(p);
    CHECK(v.action == Action::Tempfail);
    CHECK(v.ruleId == "threshold-tempfail");
    CHECK(v.score == Approx(8.5));
    CHECK(v.reply->line() == "451 4.7.1 deferred, score 8.5");
    CHECK(p.transaction()->scoreRules == std::vector<std::string>{"s1", "s2", "s3"});
  }
  SECTION("reject beats tempfail; highest threshold reached wins") {
    Policy p(testing::loadRules(std::string(base) + "threshold reject at 8\n"), "S8");
    Verdict v = transaction(p);
    CHECK(v.action == Action::Reject);
    CHECK(v.reply->code == 550);
  }
  SECTION("below every threshold: accepted") {
    Policy p(testing::loadRules(std::string(base) +
                                "rule neg on data when body ~ /buy/ then score -10\n"),
             "S9");
    CHECK(transaction(p).action == Action::Continue);
  }
}

TEST_CASE("monitor rules and dry-run log would-be refusals and let mail through", "[policy]") {
  SECTION("monitor rule") {
    Policy p(testing::loadRules(
                 "rule watch on mail when sender ~ /@example\\.org$/ then monitor reject\n"
                 "rule real on rcpt when rcpt ~ /^nobody@/ then reject\n"),
             "M1");
    p.onConnect(client("192.0.2.1"));
    p.onHelo("h");
    Verdict v = p.onMail("a@example.org");
    CHECK(v.action == Action::Continue);
    REQUIRE(v.wouldBe);
    CHECK(*v.wouldBe == Action::Reject);
    CHECK(v.logAction() == "would-reject");
    CHECK(v.ruleId == "watch");
    CHECK(p.onRcpt("nobody@example.com").action == Action::Reject);  // others still enforce
  }
  SECTION("dry-run mode") {
    policies::PolicyOptions options;
    options.dryRun = true;
    Policy p(testing::loadRules("rule block on connect when client.ip == 192.0.2.1 then reject\n"),
             "M2", options);
    Verdict v = p.onConnect(client("192.0.2.1"));
    CHECK(v.action == Action::Continue);
    CHECK_FALSE(v.disconnect);
    CHECK(v.logAction() == "would-reject");
  }
}

TEST_CASE("facts that need DNS are unavailable and never fire a rule", "[policy]") {
  Policy p(testing::loadRules("rule noptr on connect when not client.ptr then tempfail\n"
                              "rule spf on mail when spf == fail then reject\n"
                              "rule spf2 on mail when spf != pass then reject\n"),
           "D1");
  std::vector<policies::StageReport> reports;
  p.reportTo(&reports);
  CHECK(p.onConnect(client("192.0.2.1")).action == Action::Continue);
  p.onHelo("h");
  CHECK(p.onMail("a@example.org").action == Action::Continue);
  REQUIRE(reports.size() == 3);
  REQUIRE(reports[0].facts.size() == 1);
  CHECK(reports[0].facts[0].first == "client.ptr");
  CHECK_THAT(reports[0].facts[0].second, Catch::StartsWith("unavailable"));
  CHECK(reports[2].rules.at(0).result == rules::Tri::Unknown);
}

TEST_CASE("the message is parsed only when a rule reads it", "[policy]") {
  Policy envelopeOnly(testing::loadRules("rule r on mail when sender == x@y.z then reject\n"),
                      "P1");
  CHECK_FALSE(envelopeOnly.needsMessage());
  Policy content(testing::loadRules("rule r on data when size > 10 then score 1\n"), "P2");
  CHECK(content.needsMessage());
}

TEST_CASE("decision records carry the rule, its place and the ruleset hash", "[policy]") {
  auto rules = testing::loadRules("rule r on rcpt when rcpt ~ /^bad@/ then reject\n");
  Policy p(rules, "R1", {false, "proxy"});
  p.onConnect(client("192.0.2.9"));
  p.onHelo("helo.example");
  p.onMail("s@example.org");
  Verdict v = p.onRcpt("bad@example.com");
  auto rec = p.record(v);
  CHECK(rec.session == "R1");
  CHECK(rec.clientIp == "192.0.2.9");
  CHECK(rec.helo == "helo.example");
  CHECK(rec.sender == "s@example.org");
  CHECK(rec.rcpts == std::vector<std::string>{"bad@example.com"});
  CHECK(rec.stage == "rcpt");
  CHECK(rec.action == "reject");
  CHECK(rec.rule == "r");
  CHECK(rec.ruleWhere == "test.rules:1");
  CHECK(rec.rulesetHash == rules->hash());
  CHECK(rec.rulesetHash.size() == 12);
  CHECK(rec.frontend == "proxy");
}

TEST_CASE("session ids are 8 hex digits and do not repeat, from any thread", "[policy]") {
  constexpr int kThreads = 4;
  constexpr int kEach = 20'000;
  std::vector<std::vector<std::string>> ids(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&ids, t] {
      for (int i = 0; i < kEach; ++i) {
        ids[static_cast<std::size_t>(t)].push_back(policies::newSessionId());
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  std::set<std::string> distinct;
  std::set<char> leadingDigits;  // spread over the whole range, not counting up
  for (const auto& list : ids) {
    for (const auto& id : list) {
      REQUIRE(id.size() == 8);
      REQUIRE(id.find_first_not_of("0123456789ABCDEF") == std::string::npos);
      distinct.insert(id);
      leadingDigits.insert(id[0]);
    }
  }
  CHECK(distinct.size() == std::size_t{kThreads} * kEach);
  CHECK(leadingDigits.size() == 16);
}
