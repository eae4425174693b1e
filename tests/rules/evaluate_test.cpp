// Evaluation semantics through RuleSet::evaluate: rule order, decisive
// rules, scores, monitor rules, three-valued logic, negations, multi-valued
// fields, list membership, thresholds, and which facts a rule set reads.

#include <algorithm>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "rules/rule_set.h"
#include "test_lists.h"

namespace smtpgate::rules {
namespace {

using testing::FakeListBuilder;
using testing::ids;
using testing::ip;
using testing::loadOk;
using testing::MapFacts;

const char* kLists =
    "list office cidr { 10.0.0.1, 2001:db8::1 }\n"
    "list zen dnsbl \"zen.example.org\"\n"
    "list freemail domain { gmail.com, yahoo.com }\n"
    "list names string { alice, bob }\n"
    "list words regex { viagra, /^cheap/im }\n";

// The result of `condition` for `facts`, read from the evaluation trace.
Tri resultOf(const std::string& condition, MapFacts& facts) {
  FakeListBuilder lists;
  auto set =
      loadOk(std::string(kLists) + "rule r on data when " + condition + " then accept\n", lists);
  std::vector<RuleTrace> trace;
  auto outcome = set->evaluate(Stage::Data, facts, &trace);
  REQUIRE(trace.size() == 1);
  // Only a definitely true condition fires.
  CHECK((outcome.decisive != nullptr) == (trace[0].result == Tri::True));
  return trace[0].result;
}

std::string decisiveId(const StageOutcome& o) {
  return o.decisive ? o.decisive->id : "";
}

TEST_CASE("rules run in file order; the first true decisive rule ends the stage", "[evaluate]") {
  auto set = loadOk(
      "rule s1 on data when body ~ /a/ then score 1\n"
      "rule m1 on data when body ~ /b/ then monitor reject\n"
      "rule s2 on data when body ~ /c/ then score 2.5\n"
      "rule d1 on data when body ~ /d/ then reject\n"
      "rule s3 on data when body ~ /e/ then score 4\n"
      "rule c1 on connect when client.ip == 10.0.0.1 then reject\n"
      "rule d2 on data when body ~ /f/ then accept\n"
      "rule m2 on data when body ~ /g/ then monitor tempfail\n"
      "rule s4 on data when body ~ /h/ then score -1.5\n");
  struct Case {
    std::string body;
    std::string decisive;
    double score;
    std::vector<std::string> scoreRules;
    std::vector<std::string> monitored;
    std::size_t evaluated;
  };
  const std::vector<Case> cases = {
      {"", "", 0, {}, {}, 8},
      {"abcdefgh", "d1", 3.5, {"s1", "s2"}, {"m1"}, 4},
      {"ace", "", 7.5, {"s1", "s2", "s3"}, {}, 8},
      {"aceh", "", 6, {"s1", "s2", "s3", "s4"}, {}, 8},
      {"fg", "d2", 0, {}, {}, 6},
      {"bg", "", 0, {}, {"m1", "m2"}, 8},
      {"ef", "d2", 4, {"s3"}, {}, 6},
      {"df", "d1", 0, {}, {}, 4},
  };
  for (const auto& c : cases) {
    INFO("body: " << c.body);
    MapFacts facts{{"body", c.body}, {"client.ip", ip("10.0.0.1")}};
    std::vector<RuleTrace> trace;
    auto outcome = set->evaluate(Stage::Data, facts, &trace);
    CHECK(decisiveId(outcome) == c.decisive);
    CHECK(outcome.scoreAdded == c.score);
    CHECK(ids(outcome.scoreRules) == c.scoreRules);
    CHECK(ids(outcome.monitored) == c.monitored);
    CHECK(trace.size() == c.evaluated);
    for (const auto& t : trace) {
      CHECK(t.rule->stage == Stage::Data);
    }
  }
}

TEST_CASE("each stage runs only its own rules", "[evaluate]") {
  auto set = loadOk(
      "rule c on connect when pregreet then reject\n"
      "rule h on helo when helo == x then tempfail\n"
      "rule m on mail when sender == x then reject\n"
      "rule r on rcpt when rcpt == x then accept\n"
      "rule d on data when body == x then reject\n");
  MapFacts facts{
      {"pregreet", true}, {"helo", "x"}, {"sender", "x"}, {"rcpt", Strings{"x"}}, {"body", "x"}};
  const std::vector<std::pair<Stage, std::string>> cases = {{Stage::Connect, "c"},
                                                            {Stage::Helo, "h"},
                                                            {Stage::Mail, "m"},
                                                            {Stage::Rcpt, "r"},
                                                            {Stage::Data, "d"}};
  for (const auto& [stage, id] : cases) {
    INFO("stage " << toString(stage));
    std::vector<RuleTrace> trace;
    CHECK(decisiveId(set->evaluate(stage, facts, &trace)) == id);
    CHECK(trace.size() == 1);
  }
}

TEST_CASE("comparisons follow three-valued logic over unavailable facts", "[evaluate]") {
  struct Case {
    std::string condition;
    Tri expected;
  };
  const std::vector<Case> cases = {
      // client.ptr, dkim and score are unavailable in these facts.
      {"client.ptr == x", Tri::Unknown},
      {"client.ptr != x", Tri::Unknown},
      {"not client.ptr == x", Tri::Unknown},
      {"client.ptr", Tri::Unknown},
      {"not client.ptr", Tri::Unknown},
      {"not not client.ptr", Tri::Unknown},
      {"client.ptr ~ /x/", Tri::Unknown},
      {"client.ptr !~ /x/", Tri::Unknown},
      {"client.ptr in { a }", Tri::Unknown},
      {"client.ptr not in { a }", Tri::Unknown},
      {"client.ptr in @names", Tri::Unknown},
      {"dkim == pass", Tri::Unknown},
      {"score > 0", Tri::Unknown},
      // Unknown and false = false, Unknown or true = true, either order.
      {"client.ptr == x and size > 1000", Tri::False},
      {"size > 1000 and client.ptr == x", Tri::False},
      {"client.ptr == x and size > 1", Tri::Unknown},
      {"size > 1 and client.ptr == x", Tri::Unknown},
      {"client.ptr == x or size > 1", Tri::True},
      {"size > 1 or client.ptr == x", Tri::True},
      {"client.ptr == x or size > 1000", Tri::Unknown},
      {"not (client.ptr == x or size > 1000)", Tri::Unknown},
      {"not (client.ptr == x and size > 1000)", Tri::True},
      {"client.ptr and dkim == pass", Tri::Unknown},
      // Known facts.
      {"helo == mx.example.com", Tri::True},
      {"helo == MX.Example.COM", Tri::True},
      {"helo == \"MX.EXAMPLE.COM\"", Tri::True},
      {"helo != MX.EXAMPLE.COM", Tri::False},
      {"helo == other", Tri::False},
      {"helo == mx.example", Tri::False},
      {"helo", Tri::True},
      {"helo in { a, MX.example.com }", Tri::True},
      {"helo in { }", Tri::False},
      {"helo ~ /^mx\\./", Tri::True},
      {"helo ~ /^MX/", Tri::False},
      {"helo ~ /^MX/i", Tri::True},
      {"size < 100", Tri::False},
      {"size <= 100", Tri::True},
      {"size > 99.5", Tri::True},
      {"size >= 101", Tri::False},
      {"size == 100", Tri::True},
      {"size != 100", Tri::False},
      {"size", Tri::True},
      {"mail.size", Tri::False},  // zero
      {"tls", Tri::True},
      {"tls == true", Tri::True},
      {"tls == false", Tri::False},
      {"tls != false", Tri::True},
      {"pregreet", Tri::False},
      {"not pregreet", Tri::True},
      {"client.ip == 192.0.2.1", Tri::True},
      {"client.ip == ::ffff:192.0.2.1", Tri::True},
      {"client.ip == 192.0.2.2", Tri::False},
      {"client.ip ~ /^192\\.0\\.2\\./", Tri::True},
      {"client.ip", Tri::True},
      {"sender", Tri::False},  // empty: a bounce
      {"sender == \"\"", Tri::True},
      {"spf == PASS", Tri::True},
      // Bare addresses are words.
      {"rcpt == Postmaster@Example.org", Tri::True},
      {"rcpt in { a@b.example, postmaster@example.org }", Tri::True},
      {"rcpt != postmaster@example.org", Tri::False},
      {"spf in { fail, pass }", Tri::True},
  };
  for (const auto& c : cases) {
    INFO("condition: " << c.condition);
    MapFacts facts{{"helo", "mx.example.com"},
                   {"size", 100.0},
                   {"mail.size", 0.0},
                   {"tls", true},
                   {"pregreet", false},
                   {"sender", ""},
                   {"spf", "pass"},
                   {"client.ip", ip("192.0.2.1")},
                   {"rcpt", Strings{"postmaster@example.org"}}};
    CHECK(resultOf(c.condition, facts) == c.expected);
  }
}

TEST_CASE("an Unknown condition never fires, whatever the action", "[evaluate]") {
  auto set = loadOk(
      "rule s on data when client.ptr == x then score 5\n"
      "rule m on data when not client.ptr then monitor reject\n"
      "rule a on data when client.ptr !~ /x/ then accept\n"
      "rule t on data when not client.fcrdns then tempfail\n"
      "rule r on data when client.ptr not in { a } then reject\n");
  MapFacts facts;
  std::vector<RuleTrace> trace;
  auto outcome = set->evaluate(Stage::Data, facts, &trace);
  CHECK(outcome.decisive == nullptr);
  CHECK(outcome.scoreAdded == 0);
  CHECK(outcome.scoreRules.empty());
  CHECK(outcome.monitored.empty());
  REQUIRE(trace.size() == 5);
  for (const auto& t : trace) {
    INFO(t.rule->id);
    CHECK(t.result == Tri::Unknown);
  }
}

TEST_CASE("!=, !~ and not in are exactly the negations of ==, ~ and in", "[evaluate]") {
  struct Pair {
    std::string positive;
    std::string negative;
  };
  const std::vector<Pair> pairs = {
      {"helo == a", "helo != a"},
      {"helo ~ /^a$/", "helo !~ /^a$/"},
      {"helo in { a, z }", "helo not in { a, z }"},
      {"sender in @names", "sender not in @names"},
      {"header.received == a", "header.received != a"},
      {"header.received ~ /^a$/", "header.received !~ /^a$/"},
      {"header.received in { a }", "header.received not in { a }"},
      {"size == 1", "size != 1"},
      {"tls == true", "tls != true"},
      {"client.ip == 10.0.0.1", "client.ip != 10.0.0.1"},
      {"client.ip in @office", "client.ip not in @office"},
      {"body ~ @words", "body !~ @words"},
      {"spf == pass", "spf != pass"},
  };
  struct Scenario {
    std::string what;
    Tri positive;
    MapFacts facts;
  };
  std::vector<Scenario> scenarios;
  scenarios.push_back({"matching values", Tri::True,
                       MapFacts{{"helo", "a"},
                                {"sender", "Bob"},
                                {"header.received", Strings{"x", "a"}},
                                {"size", 1.0},
                                {"tls", true},
                                {"client.ip", ip("10.0.0.1")},
                                {"body", "buy viagra"},
                                {"spf", "pass"}}});
  scenarios.push_back({"other values", Tri::False,
                       MapFacts{{"helo", "b"},
                                {"sender", "carol"},
                                {"header.received", Strings{"x", "y"}},
                                {"size", 2.0},
                                {"tls", false},
                                {"client.ip", ip("10.0.0.2")},
                                {"body", "hello"},
                                {"spf", "fail"}}});
  scenarios.push_back({"unavailable facts", Tri::Unknown, MapFacts{}});
  for (const auto& pair : pairs) {
    for (auto& s : scenarios) {
      INFO(pair.positive << " / " << pair.negative << " with " << s.what);
      Tri positive = resultOf(pair.positive, s.facts);
      CHECK(positive == s.positive);
      CHECK(resultOf(pair.negative, s.facts) == triNot(positive));
    }
  }
}

TEST_CASE("a multi-valued field matches if any of its values matches", "[evaluate]") {
  struct Case {
    std::string condition;
    Tri withTwo;   // two Received headers
    Tri withNone;  // no Received header at all
  };
  const std::vector<Case> cases = {
      {"header.received ~ /b\\.example/", Tri::True, Tri::False},
      {"header.received ~ /c\\.example/", Tri::False, Tri::False},
      {"header.received !~ /b\\.example/", Tri::False, Tri::True},
      {"header.received == \"FROM A.EXAMPLE\"", Tri::True, Tri::False},
      {"header.received != \"from a.example\"", Tri::False, Tri::True},
      {"header.received in { \"from b.example\" }", Tri::True, Tri::False},
      {"header.received", Tri::True, Tri::False},
      {"not header.received", Tri::False, Tri::True},
  };
  for (const auto& c : cases) {
    INFO("condition: " << c.condition);
    MapFacts two{{"header.received", Strings{"from a.example", "from b.example"}}};
    CHECK(resultOf(c.condition, two) == c.withTwo);
    MapFacts none{{"header.received", Strings{}}};
    CHECK(resultOf(c.condition, none) == c.withNone);
  }
}

TEST_CASE("header names are matched case-insensitively to the same fact", "[evaluate]") {
  auto set = loadOk(
      "rule a on data when header.Subject ~ /hello/ then score 1\n"
      "rule b on data when HEADER.SUBJECT == \"Hello World\" then score 2\n");
  MapFacts facts{{"header.subject", Strings{"hello world"}}};
  auto outcome = set->evaluate(Stage::Data, facts);
  CHECK(outcome.scoreAdded == 3);
  REQUIRE(set->fieldsReadAt(Stage::Data).size() == 1);
  CHECK(set->fieldsReadAt(Stage::Data)[0].display() == "header.subject");
}

TEST_CASE("list membership goes through the built lists", "[evaluate][lists]") {
  struct Case {
    std::string condition;
    MapFacts facts;
    Tri expected;
  };
  std::vector<Case> cases;
  cases.push_back({"client.ip in @office", MapFacts{{"client.ip", ip("10.0.0.1")}}, Tri::True});
  cases.push_back({"client.ip in @office", MapFacts{{"client.ip", ip("2001:db8::1")}}, Tri::True});
  cases.push_back({"client.ip in @office", MapFacts{{"client.ip", ip("10.0.0.3")}}, Tri::False});
  cases.push_back({"client.ip in @zen", MapFacts{{"client.ip", ip("127.0.0.2")}}, Tri::True});
  cases.push_back(
      {"client.ip in @zen:127.0.0.2", MapFacts{{"client.ip", ip("127.0.0.2")}}, Tri::True});
  cases.push_back(
      {"client.ip in @zen:127.0.0.4", MapFacts{{"client.ip", ip("127.0.0.2")}}, Tri::False});
  cases.push_back(
      {"sender.domain in @freemail", MapFacts{{"sender.domain", "GMAIL.com"}}, Tri::True});
  cases.push_back(
      {"sender.domain in @freemail", MapFacts{{"sender.domain", "example.com"}}, Tri::False});
  cases.push_back({"rcpt.domain in @freemail",
                   MapFacts{{"rcpt.domain", Strings{"example.org", "yahoo.com"}}}, Tri::True});
  cases.push_back({"helo in @names", MapFacts{{"helo", "bob"}}, Tri::True});
  cases.push_back({"body ~ @words", MapFacts{{"body", "so\ncheap pills"}}, Tri::True});
  cases.push_back({"body ~ @words", MapFacts{{"body", "not cheap"}}, Tri::False});
  for (auto& c : cases) {
    INFO("condition: " << c.condition);
    CHECK(resultOf(c.condition, c.facts) == c.expected);
  }
}

TEST_CASE("thresholdFor picks the highest threshold reached; reject wins a tie", "[evaluate]") {
  struct Case {
    double score;
    int index;  // into thresholds(), -1 for none
  };
  const std::vector<Case> cases = {
      {-5, -1}, {0, -1}, {5.99, -1}, {6, 0}, {9.99, 0}, {10, 2}, {19.5, 2}, {20, 3}, {1e9, 3},
  };
  // The same thresholds in two orders: the tie at 10 must not depend on it.
  const std::vector<std::string> texts = {
      "threshold tempfail at 6\n"
      "threshold tempfail at 10\n"
      "threshold reject at 10\n"
      "threshold tempfail at 20\n",
      "threshold tempfail at 6\n"
      "threshold reject at 10\n"
      "threshold tempfail at 10\n"
      "threshold tempfail at 20\n",
  };
  for (const auto& text : texts) {
    auto set = loadOk(text);
    for (const auto& c : cases) {
      INFO(text << "score " << c.score);
      const Threshold* t = set->thresholdFor(c.score);
      if (c.index < 0) {
        CHECK(t == nullptr);
        continue;
      }
      REQUIRE(t != nullptr);
      const Threshold& want = [&]() -> const Threshold& {
        // index 2 is "reject at 10" wherever it is written.
        if (c.index == 2) {
          for (const auto& th : set->thresholds()) {
            if (th.at == 10 && th.action == RuleAction::Reject) {
              return th;
            }
          }
        }
        return set->thresholds()[static_cast<std::size_t>(c.index)];
      }();
      CHECK(t == &want);
    }
  }
}

TEST_CASE("reads() and fieldsReadAt() report exactly the fields the rules use", "[evaluate]") {
  FakeListBuilder lists;
  auto set =
      loadOk(std::string(kLists) +
                 "rule a on connect when client.ip in @office or not client.ptr then accept\n"
                 "rule b on mail when spf == fail and sender.domain in { x } then reject\n"
                 "rule c on data when header.Subject ~ /x/ or header.from ~ /y/ or body ~ "
                 "@words then score 1\n"
                 "rule d on data when client.ip == 1.2.3.4 and header.subject == x then "
                 "score 1\n"
                 "rule e on mail when (spf == pass) then score 1\n",
             lists);
  struct Case {
    Stage stage;
    std::vector<std::string> fields;
  };
  const std::vector<Case> cases = {
      {Stage::Connect, {"client.ip", "client.ptr"}},
      {Stage::Helo, {}},
      {Stage::Mail, {"spf", "sender.domain"}},
      {Stage::Rcpt, {}},
      {Stage::Data, {"header.subject", "header.from", "body", "client.ip"}},
  };
  for (const auto& c : cases) {
    INFO("stage " << toString(c.stage));
    std::vector<std::string> got;
    for (const auto& f : set->fieldsReadAt(c.stage)) {
      got.push_back(f.display());
    }
    CHECK(got == c.fields);
  }
  const std::vector<FieldId> read = {FieldId::ClientIp,     FieldId::ClientPtr, FieldId::Spf,
                                     FieldId::SenderDomain, FieldId::Header,    FieldId::Body};
  for (const auto& f : allFields()) {
    INFO("field " << f.name);
    bool expected = std::find(read.begin(), read.end(), f.id) != read.end();
    CHECK(set->reads(f.id) == expected);
  }
}

TEST_CASE("facts are pulled only when a condition needs them", "[evaluate]") {
  auto set = loadOk(
      "rule a on data when size > 10 and dkim == pass then reject\n"
      "rule b on data when size < 10 or spf == fail then score 1\n"
      "rule c on data when body ~ /x/ then score 1\n"
      "rule d on data when body ~ /y/ then score 1\n"
      "rule e on connect when client.ptr then accept\n");
  MapFacts facts{{"size", 5.0}, {"body", "xy"}};
  auto outcome = set->evaluate(Stage::Data, facts);
  CHECK(outcome.scoreAdded == 3);
  CHECK(facts.readCount("dkim") == 0);        // size > 10 was false
  CHECK(facts.readCount("spf") == 0);         // size < 10 was true
  CHECK(facts.readCount("body") == 1);        // one RE2::Set pass for both rules
  CHECK(facts.readCount("client.ptr") == 0);  // another stage
}

}  // namespace
}  // namespace smtpgate::rules
