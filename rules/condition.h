#pragma once
/// Condition — the expression tree of one rule's `when` clause.
///
/// Built by the parser, resolved (list names → lists, regexes → RE2::Set
/// slots) by the RuleSet loader, then immutable. Leaves test one field;
/// `negate` turns ==, ~, in into !=, !~, not in, so each negation is exactly
/// the three-valued `not` of its positive form.

#include <memory>
#include <string>
#include <vector>

#include "rules/diagnostic.h"
#include "rules/fields.h"
#include "rules/list.h"
#include "rules/value.h"

namespace smtpgate::rules {

enum class ConditionKind {
  And,      ///< left and right
  Or,       ///< left or right
  Not,      ///< not left
  Truthy,   ///< the field alone: true, non-zero, non-empty
  Compare,  ///< field OP literal, OP one of == != < <= > >=
  Regex,    ///< field ~ /re/ or field ~ @regexlist
  InList,   ///< field in @list
  InSet,    ///< field in { a, b, c }
};

enum class CompareOp { Eq, Lt, Le, Gt, Ge };

/// A regex pattern as written, with its flags folded in as RE2 inline flags.
struct RegexPattern {
  std::string pattern;  ///< e.g. "(?i)v[i1]agra"
  SourceLocation where;
};

struct Condition {
  ConditionKind kind = ConditionKind::Truthy;
  SourceLocation where;  ///< the field (leaves) or the operator (and/or/not)
  std::unique_ptr<Condition> left;
  std::unique_ptr<Condition> right;

  FieldRef field;
  bool negate = false;  ///< !=, !~, not in
  CompareOp op = CompareOp::Eq;
  FactValue literal;  ///< Compare: a bool, double, string (lower case for text) or IpAddress

  // Regex: either one literal pattern or a regex list's patterns.
  std::vector<RegexPattern> patterns;
  std::size_t regexGroup = 0;  ///< the (stage, field) RE2::Set this leaf's patterns live in
  std::size_t regexAtom = 0;   ///< this leaf's slot within that set's atoms

  // InList / regex lists: the list as named, and once resolved.
  std::string listName;
  std::string qualifier;  ///< @name:QUALIFIER (DNSBL answer code)
  SourceLocation listWhere;
  ListPtr list;

  std::vector<std::string> set;  ///< InSet: lower-case members
};

}  // namespace smtpgate::rules
