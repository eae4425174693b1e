// The ten-mistakes fixture (tests/rules/data/ten-mistakes.rules), which the
// CLI tests also run `smtpgate lint` on: ten different mistakes on ten lines
// give exactly ten errors, at these positions, whatever else goes wrong.

#include <algorithm>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "rules/rule_set.h"
#include "test_lists.h"

namespace smtpgate::rules {
namespace {

TEST_CASE("the ten-mistakes fixture reports its ten errors at their line and column",
          "[diagnostics][fixture]") {
  const std::string file = std::string(SMTPGATE_TEST_DATA) + "/ten-mistakes.rules";
  testing::FakeListBuilder lists;
  Diagnostics diags;
  auto set = RuleSet::load({file}, lists, diags);
  INFO(format(diags));
  CHECK(set == nullptr);

  struct Want {
    int line;
    int column;
    std::string fragment;
  };
  const std::vector<Want> want = {
      {4, 9, "cannot read rule file"},
      {5, 18, "cannot read list file"},
      {6, 38, "unknown list '@nolist'"},
      {7, 22, "field 'dkim' is not known at stage mail"},
      {8, 29, "bad regex: missing )"},
      {9, 30, "unterminated string"},
      {10, 27, "'=' is not an operator; use '=='"},
      {11, 29, "unknown spf result 'fial'"},
      {12, 49, "a reject reply must be a 5xx code, not 450"},
      {13, 6, "duplicate rule id 'r1'"},
  };
  std::vector<Diagnostic> errors;
  std::copy_if(diags.items().begin(), diags.items().end(), std::back_inserter(errors),
               [](const Diagnostic& d) { return d.severity == Severity::Error; });
  std::stable_sort(errors.begin(), errors.end(), [](const Diagnostic& a, const Diagnostic& b) {
    return a.where.line < b.where.line;
  });
  REQUIRE(errors.size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("error " << i << ": " << format(errors[i]));
    CHECK(errors[i].where.file == file);
    CHECK(errors[i].where.line == want[i].line);
    CHECK(errors[i].where.column == want[i].column);
    CHECK_THAT(errors[i].message, Catch::Contains(want[i].fragment));
    CHECK_FALSE(errors[i].sourceLine.empty());
  }
}

}  // namespace
}  // namespace smtpgate::rules
