// The loader across files: include (relative paths, globs, repeated
// includes), list files with comments, several top-level files, and the
// rule set's file list and fingerprint. Uses real files in a temp directory.

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "rules/rule_set.h"
#include "test_lists.h"

namespace smtpgate::rules {
namespace {

using testing::FakeListBuilder;
using testing::MapFacts;
using testing::TempDir;

std::vector<std::string> ruleIds(const RuleSet& set) {
  std::vector<std::string> out;
  for (const auto& r : set.rules()) {
    out.push_back(r.id);
  }
  return out;
}

RuleSetPtr loadFiles(const std::vector<std::string>& files, FakeListBuilder& lists) {
  Diagnostics diags;
  auto set = RuleSet::load(files, lists, diags);
  INFO(format(diags));
  REQUIRE(set != nullptr);
  CHECK_FALSE(diags.hasErrors());
  return set;
}

TEST_CASE("include splices a file's rules in at the include, relative to the including file",
          "[loader][include]") {
  TempDir dir;
  const std::string main = dir.write("main.rules",
                                     "rule m1 on data when body then score 1\n"
                                     "include \"sub/a.rules\"\n"
                                     "rule m2 on data when body then score 1\n");
  dir.write("sub/a.rules",
            "rule a1 on data when body then score 1\n"
            "include \"b.rules\"   # sub/b.rules, not ./b.rules\n"
            "rule a2 on data when body then score 1\n");
  dir.write("sub/b.rules", "rule b1 on data when body then score 1\n");
  dir.write("b.rules", "rule wrong on data when body then score 1\n");
  FakeListBuilder lists;
  auto set = loadFiles({main}, lists);
  CHECK(ruleIds(*set) == std::vector<std::string>{"m1", "a1", "b1", "a2", "m2"});
  CHECK(set->files() == std::vector<std::string>{main, (dir.path() / "sub/a.rules").string(),
                                                 (dir.path() / "sub/b.rules").string()});
  CHECK(set->rules()[2].where.file == (dir.path() / "sub/b.rules").string());
  CHECK(set->rules()[2].where.line == 1);
}

TEST_CASE("include takes an absolute path as is", "[loader][include]") {
  TempDir dir;
  const std::string other =
      dir.write("elsewhere/x.rules", "rule x on data when body then accept\n");
  const std::string main = dir.write("main.rules", "include \"" + other + "\"\n");
  FakeListBuilder lists;
  auto set = loadFiles({main}, lists);
  CHECK(ruleIds(*set) == std::vector<std::string>{"x"});
}

TEST_CASE("an include glob loads every match in sorted order", "[loader][include]") {
  TempDir dir;
  const std::string main = dir.write("main.rules",
                                     "include \"conf.d/*.rules\"\n"
                                     "rule last on data when body then score 1\n");
  dir.write("conf.d/20-b.rules", "rule b on data when body then score 1\n");
  dir.write("conf.d/10-a.rules", "rule a on data when body then score 1\n");
  dir.write("conf.d/30-c.rules", "rule c on data when body then score 1\n");
  dir.write("conf.d/notes.txt", "this is not a rule file\n");
  FakeListBuilder lists;
  auto set = loadFiles({main}, lists);
  CHECK(ruleIds(*set) == std::vector<std::string>{"a", "b", "c", "last"});
}

TEST_CASE("an include glob that matches nothing is a warning, not an error", "[loader][include]") {
  TempDir dir;
  const std::string main = dir.write("main.rules",
                                     "rule r on data when body then accept\n"
                                     "include \"conf.d/*.rules\"\n");
  FakeListBuilder lists;
  Diagnostics diags;
  auto set = RuleSet::load({main}, lists, diags);
  CHECK(set != nullptr);
  REQUIRE(diags.items().size() == 1);
  const auto& d = diags.items()[0];
  CHECK(d.severity == Severity::Warning);
  CHECK(d.where.line == 2);
  CHECK(d.where.column == 9);
  CHECK_THAT(d.message, Catch::Contains("include pattern 'conf.d/*.rules' matches no file"));
}

TEST_CASE("a file included twice is loaded once", "[loader][include]") {
  TempDir dir;
  const std::string main = dir.write("main.rules",
                                     "include \"common.rules\"\n"
                                     "include \"./common.rules\"\n"
                                     "include \"x.rules\"\n");
  dir.write("x.rules", "include \"common.rules\"\nrule x on data when body then accept\n");
  dir.write("common.rules",
            "list shared string { a }\nrule common on data when body then accept\n");
  FakeListBuilder lists;
  auto set = loadFiles({main}, lists);
  CHECK(ruleIds(*set) == std::vector<std::string>{"common", "x"});
  CHECK(lists.calls.size() == 1);
}

TEST_CASE("several top-level files load in order and share lists and rule ids", "[loader]") {
  TempDir dir;
  const std::string lists1 = dir.write("10-lists.rules", "list names string { bob }\n");
  const std::string rules2 =
      dir.write("20-rules.rules", "rule r on mail when sender in @names then reject\n");
  FakeListBuilder lists;
  auto set = loadFiles({lists1, rules2}, lists);
  CHECK(ruleIds(*set) == std::vector<std::string>{"r"});
  CHECK(set->files() == std::vector<std::string>{lists1, rules2});

  const std::string dup = dir.write("30-dup.rules", "rule r on mail when sender then accept\n");
  Diagnostics diags;
  CHECK(RuleSet::load({lists1, rules2, dup}, lists, diags) == nullptr);
  REQUIRE(diags.errorCount() == 1);
  CHECK(diags.items()[0].where.file == dup);
  CHECK_THAT(diags.items()[0].message, Catch::Contains("first defined at " + rules2 + ":1"));
}

TEST_CASE("a list file's entries reach the builder without comments, at their own positions",
          "[loader][lists]") {
  TempDir dir;
  const std::string main = dir.write("main.rules", "list office cidr \"lists/office.cidr\"\n");
  const std::string listFile = dir.write("lists/office.cidr",
                                         "# office networks\n"
                                         "10.0.0.1   # the router\n"
                                         "\n"
                                         "   2001:db8::1\n"
                                         "\t# indented comment\n"
                                         "192.0.2.7\r\n");
  FakeListBuilder lists;
  loadFiles({main}, lists);
  const auto* call = lists.find("office");
  REQUIRE(call != nullptr);
  CHECK(call->kind == ListKind::Cidr);
  struct Want {
    std::string text;
    int line;
    int column;
    std::string sourceLine;
  };
  const std::vector<Want> want = {
      {"10.0.0.1", 2, 1, "10.0.0.1   # the router"},
      {"2001:db8::1", 4, 4, "   2001:db8::1"},
      {"192.0.2.7", 6, 1, "192.0.2.7"},  // CRLF line ends are tolerated
  };
  REQUIRE(call->entries.size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("entry " << i);
    CHECK(call->entries[i].text == want[i].text);
    CHECK(call->entries[i].where.file == listFile);
    CHECK(call->entries[i].where.line == want[i].line);
    CHECK(call->entries[i].where.column == want[i].column);
    CHECK(call->entries[i].sourceLine == want[i].sourceLine);
  }
}

TEST_CASE("a list file is found relative to the rule file that declares it", "[loader][lists]") {
  TempDir dir;
  const std::string main = dir.write("main.rules", "include \"sub/lists.rules\"\n");
  dir.write("sub/lists.rules", "list names string \"names.txt\"\n");
  dir.write("sub/names.txt", "alice\nbob\n");
  dir.write("names.txt", "mallory\n");
  FakeListBuilder lists;
  loadFiles({main}, lists);
  const auto* call = lists.find("names");
  REQUIRE(call != nullptr);
  REQUIRE(call->entries.size() == 2);
  CHECK(call->entries[0].text == "alice");
  CHECK(call->entries[1].text == "bob");
}

TEST_CASE("a bad entry in a list file is reported at the list file's line and column",
          "[loader][lists]") {
  TempDir dir;
  const std::string main = dir.write("main.rules", "list office cidr \"office.cidr\"\n");
  const std::string listFile = dir.write("office.cidr", "10.0.0.1\n  not-an-ip # oops\n");
  FakeListBuilder lists;
  Diagnostics diags;
  CHECK(RuleSet::load({main}, lists, diags) == nullptr);
  REQUIRE(diags.errorCount() == 1);
  const auto& d = diags.items()[0];
  CHECK(d.where.file == listFile);
  CHECK(d.where.line == 2);
  CHECK(d.where.column == 3);
  CHECK(d.sourceLine == "  not-an-ip # oops");
  CHECK_THAT(d.message, Catch::Contains("bad CIDR 'not-an-ip'"));
}

TEST_CASE("a regex list file keeps # inside patterns and skips whole-line comments",
          "[loader][lists][regex]") {
  TempDir dir;
  const std::string main = dir.write("main.rules",
                                     "list words regex \"words.re\"\n"
                                     "rule hit on data when body ~ @words then reject\n");
  dir.write("words.re",
            "# comment line\n"
            "a#b\n"
            "  # indented comment\n"
            "/viagra/i\n");
  FakeListBuilder lists;
  auto set = loadFiles({main}, lists);
  struct Case {
    std::string body;
    bool rejected;
  };
  const std::vector<Case> cases = {
      {"xa#by", true},     {"VIAGRA now", true}, {"comment line", false},
      {"indented", false}, {"a b", false},       {"", false},
  };
  for (const auto& c : cases) {
    INFO("body: " << c.body);
    MapFacts facts{{"body", c.body}};
    CHECK((set->evaluate(Stage::Data, facts).decisive != nullptr) == c.rejected);
  }
}

TEST_CASE("a bad pattern in a regex list file is reported at its own line", "[loader][lists]") {
  TempDir dir;
  const std::string main = dir.write("main.rules", "list words regex \"words.re\"\n");
  const std::string listFile = dir.write("words.re", "ok\n\n   (unclosed\n/x/q\n");
  FakeListBuilder lists;
  Diagnostics diags;
  CHECK(RuleSet::load({main}, lists, diags) == nullptr);
  INFO(format(diags));
  REQUIRE(diags.errorCount() == 2);
  CHECK(diags.items()[0].where.file == listFile);
  CHECK(diags.items()[0].where.line == 3);
  CHECK(diags.items()[0].where.column == 4);
  CHECK_THAT(diags.items()[0].message,
             Catch::Contains("bad regex in list 'words': missing ): (unclosed"));
  CHECK(diags.items()[1].where.line == 4);
  CHECK_THAT(diags.items()[1].message, Catch::Contains("unknown regex flag 'q'"));
}

TEST_CASE("including a directory or reading a directory as a list is an error",
          "[loader][include]") {
  TempDir dir;
  dir.write("conf.d/a.rules", "rule a on data when body then accept\n");
  dir.write("lists.d/x.txt", "x\n");
  const std::string main = dir.write("main.rules",
                                     "include \"conf.d\"\n"
                                     "list names string \"lists.d\"\n");
  FakeListBuilder lists;
  Diagnostics diags;
  CHECK(RuleSet::load({main}, lists, diags) == nullptr);
  INFO(format(diags));
  REQUIRE(diags.errorCount() == 2);
  CHECK(diags.items()[0].where.line == 1);
  CHECK(diags.items()[0].where.column == 9);
  CHECK_THAT(diags.items()[0].message, Catch::Contains("cannot read rule file"));
  CHECK_THAT(diags.items()[0].message, Catch::Contains("Is a directory"));
  CHECK(diags.items()[1].where.line == 2);
  CHECK(diags.items()[1].where.column == 19);
  CHECK_THAT(diags.items()[1].message, Catch::Contains("cannot read list file"));
  CHECK_THAT(diags.items()[1].message, Catch::Contains("Is a directory"));
}

TEST_CASE("includes nested deeper than the limit are an error, not a crash", "[loader][include]") {
  TempDir dir;
  // f0 includes f1 includes ... f29.
  for (int i = 0; i < 30; ++i) {
    dir.write("f" + std::to_string(i) + ".rules",
              (i + 1 < 30 ? "include \"f" + std::to_string(i + 1) + ".rules\"\n" : std::string()) +
                  "rule r" + std::to_string(i) + " on data when body then accept\n");
  }
  FakeListBuilder lists;
  Diagnostics diags;
  CHECK(RuleSet::load({(dir.path() / "f0.rules").string()}, lists, diags) == nullptr);
  INFO(format(diags));
  REQUIRE(diags.errorCount() == 1);
  CHECK(diags.items()[0].where.file == (dir.path() / "f15.rules").string());
  CHECK(diags.items()[0].where.line == 1);
  CHECK_THAT(diags.items()[0].message, Catch::Contains("includes nested more than 16 deep"));
}

TEST_CASE("a list with no entries at all is a warning at its declaration", "[loader][lists]") {
  TempDir dir;
  dir.write("empty.txt", "# nothing yet\n\n");
  dir.write("empty.re", "");
  const std::string main = dir.write("main.rules",
                                     "list a string { }\n"
                                     "list b domain \"empty.txt\"\n"
                                     "list c regex \"empty.re\"\n"
                                     "list d cidr { 10.0.0.1 }\n"
                                     "list e string \"missing.txt\"\n");
  FakeListBuilder lists;
  Diagnostics diags;
  CHECK(RuleSet::load({main}, lists, diags) == nullptr);  // the missing file is an error
  INFO(format(diags));
  struct Want {
    Severity severity;
    int line;
    int column;
    std::string message;
  };
  const std::vector<Want> want = {
      {Severity::Warning, 1, 6, "list a is empty"},
      {Severity::Warning, 2, 6, "list b is empty"},
      {Severity::Warning, 3, 6, "list c is empty"},
      {Severity::Error, 5, 15, "cannot read list file"},  // and no "empty" warning besides
  };
  REQUIRE(diags.items().size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("diagnostic " << i);
    const auto& d = diags.items()[i];
    CHECK(d.severity == want[i].severity);
    CHECK(d.where.file == main);
    CHECK(d.where.line == want[i].line);
    CHECK(d.where.column == want[i].column);
    CHECK_THAT(d.message, Catch::Contains(want[i].message));
    CHECK_FALSE(d.sourceLine.empty());
  }
}

TEST_CASE("the fingerprint is 12 hex digits and follows the files' bytes", "[loader]") {
  TempDir dir;
  const std::string main = dir.write("main.rules", "list n string \"n.txt\"\n");
  dir.write("n.txt", "a\n");
  FakeListBuilder lists;
  const std::string first = loadFiles({main}, lists)->hash();
  CHECK(first.size() == 12);
  CHECK(first.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(loadFiles({main}, lists)->hash() == first);

  dir.write("n.txt", "b\n");  // a list file changes the fingerprint too
  const std::string second = loadFiles({main}, lists)->hash();
  CHECK(second != first);
  dir.write("main.rules", "list n string \"n.txt\"\n# comment\n");
  CHECK(loadFiles({main}, lists)->hash() != second);
}

TEST_CASE("loadText resolves includes relative to the directory of its name", "[loader]") {
  TempDir dir;
  dir.write("inc.rules", "rule inc on data when body then accept\n");
  FakeListBuilder lists;
  auto set = testing::loadOk("include \"inc.rules\"\nrule own on data when body then accept\n",
                             lists, (dir.path() / "virtual.rules").string());
  CHECK(ruleIds(*set) == std::vector<std::string>{"inc", "own"});
}

TEST_CASE("an empty rule set loads and decides nothing", "[loader]") {
  auto set = testing::loadOk("# nothing here\n\n");
  CHECK(set->rules().empty());
  for (Stage s : kAllStages) {
    CHECK(set->ruleCount(s) == 0);
    CHECK(set->fieldsReadAt(s).empty());
    MapFacts facts;
    auto outcome = set->evaluate(s, facts);
    CHECK(outcome.decisive == nullptr);
    CHECK(outcome.scoreAdded == 0);
  }
  CHECK(set->thresholdFor(1000) == nullptr);
}

}  // namespace
}  // namespace smtpgate::rules
