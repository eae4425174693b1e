#pragma once
/// Rules written in a test, loaded with the standard list kinds; the test
/// fails with the diagnostics if they do not load.

#include <catch2/catch.hpp>
#include <string>

#include "policies/list_builder.h"
#include "rules/rule_set.h"

namespace smtpgate::testing {

inline rules::RuleSetPtr loadRules(const std::string& text) {
  policies::StandardListBuilder lists;
  rules::Diagnostics diags;
  auto set = rules::RuleSet::loadText(text, "test.rules", lists, diags);
  INFO(rules::format(diags));
  REQUIRE(set);
  return set;
}

}  // namespace smtpgate::testing
