// Grammar: every statement and every condition construct, checked through
// RuleSet::loadText and the resulting rules, conditions and thresholds.

#include "rules/parser.h"

#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "rules/condition.h"
#include "rules/rule_set.h"
#include "test_lists.h"

namespace smtpgate::rules {
namespace {

using testing::FakeListBuilder;
using testing::loadOk;

std::string show(const Condition& c);

std::string showLiteral(const FactValue& v) {
  return describe(v);
}

std::string showOp(const Condition& c) {
  switch (c.op) {
    case CompareOp::Eq:
      return c.negate ? "!=" : "==";
    case CompareOp::Lt:
      return "<";
    case CompareOp::Le:
      return "<=";
    case CompareOp::Gt:
      return ">";
    case CompareOp::Ge:
      return ">=";
  }
  return "?";
}

// A compact, unambiguous rendering of a condition tree: (and L R), (or L R),
// (not X), and leaves as `field OP operand`.
std::string show(const Condition& c) {
  switch (c.kind) {
    case ConditionKind::And:
      return "(and " + show(*c.left) + " " + show(*c.right) + ")";
    case ConditionKind::Or:
      return "(or " + show(*c.left) + " " + show(*c.right) + ")";
    case ConditionKind::Not:
      return "(not " + show(*c.left) + ")";
    case ConditionKind::Truthy:
      return c.field.display();
    case ConditionKind::Compare:
      return c.field.display() + " " + showOp(c) + " " + showLiteral(c.literal);
    case ConditionKind::Regex: {
      std::string out = c.field.display() + (c.negate ? " !~ " : " ~ ");
      if (!c.listName.empty()) {
        return out + "@" + c.listName;
      }
      return out + "/" + c.patterns.at(0).pattern + "/";
    }
    case ConditionKind::InList:
      return c.field.display() + (c.negate ? " not in @" : " in @") + c.listName +
             (c.qualifier.empty() ? "" : ":" + c.qualifier);
    case ConditionKind::InSet: {
      std::string out = c.field.display() + (c.negate ? " not in {" : " in {");
      for (std::size_t i = 0; i < c.set.size(); ++i) {
        out += (i ? "," : "") + c.set[i];
      }
      return out + "}";
    }
  }
  return "?";
}

const char* kLists =
    "list office cidr { 10.0.0.1 }\n"
    "list zen dnsbl \"zen.example.org\"\n"
    "list freemail domain { gmail.com }\n"
    "list words regex { foo }\n"
    "list names string { bob }\n";

std::string conditionOf(const std::string& condition, const std::string& stage = "data") {
  std::string text =
      std::string(kLists) + "rule r on " + stage + " when " + condition + " then accept\n";
  FakeListBuilder lists;
  auto set = loadOk(text, lists);
  REQUIRE(set->rules().size() == 1);
  return show(*set->rules()[0].condition);
}

TEST_CASE("conditions parse with not > and > or precedence and parentheses", "[parser]") {
  struct Case {
    std::string condition;
    std::string tree;
  };
  const std::vector<Case> cases = {
      {"helo", "helo"},
      {"not helo", "(not helo)"},
      {"not not helo", "(not (not helo))"},
      {"helo and sender", "(and helo sender)"},
      {"helo or sender", "(or helo sender)"},
      {"helo or sender and rcpt", "(or helo (and sender rcpt))"},
      {"helo and sender or rcpt", "(or (and helo sender) rcpt)"},
      {"(helo or sender) and rcpt", "(and (or helo sender) rcpt)"},
      {"helo and sender and rcpt", "(and (and helo sender) rcpt)"},
      {"helo or sender or rcpt", "(or (or helo sender) rcpt)"},
      {"not helo and sender", "(and (not helo) sender)"},
      {"not (helo and sender)", "(not (and helo sender))"},
      {"((helo))", "helo"},
      {"not client.ptr and helo ~ /^\\[/", "(and (not client.ptr) helo ~ /^\\[/)"},
      {"helo or not sender and not rcpt", "(or helo (and (not sender) (not rcpt)))"},
  };
  for (const auto& c : cases) {
    INFO("condition: " << c.condition);
    CHECK(conditionOf(c.condition) == c.tree);
  }
}

TEST_CASE("every comparison operator parses to its leaf", "[parser]") {
  struct Case {
    std::string condition;
    std::string tree;
  };
  const std::vector<Case> cases = {
      {"helo == Example.COM", "helo == \"example.com\""},  // text literals fold to lower case
      {"helo == \"A b\"", "helo == \"a b\""},
      {"helo != x", "helo != \"x\""},
      {"helo ~ /x/", "helo ~ /x/"},
      {"helo !~ /x/", "helo !~ /x/"},
      {"helo ~ /x/i", "helo ~ /(?i)x/"},
      {"helo ~ /x/ms", "helo ~ /(?ms)x/"},
      {"helo ~ /x/ii", "helo ~ /(?i)x/"},
      {"body ~ @words", "body ~ @words"},
      {"body !~ @words", "body !~ @words"},
      {"client.ip in @office", "client.ip in @office"},
      {"client.ip not in @office", "client.ip not in @office"},
      {"client.ip in @zen:127.0.0.2", "client.ip in @zen:127.0.0.2"},
      {"client.ip in @zen:127.0.0.2-11", "client.ip in @zen:127.0.0.2-11"},
      {"sender.domain in @freemail", "sender.domain in @freemail"},
      {"helo in @names", "helo in @names"},
      {"helo in { a, B, \"c d\" }", "helo in {a,b,c d}"},
      {"helo not in { a }", "helo not in {a}"},
      {"helo in { }", "helo in {}"},
      {"spf in { pass, neutral }", "spf in {pass,neutral}"},
      {"size < 10", "size < 10"},
      {"size <= 10.5", "size <= 10.5"},
      {"size > -1", "size > -1"},
      {"size >= 1e3", "size >= 1000"},
      {"size == 0", "size == 0"},
      {"size != 0", "size != 0"},
      {"tls == true", "tls == true"},
      {"pregreet != false", "pregreet != false"},
      {"client.ip == 192.0.2.1", "client.ip == 192.0.2.1"},
      {"client.ip == ::1", "client.ip == ::1"},
      {"client.ip != 2001:db8::1", "client.ip != 2001:db8::1"},
      {"spf == fail", "spf == \"fail\""},
      {"spf == TempError", "spf == \"temperror\""},
      {"dkim != pass", "dkim != \"pass\""},
      {"dmarc == fail", "dmarc == \"fail\""},
      {"dmarc.policy == reject", "dmarc.policy == \"reject\""},
      {"client.ptr == \"\"", "client.ptr == \"\""},
  };
  for (const auto& c : cases) {
    INFO("condition: " << c.condition);
    CHECK(conditionOf(c.condition) == c.tree);
  }
}

TEST_CASE("header.NAME fields take any header name, case-insensitively", "[parser]") {
  struct Case {
    std::string condition;
    std::string tree;
  };
  const std::vector<Case> cases = {
      {"header.subject ~ /x/", "header.subject ~ /x/"},
      {"header.Subject ~ /x/", "header.subject ~ /x/"},
      {"HEADER.X-Spam-Flag == yes", "header.x-spam-flag == \"yes\""},
      {"Header.Received", "header.received"},
      {"header.list-id in { a }", "header.list-id in {a}"},
  };
  for (const auto& c : cases) {
    INFO("condition: " << c.condition);
    CHECK(conditionOf(c.condition) == c.tree);
  }
}

TEST_CASE("every field of the field table is usable at its stage", "[parser]") {
  struct Case {
    std::string field;
    std::string stage;
  };
  const std::vector<Case> cases = {
      {"client.ip", "connect"},
      {"client.port", "connect"},
      {"client.ptr", "connect"},
      {"client.fcrdns", "connect"},
      {"local.port", "connect"},
      {"pregreet", "connect"},
      {"helo", "helo"},
      {"tls", "helo"},
      {"tls.version", "helo"},
      {"tls.cipher", "helo"},
      {"sender", "mail"},
      {"sender.domain", "mail"},
      {"mail.size", "mail"},
      {"spf", "mail"},
      {"spf.explanation", "mail"},
      {"rcpt", "rcpt"},
      {"rcpt.domain", "rcpt"},
      {"rcpt.count", "rcpt"},
      {"header.subject", "data"},
      {"body", "data"},
      {"rawbody", "data"},
      {"size", "data"},
      {"dkim", "data"},
      {"dkim.domain", "data"},
      {"dmarc", "data"},
      {"dmarc.policy", "data"},
      {"score", "data"},
      // A later stage sees every earlier one.
      {"client.ip", "data"},
      {"helo", "rcpt"},
      {"sender", "data"},
  };
  for (const auto& c : cases) {
    INFO(c.field << " at " << c.stage);
    CHECK(conditionOf(c.field, c.stage) == c.field);
  }
}

struct ActionCase {
  std::string action;
  RuleAction expected;
  bool monitor;
  double score;
  std::optional<std::string> reply;  // rendered with empty variables
};

TEST_CASE("every rule action parses, with and without a reply", "[parser]") {
  const std::vector<ActionCase> cases = {
      {"accept", RuleAction::Accept, false, 0, std::nullopt},
      {"tempfail", RuleAction::Tempfail, false, 0, std::nullopt},
      {"tempfail \"451 4.7.1 Try later\"", RuleAction::Tempfail, false, 0, "451 4.7.1 Try later"},
      {"reject", RuleAction::Reject, false, 0, std::nullopt},
      {"reject \"550 5.7.1 No\"", RuleAction::Reject, false, 0, "550 5.7.1 No"},
      {"reject \"554 5.7.1\"", RuleAction::Reject, false, 0, "554 5.7.1"},
      {"score 5", RuleAction::Score, false, 5, std::nullopt},
      {"score -5", RuleAction::Score, false, -5, std::nullopt},
      {"score 2.5", RuleAction::Score, false, 2.5, std::nullopt},
      {"score -0.25", RuleAction::Score, false, -0.25, std::nullopt},
      {"score 0", RuleAction::Score, false, 0, std::nullopt},
      {"monitor reject", RuleAction::Reject, true, 0, std::nullopt},
      {"monitor reject \"550 5.7.1 Would\"", RuleAction::Reject, true, 0, "550 5.7.1 Would"},
      {"monitor tempfail", RuleAction::Tempfail, true, 0, std::nullopt},
      {"monitor tempfail \"450 4.7.1 Would\"", RuleAction::Tempfail, true, 0, "450 4.7.1 Would"},
  };
  for (const auto& c : cases) {
    INFO("action: " << c.action);
    auto set = loadOk("rule r on connect when pregreet then " + c.action + "\n");
    REQUIRE(set->rules().size() == 1);
    const Rule& rule = set->rules()[0];
    CHECK(rule.action == c.expected);
    CHECK(rule.monitor == c.monitor);
    CHECK(rule.score == c.score);
    CHECK(rule.reply.has_value() == c.reply.has_value());
    if (rule.reply && c.reply) {
      CHECK(rule.reply->render({}) == *c.reply);
    }
  }
}

TEST_CASE("a rule records its id, stage, location and source line", "[parser]") {
  FakeListBuilder lists;
  auto set = loadOk(
      "# comment\n"
      "\n"
      "rule   spf-fail on mail when spf == fail then reject   # trailing comment\n"
      "\trule x.y_z-1 on rcpt when rcpt then accept\r\n",
      lists, "dir/file.rules");
  REQUIRE(set->rules().size() == 2);
  const Rule& a = set->rules()[0];
  CHECK(a.id == "spf-fail");
  CHECK(a.stage == Stage::Mail);
  CHECK(a.where.file == "dir/file.rules");
  CHECK(a.where.line == 3);
  CHECK(a.where.column == 8);
  CHECK(a.whereShort() == "dir/file.rules:3");
  CHECK(a.sourceLine ==
        "rule   spf-fail on mail when spf == fail then reject   # trailing comment");
  const Rule& b = set->rules()[1];
  CHECK(b.id == "x.y_z-1");
  CHECK(b.stage == Stage::Rcpt);
  CHECK(b.where.line == 4);
  CHECK(b.sourceLine == "\trule x.y_z-1 on rcpt when rcpt then accept");
  CHECK(set->files() == std::vector<std::string>{"dir/file.rules"});
}

TEST_CASE("rules of every stage parse", "[parser]") {
  auto set = loadOk(
      "rule a on connect when pregreet then reject\n"
      "rule b on helo when tls then accept\n"
      "rule c on mail when sender then accept\n"
      "rule d on rcpt when rcpt then accept\n"
      "rule e on data when body then accept\n"
      "rule f on data when size > 1 then score 1\n");
  const std::vector<std::pair<Stage, std::size_t>> expected = {
      {Stage::Connect, 1}, {Stage::Helo, 1}, {Stage::Mail, 1}, {Stage::Rcpt, 1}, {Stage::Data, 2}};
  for (const auto& [stage, count] : expected) {
    INFO("stage " << toString(stage));
    CHECK(set->ruleCount(stage) == count);
  }
}

TEST_CASE("thresholds parse with and without a reply", "[parser]") {
  auto set = loadOk(
      "threshold tempfail at 6 \"451 4.7.1 Message deferred, score $score\"\n"
      "threshold reject at 10\n"
      "threshold reject at 2.5 \"550 5.7.1 Spam\"\n"
      "threshold tempfail at -1\n");
  const auto& t = set->thresholds();
  REQUIRE(t.size() == 4);
  CHECK(t[0].action == RuleAction::Tempfail);
  CHECK(t[0].at == 6);
  REQUIRE(t[0].reply);
  CHECK(t[0].reply->render({"", "", "", "", "7", ""}) == "451 4.7.1 Message deferred, score 7");
  CHECK(t[0].where.line == 1);
  CHECK(t[0].where.column == 11);
  CHECK(t[1].action == RuleAction::Reject);
  CHECK(t[1].at == 10);
  CHECK_FALSE(t[1].reply);
  CHECK(t[2].at == 2.5);
  REQUIRE(t[2].reply);
  CHECK(t[2].reply->code() == 550);
  CHECK(t[3].at == -1);
}

TEST_CASE("inline lists of every kind hand their entries and columns to the builder",
          "[parser][lists]") {
  struct Case {
    std::string line;
    ListKind kind;
    std::vector<std::string> entries;
    std::vector<int> columns;
  };
  const std::vector<Case> cases = {
      {"list l cidr { 10.0.0.1, ::1 }", ListKind::Cidr, {"10.0.0.1", "::1"}, {15, 25}},
      {"list l domain { gmail.com, yahoo.com }  # freemail",
       ListKind::Domain,
       {"gmail.com", "yahoo.com"},
       {17, 28}},
      {"list l string {a,\"b c\",d}", ListKind::String, {"a", "b c", "d"}, {16, 18, 24}},
      {"list l string { }", ListKind::String, {}, {}},
      // A comment after the list may contain braces and commas.
      {"list l string { a, b }  # like {c, d}", ListKind::String, {"a", "b"}, {17, 20}},
      {"list l string { a }#{x}", ListKind::String, {"a"}, {17}},
      // Commas inside quotes do not split an entry.
      {"list l string { \"a,b\", c }", ListKind::String, {"a,b", "c"}, {17, 24}},
      {"list l string {}", ListKind::String, {}, {}},
  };
  for (const auto& c : cases) {
    INFO("line: " << c.line);
    FakeListBuilder lists;
    loadOk(c.line + "\n", lists);
    const auto* call = lists.find("l");
    REQUIRE(call != nullptr);
    CHECK(call->kind == c.kind);
    std::vector<std::string> texts;
    std::vector<int> columns;
    for (const auto& e : call->entries) {
      texts.push_back(e.text);
      columns.push_back(e.where.column);
      CHECK(e.where.line == 1);
      CHECK(e.where.file == "test.rules");
      CHECK(e.sourceLine == c.line);
    }
    CHECK(texts == c.entries);
    CHECK(columns == c.columns);
  }
}

TEST_CASE("a dnsbl list passes its zone to the builder as its one entry", "[parser][lists]") {
  FakeListBuilder lists;
  loadOk("list spamhaus dnsbl \"zen.spamhaus.org\"\n", lists);
  const auto* call = lists.find("spamhaus");
  REQUIRE(call != nullptr);
  CHECK(call->kind == ListKind::Dnsbl);
  REQUIRE(call->entries.size() == 1);
  CHECK(call->entries[0].text == "zen.spamhaus.org");
  CHECK(call->entries[0].where.line == 1);
  CHECK(call->entries[0].where.column == 22);
}

TEST_CASE("regex lists are compiled by rules/ and never handed to the builder", "[parser][lists]") {
  FakeListBuilder lists;
  loadOk("list words regex { foo, /bar/i }\nrule r on data when body ~ @words then accept\n",
         lists);
  CHECK(lists.calls.empty());
}

TEST_CASE("regexWithFlags folds flags into RE2 inline flags", "[parser]") {
  struct Case {
    std::string flags;
    std::optional<std::string> result;
  };
  const std::vector<Case> cases = {
      {"", "p"},        {"i", "(?i)p"},      {"m", "(?m)p"},
      {"s", "(?s)p"},   {"ims", "(?ims)p"},  {"smi", "(?smi)p"},
      {"iii", "(?i)p"}, {"x", std::nullopt}, {"ig", std::nullopt},
  };
  for (const auto& c : cases) {
    INFO("flags: " << c.flags);
    std::string error;
    auto result = regexWithFlags("p", c.flags, error);
    CHECK(result == c.result);
    CHECK(error.empty() == c.result.has_value());
  }
}

TEST_CASE("checkRegex returns RE2's message for a bad pattern and nothing for a good one",
          "[parser]") {
  CHECK(checkRegex("a(b|c)*").empty());
  CHECK(checkRegex("(?i)^x$").empty());
  CHECK_THAT(checkRegex("a(b"), Catch::Contains("missing )"));
  CHECK_THAT(checkRegex("[z-a]"), Catch::Contains("invalid character class range: z-a"));
  CHECK_THAT(checkRegex("a**"), Catch::Contains("bad repetition operator"));
  CHECK_THAT(checkRegex("(?<=x)y"), Catch::Contains("invalid perl operator"));
}

TEST_CASE("LineParser returns monostate for blank and comment lines", "[parser]") {
  for (std::string line : {"", "   ", "# comment", "  \t# x", "\r"}) {
    INFO("line: '" << line << "'");
    Diagnostics diags;
    Statement st = LineParser(line, "f", 1, diags).parse();
    CHECK(std::holds_alternative<std::monostate>(st));
    CHECK(diags.empty());
  }
}

TEST_CASE("LineParser returns each statement kind", "[parser]") {
  Diagnostics diags;
  auto inc = LineParser("include \"x/*.rules\"", "f", 1, diags).parse();
  REQUIRE(std::holds_alternative<IncludeStatement>(inc));
  CHECK(std::get<IncludeStatement>(inc).path == "x/*.rules");
  CHECK(std::get<IncludeStatement>(inc).where.column == 9);

  auto list = LineParser("list office cidr \"lists/office.cidr\"", "f", 2, diags).parse();
  REQUIRE(std::holds_alternative<ListStatement>(list));
  const auto& l = std::get<ListStatement>(list);
  CHECK(l.name == "office");
  CHECK(l.kind == ListKind::Cidr);
  CHECK_FALSE(l.isInline);
  CHECK(l.source == "lists/office.cidr");
  CHECK(l.sourceWhere.line == 2);
  CHECK(l.sourceWhere.column == 18);
  CHECK(l.where.column == 6);

  auto rule = LineParser("rule r on helo when helo then accept", "f", 3, diags).parse();
  CHECK(std::holds_alternative<Rule>(rule));
  auto threshold = LineParser("threshold reject at 1", "f", 4, diags).parse();
  CHECK(std::holds_alternative<Threshold>(threshold));
  CHECK(diags.empty());
}

}  // namespace
}  // namespace smtpgate::rules

