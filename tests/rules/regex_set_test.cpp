// RE2::Set grouping: every regex on one field at one stage (literals and
// regex lists) is one set, run once per evaluation, yet each rule still gets
// its own answer; per-pattern flags do not leak into the other patterns.

#include <cstdio>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "rules/rule_set.h"
#include "test_lists.h"

namespace smtpgate::rules {
namespace {

using testing::ids;
using testing::loadOk;
using testing::MapFacts;

std::string word(int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "w%04d", i);
  return buf;
}

// Rule rN matches the whole word wNNNN; rules 1-499 score N, 500-1000 reject.
std::string thousandRules() {
  std::string text;
  for (int i = 1; i <= 1000; ++i) {
    text += "rule r" + std::to_string(i) + " on data when body ~ /\\b" + word(i) + "\\b/ then " +
            (i < 500 ? "score " + std::to_string(i) : std::string("reject")) + "\n";
  }
  return text;
}

TEST_CASE("1,000 regex rules on body share one set and each answers for itself", "[regex]") {
  auto set = loadOk(thousandRules());
  REQUIRE(set->ruleCount(Stage::Data) == 1000);
  struct Case {
    std::string body;
    std::vector<std::string> trueRules;  // in order
    std::string decisive;
    double score;
    std::size_t evaluated;
  };
  const std::vector<Case> cases = {
      {"buy " + word(17) + " now\nand " + word(900) + ".", {"r17", "r900"}, "r900", 17, 900},
      {word(900) + " " + word(17), {"r17", "r900"}, "r900", 17, 900},
      {word(600) + " and " + word(900), {"r600"}, "r600", 0, 600},
      {word(17) + "," + word(42), {"r17", "r42"}, "", 59, 1000},
      {"w17 w00170 x" + word(17) + " " + word(17) + "x", {}, "", 0, 1000},
      {"", {}, "", 0, 1000},
      {word(1) + " " + word(1000), {"r1", "r1000"}, "r1000", 1, 1000},
  };
  for (const auto& c : cases) {
    INFO("body: " << c.body);
    MapFacts facts{{"body", c.body}};
    std::vector<RuleTrace> trace;
    auto outcome = set->evaluate(Stage::Data, facts, &trace);
    std::vector<std::string> fired;
    for (const auto& t : trace) {
      CHECK(t.result != Tri::Unknown);
      if (t.result == Tri::True) {
        fired.push_back(t.rule->id);
      }
    }
    CHECK(fired == c.trueRules);
    CHECK((outcome.decisive ? outcome.decisive->id : "") == c.decisive);
    CHECK(outcome.scoreAdded == c.score);
    CHECK(trace.size() == c.evaluated);
    CHECK(facts.readCount("body") == 1);
  }
}

TEST_CASE("regex lists and regex literals on one field share a set with per-rule answers",
          "[regex]") {
  auto set = loadOk(
      "list words regex { viagra, /c[i1]al[i1]s/i }\n"
      "rule lit1 on data when body ~ /lottery/ then score 1\n"
      "rule lst on data when body ~ @words then score 10\n"
      "rule lit2 on data when body ~ /prince/i then score 100\n"
      "rule neg on data when body !~ @words then score 1000\n"
      "rule subj on data when header.subject ~ @words then score 10000\n");
  struct Case {
    std::string body;
    std::string subject;
    double score;
  };
  const std::vector<Case> cases = {
      {"", "", 1000},
      {"lottery", "", 1001},
      {"viagra", "", 10},
      {"CIAL1S", "", 10},
      {"Prince of Nigeria", "", 1100},
      {"lottery viagra prince", "", 111},
      {"hello", "viagra", 11000},  // the subject's set is separate from the body's
      {"viagra", "cialis", 10010},
  };
  for (const auto& c : cases) {
    INFO("body: " << c.body << " subject: " << c.subject);
    MapFacts facts{{"body", c.body}, {"header.subject", Strings{c.subject}}};
    CHECK(set->evaluate(Stage::Data, facts).scoreAdded == c.score);
    CHECK(facts.readCount("body") == 1);
    CHECK(facts.readCount("header.subject") == 1);
  }
}

TEST_CASE("regex flags apply to their own pattern only, inside a shared set", "[regex]") {
  struct Case {
    std::string regex;
    bool matches;  // against the text below
  };
  const std::string text = "First line\nx marks\nA\nB end";
  const std::vector<Case> cases = {
      {"/^x/", false},     {"/^x/m", true},      {"/^First/", true},       {"/marks$/", false},
      {"/marks$/m", true}, {"/end$/", true},     {"/x.{7}A/", false},      {"/x.{7}A/s", true},
      {"/first/", false},  {"/first/i", true},   {"/^a.b end$/ims", true}, {"/^a.b end$/im", false},
      {"/\\nx/", true},    {"/line\\sx/", true}, {"/(?i)FIRST/", true},    {"/^B/", false},
      {"/^B/m", true},
  };
  std::string rules;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    rules +=
        "rule f" + std::to_string(i) + " on data when body ~ " + cases[i].regex + " then score 1\n";
  }
  auto set = loadOk(rules);
  MapFacts facts{{"body", text}};
  std::vector<RuleTrace> trace;
  set->evaluate(Stage::Data, facts, &trace);
  REQUIRE(trace.size() == cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    INFO("regex " << cases[i].regex);
    CHECK(trace[i].result == toTri(cases[i].matches));
  }
}

