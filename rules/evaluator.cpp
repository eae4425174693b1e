// RuleSet::evaluate: runs one stage's rules over facts pulled on demand.
#include <algorithm>
#include <cctype>

#include "rules/compiled.h"
#include "rules/condition.h"

namespace smtpgate::rules {

namespace {

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

/// Applies `test` to a text value or to each of several; Strings are "any".
template <typename Test>
Tri anyText(const FactValue& v, Test test) {
  if (const auto* s = std::get_if<std::string>(&v)) {
    return toTri(test(std::string_view(*s)));
  }
  if (const auto* ss = std::get_if<Strings>(&v)) {
    return toTri(
        std::any_of(ss->begin(), ss->end(), [&](const std::string& s) { return test(s); }));
  }
  if (const auto* ip = std::get_if<IpAddress>(&v)) {
    return toTri(test(ip->toString()));
  }
  return Tri::Unknown;  // unavailable, or a type this field never has
}

Tri truthy(const FactValue& v) {
  struct Visitor {
    Tri operator()(const Unavailable&) const { return Tri::Unknown; }
    Tri operator()(bool b) const { return toTri(b); }
    Tri operator()(double d) const { return toTri(d != 0); }
    Tri operator()(const std::string& s) const { return toTri(!s.empty()); }
    Tri operator()(const IpAddress&) const { return Tri::True; }
    Tri operator()(const Strings& ss) const {
      return toTri(std::any_of(ss.begin(), ss.end(), [](const auto& s) { return !s.empty(); }));
    }
  };
  return std::visit(Visitor{}, v);
}

Tri compareNumber(const FactValue& v, CompareOp op, double literal) {
  const auto* d = std::get_if<double>(&v);
  if (d == nullptr) {
    return Tri::Unknown;
  }
  switch (op) {
    case CompareOp::Eq:
      return toTri(*d == literal);
    case CompareOp::Lt:
      return toTri(*d < literal);
    case CompareOp::Le:
      return toTri(*d <= literal);
    case CompareOp::Gt:
      return toTri(*d > literal);
    case CompareOp::Ge:
      return toTri(*d >= literal);
  }
  return Tri::Unknown;
}

Tri compare(const FactValue& v, const Condition& c) {
  if (std::holds_alternative<Unavailable>(v)) {
    return Tri::Unknown;
  }
  if (const auto* n = std::get_if<double>(&c.literal)) {
    return compareNumber(v, c.op, *n);
  }
  if (const auto* b = std::get_if<bool>(&c.literal)) {
    const auto* vb = std::get_if<bool>(&v);
    return vb ? toTri(*vb == *b) : Tri::Unknown;
  }
  if (const auto* ip = std::get_if<IpAddress>(&c.literal)) {
    const auto* vip = std::get_if<IpAddress>(&v);
    return vip ? toTri(*vip == *ip) : Tri::Unknown;
  }
  if (const auto* s = std::get_if<std::string>(&c.literal)) {
    return anyText(v, [&](std::string_view x) { return equalsIgnoreCase(x, *s); });
  }
  return Tri::Unknown;
}

Tri inSet(const FactValue& v, const Condition& c) {
  return anyText(v, [&](std::string_view x) {
    return std::any_of(c.set.begin(), c.set.end(),
                       [&](const std::string& m) { return equalsIgnoreCase(x, m); });
  });
}

/// Per-evaluation state: regex groups run lazily, once each.
class Evaluation {
 public:
  Evaluation(const RuleSet::Compiled& compiled, FactSource& facts)
      : compiled_(compiled), facts_(facts), matches_(compiled.groups.size()) {}

  Tri eval(const Condition& c) {
    switch (c.kind) {
      case ConditionKind::And: {
        Tri l = eval(*c.left);
        return l == Tri::False ? Tri::False : triAnd(l, eval(*c.right));
      }
      case ConditionKind::Or: {
        Tri l = eval(*c.left);
        return l == Tri::True ? Tri::True : triOr(l, eval(*c.right));
      }
      case ConditionKind::Not:
        return triNot(eval(*c.left));
      case ConditionKind::Truthy:
        return truthy(facts_.fact(c.field));
      case ConditionKind::Compare:
        return negated(c, compare(facts_.fact(c.field), c));
      case ConditionKind::Regex:
        return negated(c, regex(c));
      case ConditionKind::InList:
        return negated(c,
                       c.list ? c.list->contains(facts_.fact(c.field), c.qualifier) : Tri::Unknown);
      case ConditionKind::InSet:
        return negated(c, inSet(facts_.fact(c.field), c));
    }
    return Tri::Unknown;
  }

 private:
  static Tri negated(const Condition& c, Tri t) { return c.negate ? triNot(t) : t; }

  Tri regex(const Condition& c) {
    auto& m = matches_[c.regexGroup];
    if (!m) {
      m = runGroup(compiled_.groups[c.regexGroup]);
    }
    if (m->unknown) {
      return Tri::Unknown;
    }
    return toTri(m->atoms[c.regexAtom]);
  }

  struct GroupMatch {
    bool unknown = false;
    std::vector<bool> atoms;
  };

  GroupMatch runGroup(const RegexGroup& g) {
    GroupMatch result;
    result.atoms.assign(g.atoms, false);
    std::vector<int> hits;
    auto runOne = [&](std::string_view text) {
      if (g.single) {
        if (RE2::PartialMatch(text, *g.single)) {
          result.atoms[g.atomOf.front()] = true;
        }
        return false;
      }
      hits.clear();
      RE2::Set::ErrorInfo info{};
      if (!g.set->Match(text, &hits, &info) && info.kind != RE2::Set::kNoError) {
        result.unknown = true;  // DFA out of memory: say "unknown", never "no match"
      }
      for (int h : hits) {
        result.atoms[g.atomOf[static_cast<std::size_t>(h)]] = true;
      }
      return false;
    };
    if (auto text = facts_.textInPlace(g.field)) {
      runOne(*text);
    } else if (anyText(facts_.fact(g.field), runOne) == Tri::Unknown) {
      result.unknown = true;
    }
    return result;
  }

  const RuleSet::Compiled& compiled_;
  FactSource& facts_;
  std::vector<std::optional<GroupMatch>> matches_;
};

}  // namespace

StageOutcome RuleSet::evaluate(Stage stage, FactSource& facts,
                               std::vector<RuleTrace>* trace) const {
  StageOutcome outcome;
  Evaluation evaluation(*compiled_, facts);
  for (std::size_t index : compiled_->rulesByStage[static_cast<std::size_t>(stage)]) {
    const Rule& rule = rules_[index];
    Tri result = evaluation.eval(*rule.condition);
    if (trace != nullptr) {
      trace->push_back({&rule, result});
    }
    if (result != Tri::True) {
      continue;
    }
    if (rule.action == RuleAction::Score) {
      outcome.scoreAdded += rule.score;
      outcome.scoreRules.push_back(&rule);
      continue;
    }
    if (rule.monitor) {
      outcome.monitored.push_back(&rule);
      continue;
    }
    outcome.decisive = &rule;
    break;
  }
  return outcome;
}

}  // namespace smtpgate::rules