namespace smtpgate::rules {
namespace {

using testing::FakeListBuilder;
using testing::MapFacts;

// Lines built from a fixed-seed soup of real and broken tokens: the loader
// must never crash or throw, must fail exactly when it reports an error, and
// every error it reports on a line must point inside that line.
TEST_CASE("random token soup never crashes the loader and errors point into their line",
          "[parser][robustness]") {
  const std::vector<std::string> tokens = {"rule",
                                           "r1",
                                           "r2",
                                           "on",
                                           "connect",
                                           "helo",
                                           "mail",
                                           "rcpt",
                                           "data",
                                           "when",
                                           "then",
                                           "accept",
                                           "reject",
                                           "tempfail",
                                           "score",
                                           "monitor",
                                           "5",
                                           "-2.5",
                                           "nan",
                                           "and",
                                           "or",
                                           "not",
                                           "(",
                                           ")",
                                           "{",
                                           "}",
                                           ",",
                                           "==",
                                           "!=",
                                           "~",
                                           "!~",
                                           "<",
                                           ">=",
                                           "in",
                                           "@a",
                                           "@w",
                                           "@zen:127.0.0.2",
                                           "@a:",
                                           "/x/i",
                                           "/a(/",
                                           "/y/q",
                                           "\"550 5.7.1 $sender\"",
                                           "\"451 4.7.1 \\\"x\\\" $foo\"",
                                           "\"unterminated",
                                           "/unterminated",
                                           "client.ip",
                                           "client.ptr",
                                           "header.Subject",
                                           "spf",
                                           "fail",
                                           "fial",
                                           "size",
                                           "1.2.3.4",
                                           "list",
                                           "cidr",
                                           "regex",
                                           "dnsbl",
                                           "string",
                                           "include",
                                           "threshold",
                                           "at",
                                           "#",
                                           "=",
                                           "!",
                                           "@",
                                           ";",
                                           "\t",
                                           "\xff",
                                           "true"};
  const std::vector<std::string> prefixes = {"",
                                             "rule r on data when ",
                                             "rule r on connect when ",
                                             "list a string { ",
                                             "list w regex { ",
                                             "threshold reject at 5 ",
                                             "rule r on data when helo ~ /x/ then "};
  std::mt19937 random(20240601);  // fixed: the same soup every run
  auto pick = [&](const std::vector<std::string>& from) {
    return from[std::uniform_int_distribution<std::size_t>(0, from.size() - 1)(random)];
  };
  testing::TempDir dir;
  const std::string name = (dir.path() / "soup.rules").string();
  int loaded = 0;
  for (int file = 0; file < 200; ++file) {
    std::vector<std::string> lines = {"list a string { x }", "list w regex { y }",
                                      "list zen dnsbl \"zen.example\""};
    for (int l = 0; l < 20; ++l) {
      std::string line = pick(prefixes);
      int n = std::uniform_int_distribution<int>(0, 12)(random);
      for (int t = 0; t < n; ++t) {
        line += pick(tokens) + (random() % 4 == 0 ? "" : " ");
      }
      lines.push_back(line);
    }
    std::string text;
    for (const auto& l : lines) {
      text += l + "\n";
    }
    INFO(text);
    FakeListBuilder lists;
    Diagnostics diags;
    RuleSetPtr set;
    REQUIRE_NOTHROW(set = RuleSet::loadText(text, name, lists, diags));
    CHECK((set == nullptr) == diags.hasErrors());
    for (const auto& d : diags.items()) {
      if (d.where.file != name) {
        continue;
      }
      INFO(format(d));
      REQUIRE(d.where.line >= 1);
      REQUIRE(d.where.line <= static_cast<int>(lines.size()));
      const std::string& line = lines[static_cast<std::size_t>(d.where.line - 1)];
      CHECK(d.sourceLine == line);
      CHECK(d.where.column >= 1);
      CHECK(d.where.column <= static_cast<int>(line.size()) + 1);
    }
    // Each line alone (after the list lines), so that some do load and run.
    for (std::size_t l = 3; l < lines.size(); ++l) {
      Diagnostics lineDiags;
      auto one = RuleSet::loadText(lines[0] + "\n" + lines[1] + "\n" + lines[2] + "\n" + lines[l],
                                   name, lists, lineDiags);
      CHECK((one == nullptr) == lineDiags.hasErrors());
      if (one) {
        ++loaded;
        MapFacts facts{{"helo", "x"}, {"body", "y"}, {"client.ip", testing::ip("127.0.0.2")}};
        for (Stage s : kAllStages) {
          CHECK_NOTHROW(one->evaluate(s, facts));
        }
      }
    }
  }
  CHECK(loaded > 20);  // some lines of the soup are valid statements
}

}  // namespace
}  // namespace smtpgate::rules
