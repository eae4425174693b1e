// Diagnostics: every error the loader reports, at its exact file:line:col,
// all errors of a file reported together, and the lint-style format().

#include "rules/diagnostic.h"

#include <algorithm>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "rules/parser.h"
#include "rules/rule_set.h"
#include "test_lists.h"

namespace smtpgate::rules {
namespace {

using testing::errorPositions;
using testing::FakeListBuilder;
using testing::TempDir;

struct ErrorCase {
  std::string what;
  std::string text;
  int line;
  int column;
  std::string fragment;  ///< "{file}" stands for the rule file's path
};

std::string replaceFile(std::string s, const std::string& file) {
  const std::string key = "{file}";
  for (auto pos = s.find(key); pos != std::string::npos; pos = s.find(key)) {
    s.replace(pos, key.size(), file);
  }
  return s;
}

// Loads `text` as `main.rules` in a fresh directory and expects exactly one error.
void expectOneError(const ErrorCase& c) {
  INFO(c.what << "\n" << c.text);
  TempDir dir;
  const std::string name = (dir.path() / "main.rules").string();
  FakeListBuilder lists;
  Diagnostics diags;
  auto set = RuleSet::loadText(c.text, name, lists, diags);
  INFO(format(diags));
  CHECK(set == nullptr);
  CHECK(diags.errorCount() == 1);
  if (!diags.hasErrors()) {
    return;  // reported above; the other cases of the table still run
  }
  const auto& d = *std::find_if(diags.items().begin(), diags.items().end(),
                                [](const Diagnostic& x) { return x.severity == Severity::Error; });
  CHECK(d.where.file == name);
  CHECK(d.where.line == c.line);
  CHECK(d.where.column == c.column);
  CHECK_THAT(d.message, Catch::Contains(replaceFile(c.fragment, name)));
  CHECK_FALSE(d.sourceLine.empty());
}

TEST_CASE("every syntax error is reported at its line and column", "[diagnostics]") {
  const std::vector<ErrorCase> cases = {
      {"unknown statement", "rules r on data", 1, 1,
       "expected 'rule', 'list', 'include' or 'threshold', found 'rules'"},
      {"unknown stage", "rule r on conect when helo then accept", 1, 11, "unknown stage 'conect'"},
      {"unknown action", "rule r on data when body then drop", 1, 31, "unknown action 'drop'"},
      {"= instead of ==", "rule r on data when helo = x then accept", 1, 26,
       "'=' is not an operator; use '=='"},
      {"! alone", "rule r on data when helo ! x then accept", 1, 26,
       "'!' must be followed by '=' or '~'"},
      {"unterminated string", "rule r on data when helo == \"abc then accept", 1, 29,
       "unterminated string"},
      {"unterminated regex", "rule r on data when body ~ /abc then accept", 1, 28,
       "unterminated regex"},
      {"stray character", "rule r on data when helo == x; then accept", 1, 30,
       "unexpected character ';'"},
      {"missing 'on'", "rule r data when body then accept", 1, 8,
       "expected 'on' after the rule id, found 'data'"},
      {"missing 'when'", "rule r on data body then accept", 1, 16,
       "expected 'when' after the stage"},
      {"missing 'then'", "rule r on data when body accept", 1, 26,
       "expected 'then' after the condition, found 'accept'"},
      {"condition cut short", "rule r on data when", 1, 20,
       "expected a condition, found end of line"},
      {"missing rule id", "rule \"x\" on data when body then accept", 1, 6, "expected a rule id"},
      {"unclosed parenthesis", "rule r on data when (body then accept", 1, 27, "expected ')'"},
      {"not without in", "rule r on data when helo not x then accept", 1, 30,
       "expected 'in' after 'not'"},
      {"missing value", "rule r on data when helo == then accept", 1, 34,
       "expected 'then' after the condition, found 'accept'"},
      {"value is a regex", "rule r on data when helo == /x/ then accept", 1, 29,
       "expected a value, found 'x'"},
      {"regex operand missing", "rule r on data when body ~ x then accept", 1, 28,
       "expected a regex /.../ or a regex list @name"},
      {"in without list", "rule r on data when helo in x then accept", 1, 29,
       "expected @listname or { ... } after 'in'"},
      {"set without comma", "rule r on data when helo in { a b } then accept", 1, 33,
       "expected ',' or '}'"},
      {"set with trailing comma", "rule r on data when helo in { a, } then accept", 1, 34,
       "expected a word or \"string\" in { ... }"},
      {"monitor accept", "rule r on data when body then monitor accept", 1, 39,
       "expected 'reject' or 'tempfail' after 'monitor'"},
      {"score without number", "rule r on data when body then score x", 1, 37,
       "expected a number after 'score'"},
      {"score without anything", "rule r on data when body then score", 1, 36,
       "expected a number after 'score'"},
      {"reply on accept", "rule r on data when body then accept \"250 2.0.0 ok\"", 1, 38,
       "unexpected '250 2.0.0 ok' at end of statement"},
      {"trailing word", "rule r on data when body then reject now", 1, 38,
       "unexpected 'now' at end of statement"},
      {"threshold action", "threshold accept at 5", 1, 11,
       "expected 'tempfail' or 'reject' after 'threshold'"},
      {"threshold without at", "threshold reject 5", 1, 18, "expected 'at'"},
      {"threshold without score", "threshold reject at x", 1, 21, "expected a score after 'at'"},
      {"include without file", "include missing.rules", 1, 9, "expected a quoted file name"},
      {"include of an empty name", "include \"\"", 1, 9, "expected a quoted file name"},
      {"list without name", "list \"x\" cidr { }", 1, 6, "expected a list name"},
      {"unknown list kind", "list x ipset { }", 1, 8, "unknown list kind 'ipset'"},
      {"list without entries", "list x cidr", 1, 12, "expected a quoted file name or { entries }"},
      {"dnsbl without zone", "list x dnsbl", 1, 13, "expected the DNSBL zone in quotes"},
      {"dnsbl with braces", "list x dnsbl { a }", 1, 14, "a dnsbl list names one zone"},
      {"list without closing brace", "list x string { a, b", 1, 15,
       "missing '}' at the end of the list"},
      {"empty list entry", "list x string { a,, b }", 1, 19, "empty list entry"},
      {"trailing comma in list", "list x string { a, }", 1, 20, "empty list entry"},
  };
  for (const auto& c : cases) {
    expectOneError(c);
  }
}

TEST_CASE("every semantic error of a line is reported at its column", "[diagnostics]") {
  const std::vector<ErrorCase> cases = {
      {"unknown field", "rule r on data when bogus == 1 then accept", 1, 21,
       "unknown field 'bogus'"},
      {"unknown field: header without name", "rule r on data when header then accept", 1, 21,
       "unknown field 'header'"},
      {"unknown field: names are case-sensitive", "rule r on data when Helo then accept", 1, 21,
       "unknown field 'Helo'"},
      {"field not known at the stage", "rule r on mail when dkim == pass then accept", 1, 21,
       "field 'dkim' is not known at stage mail (it is known from stage data on)"},
      {"header at rcpt", "rule r on rcpt when header.subject ~ /x/ then accept", 1, 21,
       "field 'header.subject' is not known at stage rcpt"},
      {"rcpt at mail", "rule r on mail when rcpt.count > 5 then accept", 1, 21,
       "is not known at stage mail"},
      {"helo at connect", "rule r on connect when helo then accept", 1, 24,
       "is not known at stage connect"},
      {"bad regex", "rule r on data when body ~ /a(b/ then accept", 1, 28,
       "bad regex: missing ): a(b"},
      {"bad regex, RE2's wording", "rule r on data when body ~ /x**/ then accept", 1, 28,
       "bad regex: bad repetition operator: **"},
      {"unknown regex flag", "rule r on data when body ~ /x/ig then accept", 1, 31,
       "unknown regex flag 'g' (known: i, m, s)"},
      {"unknown spf result", "rule r on mail when spf == fial then reject", 1, 28,
       "unknown spf result 'fial' (expected one of: none, neutral, pass, fail, softfail, "
       "temperror, permerror)"},
      {"unknown dkim result", "rule r on data when dkim != passed then reject", 1, 29,
       "unknown dkim result 'passed'"},
      {"~ on a number field", "rule r on data when size ~ /1/ then accept", 1, 26,
       "'~' needs a text field; size is a number"},
      {"!~ on a bool field", "rule r on helo when tls !~ /1/ then accept", 1, 25,
       "'!~' needs a text field; tls is true or false"},
      {"< on a text field", "rule r on data when helo < 5 then accept", 1, 26,
       "'<' compares numbers; helo is text"},
      {">= on an ip field", "rule r on connect when client.ip >= 1.2.3.4 then accept", 1, 34,
       "'>=' compares numbers; client.ip is an IP address"},
      {"number field with a word", "rule r on data when size == big then accept", 1, 29,
       "size is a number; 'big' is not"},
      {"bool field with a word", "rule r on helo when tls == yes then accept", 1, 28,
       "tls is true or false, not 'yes'"},
      {"ip field with a network", "rule r on connect when client.ip == 10.0.0 then accept", 1, 37,
       "'10.0.0' is not an IP address (for networks use a cidr list)"},
      {"set on an ip field", "rule r on connect when client.ip in { 1.2.3.4 } then accept", 1, 34,
       "'in { ... }' needs a text field"},
      {"tempfail reply not 4xx", "rule r on data when body then tempfail \"550 5.7.1 x\"", 1, 41,
       "a tempfail reply must be a 4xx code, not 550"},
      {"reject reply not 5xx", "rule r on data when body then reject \"451 4.7.1 x\"", 1, 39,
       "a reject reply must be a 5xx code, not 451"},
      {"monitor reject reply not 5xx",
       "rule r on data when body then monitor reject \"451 4.7.1 x\"", 1, 47,
       "a reject reply must be a 5xx code"},
      {"threshold reply not 4xx", "threshold tempfail at 5 \"550 5.7.1 x\"", 1, 26,
       "a tempfail reply must be a 4xx code"},
      {"enhanced code class mismatch", "rule r on data when body then reject \"550 4.7.1 x\"", 1,
       43, "enhanced status code 4.7.1 does not match reply code 550"},
      {"reply without enhanced code", "rule r on data when body then reject \"550 go away\"", 1, 43,
       "expected an RFC 3463 enhanced status code"},
      {"reply without code", "rule r on data when body then reject \"go away\"", 1, 39,
       "reply must start with a three-digit SMTP code"},
      {"unknown reply variable", "rule r on data when body then reject \"550 5.7.1 hi $foo\"", 1,
       52, "unknown variable $foo"},
      {"unknown list", "rule r on data when helo in @nope then accept", 1, 29,
       "unknown list '@nope'"},
      {"unknown regex list", "rule r on data when body ~ @nope then accept", 1, 28,
       "unknown list '@nope'"},
      {"duplicate list", "list a string { x }\nlist a string { y }", 2, 6,
       "duplicate list 'a' (first defined at {file}:1)"},
      {"duplicate rule id",
       "rule r on data when body then accept\n\nrule r on helo when helo then accept", 3, 6,
       "duplicate rule id 'r' (first defined at {file}:1)"},
      {"bad CIDR", "list office cidr { 10.0.0.1, nonsense }", 1, 30, "bad CIDR 'nonsense'"},
      {"in @regexlist", "list words regex { x }\nrule r on data when body in @words then accept", 2,
       29, "'@words' is a regex list: match it with '~'"},
      {"~ @cidrlist",
       "list office cidr { 10.0.0.1 }\nrule r on data when helo ~ @office then accept", 2, 28,
       "'~' needs a regex list; '@office' is a cidr list (use 'in')"},
      {"ip field in a domain list",
       "list fm domain { gmail.com }\nrule r on connect when client.ip in @fm then accept", 2, 37,
       "'@fm' is a domain list and cannot hold client.ip (it holds names)"},
      {"text field in a cidr list",
       "list office cidr { 10.0.0.1 }\nrule r on helo when helo in @office then accept", 2, 29,
       "'@office' is a cidr list and cannot hold helo (it holds IP addresses)"},
      {"qualifier on a non-dnsbl list",
       "list office cidr { 10.0.0.1 }\n"
       "rule r on connect when client.ip in @office:127.0.0.2 then accept",
       2, 37, "only dnsbl lists take an answer code"},
      {"bad dnsbl qualifier",
       "list zen dnsbl \"zen.example.org\"\n"
       "rule r on connect when client.ip in @zen:127.0.0 then accept",
       2, 37, "bad DNSBL answer code '127.0.0'"},
      {"regex in a list", "list words regex { ok, a(b }", 1, 24,
       "bad regex in list 'words': missing ): a(b"},
      {"qualifier on a regex list",
       "list words regex { x }\nrule r on data when body ~ @words:127.0.0.2 then accept", 2, 28,
       "only dnsbl lists take an answer code"},
      {"empty qualifier",
       "list zen dnsbl \"zen.example.org\"\n"
       "rule r on connect when client.ip in @zen: then accept",
       2, 37, "expected an answer code after '@zen:'"},
      {"unknown spf result in a set", "rule r on mail when spf in { pass, fial } then reject", 1,
       36, "unknown spf result 'fial'"},
      {"unknown dmarc.policy in a set",
       "rule r on data when dmarc.policy not in { Reject, quarantaine } then reject", 1, 51,
       "unknown dmarc.policy result 'quarantaine'"},
      {"score nan", "rule r on data when body then score nan", 1, 37,
       "expected a number after 'score'"},
      {"score inf", "rule r on data when body then score -inf", 1, 37,
       "expected a number after 'score'"},
      {"score too large", "rule r on data when body then score 1e999", 1, 37,
       "expected a number after 'score'"},
      {"threshold at infinity", "threshold reject at inf", 1, 21, "expected a score after 'at'"},
      {"comparison with nan", "rule r on data when size > nan then reject", 1, 28,
       "size is a number; 'nan' is not"},
      {"unknown variable after escaped quotes",
       "rule r on data when body then reject \"550 5.7.1 \\\"$sender\\\" or $who\"", 1, 64,
       "unknown variable $who"},
  };
  for (const auto& c : cases) {
    expectOneError(c);
  }
}

TEST_CASE("a missing include or list file is reported at its quoted name", "[diagnostics]") {
  const std::vector<ErrorCase> cases = {
      {"missing include", "# x\ninclude \"nope.rules\"", 2, 9, "cannot read rule file"},
      {"missing list file", "list office cidr \"lists/none.cidr\"", 1, 18, "cannot read list file"},
  };
  for (const auto& c : cases) {
    // The reported path is the directory of main.rules joined with the name.
    INFO(c.what);
    TempDir dir;
    const std::string name = (dir.path() / "main.rules").string();
    const std::string expectedPath = c.what == "missing include"
                                         ? (dir.path() / "nope.rules").string()
                                         : (dir.path() / "lists/none.cidr").string();
    FakeListBuilder lists;
    Diagnostics diags;
    auto set = RuleSet::loadText(c.text, name, lists, diags);
    INFO(format(diags));
    CHECK(set == nullptr);
    REQUIRE(diags.errorCount() == 1);
    const auto& d = diags.items().front();
    CHECK(d.where.file == name);
    CHECK(d.where.line == c.line);
    CHECK(d.where.column == c.column);
    CHECK_THAT(d.message, Catch::Contains(c.fragment + " '" + expectedPath + "'"));
    CHECK_THAT(d.message, Catch::Contains("No such file or directory"));
    CHECK(d.sourceLine == c.text.substr(c.text.rfind('\n') + 1));
  }
}

TEST_CASE("an include cycle is an error at the include that closes it", "[diagnostics]") {
  TempDir dir;
  const std::string a =
      dir.write("a.rules", "rule ra on data when body then accept\ninclude \"b.rules\"\n");
  const std::string b =
      dir.write("b.rules", "\n\ninclude \"a.rules\"\nrule rb on data when body then accept\n");
  FakeListBuilder lists;
  Diagnostics diags;
  auto set = RuleSet::load({a}, lists, diags);
  INFO(format(diags));
  CHECK(set == nullptr);
  REQUIRE(diags.errorCount() == 1);
  const auto& d = diags.items().front();
  CHECK(d.where.file == b);
  CHECK(d.where.line == 3);
  CHECK(d.where.column == 9);
  CHECK_THAT(d.message, Catch::StartsWith("include cycle: "));
  CHECK_THAT(d.message, Catch::Contains("a.rules -> "));
  CHECK_THAT(d.message, Catch::Contains("b.rules -> "));
  CHECK_THAT(d.message, Catch::EndsWith("a.rules"));
  CHECK(d.sourceLine == "include \"a.rules\"");
}

TEST_CASE("a file that includes itself is an include cycle", "[diagnostics]") {
  TempDir dir;
  const std::string a = dir.write("self.rules", "include \"self.rules\"\n");
  FakeListBuilder lists;
  Diagnostics diags;
  CHECK(RuleSet::load({a}, lists, diags) == nullptr);
  REQUIRE(diags.errorCount() == 1);
  CHECK(diags.items().front().where.line == 1);
  CHECK_THAT(diags.items().front().message, Catch::StartsWith("include cycle: "));
}

TEST_CASE("a missing top-level rule file is an error on the file as a whole", "[diagnostics]") {
  TempDir dir;
  const std::string missing = (dir.path() / "absent.rules").string();
  FakeListBuilder lists;
  Diagnostics diags;
  CHECK(RuleSet::load({missing}, lists, diags) == nullptr);
  REQUIRE(diags.errorCount() == 1);
  const auto& d = diags.items().front();
  CHECK(d.where.file == missing);
  CHECK(d.where.line == 0);
  CHECK(d.where.column == 0);
  CHECK_THAT(d.message, Catch::Contains("cannot read rule file"));
  CHECK_THAT(format(d), Catch::StartsWith(missing + ": error: cannot read rule file"));
}

std::string nested(int depth) {
  return "rule r on data when " + std::string(static_cast<std::size_t>(depth), '(') + "helo" +
         std::string(static_cast<std::size_t>(depth), ')') + " then accept";
}

std::string nots(int count) {
  std::string out;
  for (int i = 0; i < count; ++i) {
    out += "not ";
  }
  return out;
}

TEST_CASE("nesting deeper than the limit is an error, not a crash", "[diagnostics]") {
  CHECK(testing::loadOk(nested(kMaxConditionDepth)) != nullptr);
  CHECK(testing::loadOk("rule r on data when " + nots(kMaxConditionDepth) + "helo then accept") !=
        nullptr);

  struct Case {
    std::string what;
    std::string text;
    int column;
  };
  const std::vector<Case> cases = {
      {"65 parentheses", nested(kMaxConditionDepth + 1), 21 + kMaxConditionDepth + 1},
      {"65 nots", "rule r on data when " + nots(kMaxConditionDepth + 1) + "helo then accept",
       21 + 4 * (kMaxConditionDepth + 1)},
      {"100,000 parentheses", nested(100000), 21 + kMaxConditionDepth + 1},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    auto diags = testing::loadErrors(c.text);
    REQUIRE(diags.errorCount() == 1);
    CHECK(diags.items().front().where.column == c.column);
    CHECK_THAT(diags.items().front().message,
               Catch::Contains("condition nested too deeply (more than 64 levels)"));
  }
}

TEST_CASE("every error in a file is reported, each on its own line", "[diagnostics]") {
  const std::string text =
      "list words regex { x }\n"                                  // 1 (fine)
      "rule a on data when bogus then accept\n"                   // 2 unknown field
      "rule b on mail when dkim == pass then accept\n"            // 3 not known at mail
      "rule c on data when body ~ /a(b/ then accept\n"            // 4 bad regex
      "rule d on data when helo == \"x then accept\n"             // 5 unterminated string
      "rule e on data when helo in @nope then accept\n"           // 6 unknown list
      "rule f on data when body then tempfail \"550 5.7.1 x\"\n"  // 7 tempfail not 4xx
      "rule a on data when body then accept\n"                    // 8 duplicate id
      "rule g on mail when spf == fial then accept\n"             // 9 unknown spf word
      "rule h on data when body in @words then accept\n"          // 10 in @regexlist
      "rule i on dta when body then accept\n"                     // 11 unknown stage
      "rule j on data when size ~ /x/ then accept\n";             // 12 ~ on a number
  auto diags = testing::loadErrors(text);
  auto positions = errorPositions(diags);
  std::sort(positions.begin(), positions.end(),
            [](const std::string& x, const std::string& y) { return std::stoi(x) < std::stoi(y); });
  CHECK(positions == std::vector<std::string>{"2:21", "3:21", "4:28", "5:29", "6:29", "7:41", "8:6",
                                              "9:28", "10:29", "11:11", "12:26"});
}

TEST_CASE("several errors on one line are all reported", "[diagnostics]") {
  auto diags = testing::loadErrors(
      "rule r on mail when bogus == 1 and dkim == pass and body ~ /(/ then reject \"451 4.7.1 x\"");
  CHECK(errorPositions(diags) == std::vector<std::string>{"1:21", "1:36", "1:53", "1:60", "1:77"});
}

TEST_CASE("format prints file:line:col, the source line and a caret", "[diagnostics]") {
  struct Case {
    Diagnostic d;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{Severity::Error, {"a.rules", 3, 5}, "bad thing", "rule x on y"},
       "a.rules:3:5: error: bad thing\n"
       "  rule x on y\n"
       "      ^\n"},
      {{Severity::Error, {"a.rules", 3, 1}, "at start", "rule"},
       "a.rules:3:1: error: at start\n"
       "  rule\n"
       "  ^\n"},
      {{Severity::Warning, {"b.rules", 1, 3}, "careful", "\tx y"},
       "b.rules:1:3: warning: careful\n"
       "  \tx y\n"
       "  \t ^\n"},
      {{Severity::Note, {"c.rules", 2, 0}, "whole line", "abc"},
       "c.rules:2: note: whole line\n"
       "  abc\n"},
      {{Severity::Error, {"d.rules", 0, 0}, "whole file", ""}, "d.rules: error: whole file\n"},
      {{Severity::Error, {"e.rules", 4, 2}, "no source", ""}, "e.rules:4:2: error: no source\n"},
      {{Severity::Error, {"f.rules", 1, 9}, "past the end", "ab"},
       "f.rules:1:9: error: past the end\n"
       "  ab\n"
       "    ^\n"},
  };
  for (const auto& c : cases) {
    INFO(c.expected);
    CHECK(format(c.d) == c.expected);
  }
}

TEST_CASE("format of a load puts the caret under the reported column", "[diagnostics]") {
  auto diags = testing::loadErrors("\nrule r on data when helo = x then accept\n");
  CHECK(format(diags) ==
        "test.rules:2:26: error: '=' is not an operator; use '==' to compare\n"
        "  rule r on data when helo = x then accept\n" +
            std::string(2 + 25, ' ') + "^\n");
}

TEST_CASE("Diagnostics counts errors apart from warnings and notes", "[diagnostics]") {
  Diagnostics diags;
  CHECK(diags.empty());
  CHECK_FALSE(diags.hasErrors());
  diags.warning({"f", 1, 1}, "w");
  diags.note({"f", 1, 1}, "n");
  CHECK_FALSE(diags.hasErrors());
  CHECK(diags.errorCount() == 0);
  Diagnostics more;
  more.error({"g", 2, 2}, "e");
  diags.append(more);
  CHECK(diags.hasErrors());
  CHECK(diags.errorCount() == 1);
  CHECK(diags.items().size() == 3);
  CHECK(diags.items().back().where.file == "g");
}

}  // namespace
}  // namespace smtpgate::rules