TEST_CASE("regex literals match what they say", "[regex]") {
  struct Case {
    std::string regex;
    std::string text;
    bool matches;
  };
  const std::vector<Case> cases = {
      {"/a\\/b/", "x a/b y", true},  // \/ is a slash
      {"/a\\/b/", "ab", false},
      {"/^\\[/", "[192.0.2.1]", true},  // DESIGN's no-ptr example
      {"/^\\[/", "mx.example", false},
      {"/@paypal\\.com>?$/i", "Service <service@PayPal.com>", true},
      {"/@paypal\\.com>?$/i", "x@paypal.com.evil", false},
      {"/v[i1]agra/i", "V1AGRA", true},
      {"/caf\xc3\xa9/", "un caf\xc3\xa9", true},  // UTF-8
      {"/a#b/", "a#b", true},
      {"//", "anything", true},
  };
  for (const auto& c : cases) {
    INFO(c.regex << " on " << c.text);
    auto set = loadOk("rule r on data when header.from ~ " + c.regex + " then reject\n");
    MapFacts facts{{"header.from", Strings{c.text}}};
    CHECK((set->evaluate(Stage::Data, facts).decisive != nullptr) == c.matches);
  }
}

TEST_CASE("inline regex lists may hold braces and commas", "[regex]") {
  auto set = loadOk(
      "list w regex { /a{2,3}b/, /x,y/i, c{2} }  # {like this}\n"
      "rule r on data when body ~ @w then reject\n");
  struct Case {
    std::string body;
    bool matches;
  };
  const std::vector<Case> cases = {
      {"aab", true}, {"ab", false}, {"X,Y", true}, {"x", false}, {"cc", true}, {"c", false},
  };
  for (const auto& c : cases) {
    INFO("body: " << c.body);
    MapFacts facts{{"body", c.body}};
    CHECK((set->evaluate(Stage::Data, facts).decisive != nullptr) == c.matches);
  }
}

TEST_CASE("an empty regex list matches nothing and its negation everything", "[regex]") {
  testing::TempDir dir;
  dir.write("empty.re", "# no patterns yet\n");
  testing::FakeListBuilder lists;
  auto set = loadOk(
      "list none regex \"empty.re\"\n"
      "rule pos on data when body ~ @none then score 1\n"
      "rule neg on data when body !~ @none then score 10\n",
      lists, (dir.path() / "main.rules").string());
  MapFacts facts{{"body", "anything"}};
  auto outcome = set->evaluate(Stage::Data, facts);
  CHECK(ids(outcome.scoreRules) == std::vector<std::string>{"neg"});
}

}  // namespace
}  // namespace smtpgate::rules

namespace smtpgate::rules {
namespace {

/// A source that keeps the body itself (as the Policy keeps the message):
/// regexes match it in place and never ask fact() for a copy.
class BodyInPlace : public testing::MapFacts {
 public:
  explicit BodyInPlace(std::string body) : body_(std::move(body)) {}
  std::optional<std::string_view> textInPlace(const FieldRef& field) override {
    if (field.display() == "body") {
      return std::string_view(body_);
    }
    return std::nullopt;
  }

 private:
  std::string body_;
};

TEST_CASE("a text kept in place is matched there, without a copy through fact()", "[regex]") {
  auto set = loadOk(
      "rule spam on data when body ~ /lottery/ then score 2\n"
      "rule short on data when body == \"x\" then score 1\n"
      "rule subject on data when header.subject ~ /win/ then score 4\n");
  BodyInPlace facts("you won the lottery");
  facts.set("header.subject", "you win");
  auto outcome = set->evaluate(Stage::Data, facts);
  CHECK(outcome.scoreAdded == 6);       // spam and subject; `==` still reads fact(), unset here
  CHECK(facts.readCount("body") == 1);  // the comparison, not the regex
  CHECK(facts.readCount("header.subject") == 1);

  BodyInPlace clean("a letter");
  CHECK(set->evaluate(Stage::Data, clean).scoreAdded == 0);
}

}  // namespace
}  // namespace smtpgate::rules

namespace smtpgate::rules {
namespace {

// A field with one pattern at a stage is matched by a plain RE2 (it stops at
// the first match); with two it is a set. Both must answer alike.
TEST_CASE("a lone pattern answers as it would inside a set", "[regex]") {
  const std::vector<std::string> patterns = {
      R"re(/name\*?=\s*"?[^";\r\n]*\.(exe|scr)"?\s*(;|$)/im)re", "/^subject: win/mi",
      R"re(/\bv[i1]agra\b/i)re", "/x{3}$/", "/a.b/s"};
  const std::vector<std::string> texts = {"Content-Type: application/x; name=\"setup.EXE\"\r\n",
                                          "NAME*=a.scr;",
                                          "name=a.exe.txt",
                                          "hello\nSubject: WIN now",
                                          "buy V1AGRA",
                                          "viagras",
                                          "ends in xxx",
                                          "xxx\nno",
                                          "a\nb",
                                          "ab",
                                          ""};
  int matched = 0;
  for (const auto& pattern : patterns) {
    auto alone = loadOk("rule r on data when rawbody ~ " + pattern + " then score 1\n");
    auto inSet =
        loadOk("rule r on data when rawbody ~ " + pattern +
               " then score 1\nrule other on data when rawbody ~ /never here/ then score 2\n");
    for (const auto& text : texts) {
      INFO(pattern << " on " << text);
      MapFacts a{{"rawbody", text}};
      MapFacts b{{"rawbody", text}};
      const double score = alone->evaluate(Stage::Data, a).scoreAdded;
      CHECK(score == inSet->evaluate(Stage::Data, b).scoreAdded);
      matched += score > 0 ? 1 : 0;
    }
  }
  CHECK(matched == 6);  // setup.EXE, a.scr, Subject: WIN, V1AGRA, ends in xxx, a\nb
}

}  // namespace
}  // namespace smtpgate::rules
