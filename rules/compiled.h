#pragma once
/// The compiled form of a RuleSet (internal to rules/): per-stage rule
/// indexes, the fields each stage reads, and the RE2::Set per (stage, field).

#include <re2/re2.h>
#include <re2/set.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "rules/rule_set.h"

namespace smtpgate::rules {

/// One RE2::Set per (stage, field): every regex leaf on that field at that
/// stage contributes its patterns; `atomOf[i]` maps the set's pattern i back
/// to the leaf ("atom") it belongs to. A group of one pattern is a plain RE2
/// (`single`) instead, and `set` is dropped once it is built: unlike a set,
/// a plain RE2 stops at the first match and skips ahead to where its literal
/// prefix occurs, so a rawbody rule need not step its DFA over every byte.
struct RegexGroup {
  Stage stage = Stage::Connect;
  FieldRef field;
  std::unique_ptr<RE2::Set> set;  ///< null when `single` matches instead
  std::vector<std::size_t> atomOf;
  std::size_t atoms = 0;
  std::string firstPattern;  ///< while building: the first pattern added to `set`
  std::unique_ptr<RE2> single;
};

struct RuleSet::Compiled {
  std::array<std::vector<std::size_t>, kAllStages.size()> rulesByStage;
  std::array<std::vector<FieldRef>, kAllStages.size()> fieldsByStage;
  std::vector<RegexGroup> groups;
  std::vector<bool> readsField;
};

}  // namespace smtpgate::rules
