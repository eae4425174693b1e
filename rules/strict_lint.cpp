#include "rules/strict_lint.h"

#include <re2/re2.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <fstream>
#include <set>
#include <tuple>
#include <unordered_map>

#include "rules/ascii.h"
#include "rules/condition.h"

namespace smtpgate::rules {

ListPtr ListRecorder::build(ListKind kind, std::string_view name,
                            const std::vector<ListEntry>& entries, Diagnostics& diags) {
  lists_[std::string(name)] = Recorded{kind, entries};
  return inner_.build(kind, name, entries, diags);
}

namespace {

std::string lineRef(const SourceLocation& w, const SourceLocation& from) {
  return w.file == from.file ? "line " + std::to_string(w.line)
                             : w.file + ":" + std::to_string(w.line);
}

/// The text of a line of a rule or list file, for the caret display.
class SourceLines {
 public:
  const std::string& get(const SourceLocation& where) {
    auto [it, inserted] = files_.try_emplace(where.file);
    if (inserted) {
      std::ifstream in(where.file, std::ios::binary);
      std::string line;
      while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') {
          line.pop_back();
        }
        it->second.push_back(line);
      }
    }
    static const std::string kEmpty;
    const auto& lines = it->second;
    return where.line > 0 && static_cast<std::size_t>(where.line) <= lines.size()
               ? lines[where.line - 1]
               : kEmpty;
  }

 private:
  std::map<std::string, std::vector<std::string>> files_;
};

template <typename Fn>
void forEachLeaf(const Condition& c, Fn&& fn) {
  if (c.left) {
    forEachLeaf(*c.left, fn);
  }
  if (c.right) {
    forEachLeaf(*c.right, fn);
  }
  if (c.kind != ConditionKind::And && c.kind != ConditionKind::Or && c.kind != ConditionKind::Not) {
    fn(c);
  }
}

// ---------------------------------------------------------------------------
// Shadowed rules

bool samePatterns(const Condition& a, const Condition& b) {
  return std::equal(
      a.patterns.begin(), a.patterns.end(), b.patterns.begin(), b.patterns.end(),
      [](const RegexPattern& x, const RegexPattern& y) { return x.pattern == y.pattern; });
}

bool sameCondition(const Condition& a, const Condition& b) {
  if (a.kind != b.kind || a.negate != b.negate || !(a.field == b.field)) {
    return false;
  }
  if ((a.left == nullptr) != (b.left == nullptr) || (a.right == nullptr) != (b.right == nullptr)) {
    return false;
  }
  if (a.left && !sameCondition(*a.left, *b.left)) {
    return false;
  }
  if (a.right && !sameCondition(*a.right, *b.right)) {
    return false;
  }
  switch (a.kind) {
    case ConditionKind::Compare:
      return a.op == b.op && a.literal == b.literal;
    case ConditionKind::Regex:
      // A regex list leaf was resolved to the list's patterns: same list, same patterns.
      return a.listName == b.listName && samePatterns(a, b);
    case ConditionKind::InList:
      return a.listName == b.listName && a.qualifier == b.qualifier;
    case ConditionKind::InSet:
      return std::set<std::string>(a.set.begin(), a.set.end()) ==
             std::set<std::string>(b.set.begin(), b.set.end());
    default:
      return true;
  }
}

bool subset(const std::vector<std::string>& small, const std::vector<std::string>& big) {
  return std::all_of(small.begin(), small.end(), [&](const std::string& s) {
    return std::find(big.begin(), big.end(), s) != big.end();
  });
}

/// The values `field OP n` is True for, as an interval of the real line.
struct Interval {
  double lo = -HUGE_VAL;
  bool loIn = false;
  double hi = HUGE_VAL;
  bool hiIn = false;
};

std::optional<Interval> intervalOf(const Condition& c) {
  const auto* n = std::get_if<double>(&c.literal);
  if (n == nullptr || c.negate || c.field.info == nullptr ||
      c.field.info->type != FieldType::Number) {
    return std::nullopt;
  }
  switch (c.op) {
    case CompareOp::Eq:
      return Interval{*n, true, *n, true};
    case CompareOp::Lt:
      return Interval{-HUGE_VAL, false, *n, false};
    case CompareOp::Le:
      return Interval{-HUGE_VAL, false, *n, true};
    case CompareOp::Gt:
      return Interval{*n, false, HUGE_VAL, false};
    case CompareOp::Ge:
      return Interval{*n, true, HUGE_VAL, false};
  }
  return std::nullopt;
}

bool within(const Interval& inner, const Interval& outer) {
  bool loOk = outer.lo < inner.lo || (outer.lo == inner.lo && (outer.loIn || !inner.loIn));
  bool hiOk = outer.hi > inner.hi || (outer.hi == inner.hi && (outer.hiIn || !inner.hiIn));
  return loOk && hiOk;
}

/// Leaf-to-leaf implication beyond equality.
bool leafImplies(const Condition& b, const Condition& a) {
  if (!(a.field == b.field) || a.kind != b.kind || a.negate != b.negate) {
    return false;
  }
  if (a.kind == ConditionKind::InSet) {
    // in: b's members all in a's. not in: a's members all in b's.
    return a.negate ? subset(a.set, b.set) : subset(b.set, a.set);
  }
  if (a.kind == ConditionKind::Compare) {
    auto ia = intervalOf(a);
    auto ib = intervalOf(b);
    return ia && ib && within(*ib, *ia);
  }
  return false;
}

/// True only if, for any facts, `b` evaluating to True means `a` evaluates
/// to True (Kleene logic: Unknown is not True).
bool implies(const Condition& b, const Condition& a) {
  if (sameCondition(b, a)) {
    return true;
  }
  if (a.kind == ConditionKind::And) {
    return implies(b, *a.left) && implies(b, *a.right);
  }
  if (b.kind == ConditionKind::Or) {
    return implies(*b.left, a) && implies(*b.right, a);
  }
  if (a.kind == ConditionKind::Or && (implies(b, *a.left) || implies(b, *a.right))) {
    return true;
  }
  if (b.kind == ConditionKind::And && (implies(*b.left, a) || implies(*b.right, a))) {
    return true;
  }
  bool leaves = a.kind != ConditionKind::And && a.kind != ConditionKind::Or &&
                a.kind != ConditionKind::Not && b.kind != ConditionKind::And &&
                b.kind != ConditionKind::Or && b.kind != ConditionKind::Not;
  return leaves && leafImplies(b, a);
}

bool readsScore(const Condition& c) {
  bool reads = false;
  forEachLeaf(c, [&](const Condition& leaf) {
    reads = reads || (leaf.field.info && leaf.field.info->id == FieldId::Score);
  });
  return reads;
}

bool ends(const Rule& r) {
  return r.action != RuleAction::Score && !r.monitor;
}

void checkShadowed(const RuleSet& set, Diagnostics& diags) {
  for (Stage stage : kAllStages) {
    std::vector<const Rule*> rules;
    for (const auto& r : set.rules()) {
      if (r.stage == stage) {
        rules.push_back(&r);
      }
    }
    for (std::size_t j = 0; j < rules.size(); ++j) {
      const Rule& b = *rules[j];
      bool scoreChanged = false;  // a score rule between i and j (walking back from j)
      for (std::size_t i = j; i-- > 0;) {
        const Rule& a = *rules[i];
        scoreChanged = scoreChanged || (i + 1 < j && rules[i + 1]->action == RuleAction::Score);
        if (!ends(a)) {
          continue;
        }
        if (scoreChanged && (readsScore(*a.condition) || readsScore(*b.condition))) {
          continue;
        }
        if (implies(*b.condition, *a.condition)) {
          diags.warning(b.where,
                        "rule '" + b.id + "' can never fire: rule '" + a.id + "' (" +
                            lineRef(a.where, b.where) + ") comes first at stage " +
                            std::string(toString(stage)) + ", is true whenever this one is, and " +
                            std::string(toString(a.action)) + "s",
                        b.sourceLine);
          break;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Regexes

bool envelopeField(const FieldRef& f) {
  if (f.info == nullptr) {
    return false;
  }
  switch (f.info->id) {
    case FieldId::ClientPtr:
    case FieldId::Helo:
    case FieldId::Sender:
    case FieldId::SenderDomain:
    case FieldId::Rcpt:
    case FieldId::RcptDomain:
      return true;
    default:
      return false;
  }
}

/// Drops leading RE2 inline flag groups such as "(?i)" (added for /re/i).
std::string_view stripInlineFlags(std::string_view p) {
  while (p.size() >= 3 && p.substr(0, 2) == "(?") {
    auto close = p.find(')');
    if (close == std::string_view::npos) {
      break;
    }
    std::string_view flags = p.substr(2, close - 2);
    if (flags.empty() || !std::all_of(flags.begin(), flags.end(), [](char c) {
          return std::isalpha(static_cast<unsigned char>(c)) || c == '-';
        })) {
      break;
    }
    p.remove_prefix(close + 1);
  }
  return p;
}

/// Splits at top-level '|' (outside groups, classes and escapes). Empty
/// result if the parentheses do not balance (then we claim nothing).
std::vector<std::string_view> topLevelBranches(std::string_view p) {
  std::vector<std::string_view> out;
  int depth = 0;
  bool inClass = false;
  std::size_t start = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\') {
      ++i;
    } else if (inClass) {
      inClass = c != ']';
    } else if (c == '[') {
      inClass = true;
      if (i + 1 < p.size() && p[i + 1] == ']') {
        ++i;  // "[]...]": the first ']' is a member
      }
    } else if (c == '(') {
      ++depth;
    } else if (c == ')') {
      if (--depth < 0) {
        return {};
      }
    } else if (c == '|' && depth == 0) {
      out.push_back(p.substr(start, i - start));
      start = i + 1;
    }
  }
  if (depth != 0 || inClass) {
    return {};
  }
  out.push_back(p.substr(start));
  return out;
}

/// The index of the ')' closing the group opened at p[0], or npos.
std::size_t groupEnd(std::string_view p) {
  int depth = 0;
  bool inClass = false;
  for (std::size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\') {
      ++i;
    } else if (inClass) {
      inClass = c != ']';
    } else if (c == '[') {
      inClass = true;
    } else if (c == '(') {
      ++depth;
    } else if (c == ')' && --depth == 0) {
      return i;
    }
  }
  return std::string_view::npos;
}

std::string_view groupBody(std::string_view group) {
  std::string_view body = group.substr(1, group.size() - 2);
  if (body.substr(0, 2) == "?:") {
    body.remove_prefix(2);
  } else if (body.substr(0, 2) == "?P" || body.substr(0, 2) == "?<") {
    auto close = body.find('>');
    body.remove_prefix(close == std::string_view::npos ? body.size() : close + 1);
  }
  return body;
}

bool allBranches(std::string_view p, bool (*test)(std::string_view)) {
  auto branches = topLevelBranches(p);
  return !branches.empty() && std::all_of(branches.begin(), branches.end(), test);
}

bool startAnchored(std::string_view p) {
  p = stripInlineFlags(p);
  if (p.substr(0, 1) == "^" || p.substr(0, 2) == "\\A") {
    return true;
  }
  if (p.substr(0, 1) != "(") {
    return false;
  }
  std::size_t close = groupEnd(p);
  if (close == std::string_view::npos) {
    return false;
  }
  char after = close + 1 < p.size() ? p[close + 1] : '\0';
  if (after == '?' || after == '*' || after == '{') {
    return false;  // the group may be skipped
  }
  return allBranches(groupBody(p.substr(0, close + 1)), startAnchored);
}

bool escapedAt(std::string_view p, std::size_t i) {
  std::size_t n = 0;
  while (i > n && p[i - n - 1] == '\\') {
    ++n;
  }
  return n % 2 == 1;
}

bool endAnchored(std::string_view p) {
  if (p.empty()) {
    return false;
  }
  if ((p.back() == '$' && !escapedAt(p, p.size() - 1)) ||
      (p.size() >= 2 && p.substr(p.size() - 2) == "\\z" && !escapedAt(p, p.size() - 2))) {
    return true;
  }
  if (p.back() != ')' || escapedAt(p, p.size() - 1)) {
    return false;
  }
  // Find the '(' that opens the final group by scanning from the start.
  for (std::size_t open = 0; open < p.size(); ++open) {
    if (p[open] == '(' && !escapedAt(p, open) && groupEnd(p.substr(open)) == p.size() - open - 1) {
      return allBranches(groupBody(p.substr(open)), endAnchored);
    }
  }
  return false;
}

bool anchored(std::string_view pattern) {
  auto branches = topLevelBranches(stripInlineFlags(pattern));
  if (branches.empty()) {
    return true;  // unbalanced (RE2 accepted it, we can't read it): claim nothing
  }
  return std::all_of(branches.begin(), branches.end(),
                     [](std::string_view b) { return startAnchored(b) || endAnchored(b); });
}

/// An '@' or an escaped dot outside a character class: the pattern spells
/// part of an address or a domain name.
bool spellsAddressPart(std::string_view p) {
  bool inClass = false;
  for (std::size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\') {
      if (!inClass && i + 1 < p.size() && p[i + 1] == '.') {
        return true;
      }
      ++i;
    } else if (inClass) {
      inClass = c != ']';
    } else if (c == '[') {
      inClass = true;
    } else if (c == '@') {
      return true;
    }
  }
  return false;
}

/// The pattern as the admin wrote it, without our inline flags.
std::string shown(const std::string& pattern) {
  return "/" + std::string(stripInlineFlags(pattern)) + "/";
}

void checkRegexes(const RuleSet& set, SourceLines& lines, Diagnostics& diags) {
  std::set<std::pair<std::string, int>> warnedAnchor;
  std::set<std::pair<std::string, int>> warnedSize;
  for (const auto& rule : set.rules()) {
    forEachLeaf(*rule.condition, [&](const Condition& leaf) {
      if (leaf.kind != ConditionKind::Regex) {
        return;
      }
      for (const auto& p : leaf.patterns) {
        const std::string& src = p.where.file == rule.where.file && p.where.line == rule.where.line
                                     ? rule.sourceLine
                                     : lines.get(p.where);
        std::string via =
            leaf.listName.empty() ? "" : " (list @" + leaf.listName + ", rule '" + rule.id + "')";
        auto key = std::make_pair(p.where.file, p.where.line * 4096 + p.where.column);
        if (envelopeField(leaf.field) && !anchored(p.pattern) && spellsAddressPart(p.pattern) &&
            warnedAnchor.insert(key).second) {
          diags.warning(p.where,
                        "regex " + shown(p.pattern) + " on " + leaf.field.display() +
                            " is not anchored: it matches anywhere in the value, also inside "
                            "longer names and addresses; anchor it with ^ or $" +
                            via,
                        src);
        }
        if (!warnedSize.insert(key).second) {
          continue;
        }
        RE2::Options options;
        options.set_log_errors(false);
        options.set_max_mem(kStrictRegexBudget);
        RE2 re(p.pattern, options);
        if (re.error_code() == RE2::ErrorPatternTooLarge) {
          RE2::Options full;
          full.set_log_errors(false);
          RE2 big(p.pattern, full);
          diags.warning(p.where,
                        "regex " + shown(p.pattern) + " exceeds RE2's memory budget of " +
                            std::to_string(kStrictRegexBudget >> 20) + " MiB per pattern (" +
                            (big.ok() ? std::to_string(big.ProgramSize()) + " instructions"
                                      : std::string("too large to compile")) +
                            "): it slows every match of " + leaf.field.display() +
                            "; use smaller repeat counts" + via,
                        src);
        }
      }
    });
  }
}

// ---------------------------------------------------------------------------
// Lists

struct Network {
  std::array<std::uint8_t, 16> key{};
  unsigned length = 0;  ///< in the 128-bit space
  const ListEntry* entry = nullptr;
  std::size_t index = 0;  ///< position in the list, for "the later one"
};

std::optional<Network> parseNetwork(const ListEntry& e) {
  std::string_view text = e.text;
  auto slash = text.find('/');
  std::string_view addrText = text.substr(0, slash);
  auto addr = IpAddress::parse(addrText);
  if (!addr) {
    return std::nullopt;
  }
  bool v6 = addrText.find(':') != std::string_view::npos;
  unsigned family = v6 ? 128 : 32;
  if (slash != std::string_view::npos) {
    std::string digits(text.substr(slash + 1));
    if (digits.empty() || digits.size() > 3 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    family = static_cast<unsigned>(std::stoi(digits));
    if (family > (v6 ? 128U : 32U)) {
      return std::nullopt;
    }
  }
  Network n;
  n.length = v6 ? family : 96 + family;
  n.key = addr->bytes();
  for (unsigned bit = n.length; bit < 128; ++bit) {
    n.key[bit / 8] &= static_cast<std::uint8_t>(~(0x80U >> (bit % 8)));
  }
  n.entry = &e;
  return n;
}

bool containsNetwork(const Network& outer, const Network& inner) {
  if (outer.length > inner.length) {
    return false;
  }
  for (unsigned bit = 0; bit < outer.length; ++bit) {
    bool a = (outer.key[bit / 8] >> (7 - bit % 8)) & 1U;
    bool b = (inner.key[bit / 8] >> (7 - bit % 8)) & 1U;
    if (a != b) {
      return false;
    }
  }
  return true;
}

void warnEntry(Diagnostics& diags, const ListEntry& e, const std::string& list,
               const std::string& what) {
  diags.warning(e.where, "list @" + list + ": " + what, e.sourceLine);
}

void checkCidrList(const std::string& name, const std::vector<ListEntry>& entries,
                   Diagnostics& diags) {
  std::vector<Network> nets;
  for (const auto& e : entries) {
    if (auto n = parseNetwork(e)) {
      n->index = nets.size();
      nets.push_back(*n);
    }
  }
  // Sorted by (address, length), a network comes right before everything it
  // contains; a stack of the open enclosing networks finds each container.
  std::sort(nets.begin(), nets.end(), [](const Network& a, const Network& b) {
    return std::tie(a.key, a.length, a.index) < std::tie(b.key, b.length, b.index);
  });
  std::vector<const Network*> open;
  for (const auto& n : nets) {
    while (!open.empty() && !containsNetwork(*open.back(), n)) {
      open.pop_back();
    }
    if (!open.empty()) {
      const Network& outer = *open.back();
      const ListEntry& e = *n.entry;
      if (outer.length == n.length) {
        std::string same =
            outer.entry->text == e.text
                ? "duplicate of the entry at "
                : "'" + e.text + "' is the same network as '" + outer.entry->text + "' at ";
        warnEntry(diags, e, name, same + lineRef(outer.entry->where, e.where));
      } else {
        warnEntry(diags, e, name,
                  "'" + e.text + "' is inside '" + outer.entry->text + "' (" +
                      lineRef(outer.entry->where, e.where) + "), so this entry changes nothing");
      }
      continue;  // keep the outer network as the container of what follows
    }
    open.push_back(&n);
  }
}

std::string canonicalDomain(std::string_view text) {
  std::string d = asciiLower(text);
  if (d.size() > 2 && d.compare(0, 2, "*.") == 0) {
    d.erase(0, 2);
  }
  if (!d.empty() && d.back() == '.') {
    d.pop_back();
  }
  return d;
}

void checkDomainList(const std::string& name, const std::vector<ListEntry>& entries,
                     Diagnostics& diags) {
  std::unordered_map<std::string, const ListEntry*> first;
  for (const auto& e : entries) {
    first.try_emplace(canonicalDomain(e.text), &e);
  }
  for (const auto& e : entries) {
    std::string d = canonicalDomain(e.text);
    const ListEntry* same = first.at(d);
    if (same != &e) {
      warnEntry(diags, e, name,
                "duplicate of '" + same->text + "' at " + lineRef(same->where, e.where));
      continue;
    }
    for (auto dot = d.find('.'); dot != std::string::npos; dot = d.find('.', dot + 1)) {
      auto parent = first.find(d.substr(dot + 1));
      if (parent != first.end()) {
        warnEntry(diags, e, name,
                  "'" + e.text + "' is a subdomain of '" + parent->second->text + "' (" +
                      lineRef(parent->second->where, e.where) +
                      "), which already matches it, so this entry changes nothing");
        break;
      }
    }
  }
}

bool domainValued(FieldId id) {
  return id == FieldId::SenderDomain || id == FieldId::RcptDomain || id == FieldId::ClientPtr ||
         id == FieldId::DkimDomain;
}

bool addressValued(FieldId id) {
  return id == FieldId::Sender || id == FieldId::Rcpt;
}

void checkStringList(const std::string& name, const std::vector<ListEntry>& entries,
                     const std::vector<FieldRef>& usedOn, Diagnostics& diags) {
  bool allDomains = !usedOn.empty() && std::all_of(usedOn.begin(), usedOn.end(), [](auto& f) {
    return f.info && domainValued(f.info->id);
  });
  bool allAddresses = !usedOn.empty() && std::all_of(usedOn.begin(), usedOn.end(), [](auto& f) {
    return f.info && addressValued(f.info->id);
  });
  std::string fields;
  for (const auto& f : usedOn) {
    fields += (fields.empty() ? "" : ", ") + f.display();
  }
  std::unordered_map<std::string, const ListEntry*> first;
  for (const auto& e : entries) {
    auto [it, inserted] = first.try_emplace(asciiLower(e.text), &e);
    if (!inserted) {
      warnEntry(diags, e, name,
                "duplicate of '" + it->second->text + "' at " +
                    lineRef(it->second->where, e.where) + " (case is ignored)");
    } else if (allDomains && e.text.find('@') != std::string::npos) {
      warnEntry(diags, e, name,
                "'" + e.text + "' can never match: the list is only tested against " + fields +
                    ", a domain, which never contains '@'");
    } else if (allAddresses && e.text.size() >= 2 && e.text.front() == '<' &&
               e.text.back() == '>') {
      warnEntry(diags, e, name,
                "'" + e.text + "' can never match: " + fields +
                    " is compared without angle brackets; write " +
                    e.text.substr(1, e.text.size() - 2));
    }
  }
}

void checkLists(const RuleSet& set, const ListRecorder& lists, Diagnostics& diags) {
  std::map<std::string, std::vector<FieldRef>, std::less<>> usedOn;
  for (const auto& rule : set.rules()) {
    forEachLeaf(*rule.condition, [&](const Condition& leaf) {
      if (!leaf.listName.empty() && leaf.field.info) {
        auto& fields = usedOn[leaf.listName];
        if (std::find(fields.begin(), fields.end(), leaf.field) == fields.end()) {
          fields.push_back(leaf.field);
        }
      }
    });
  }
  for (const auto& [name, list] : lists.lists()) {
    switch (list.kind) {
      case ListKind::Cidr:
        checkCidrList(name, list.entries, diags);
        break;
      case ListKind::Domain:
        checkDomainList(name, list.entries, diags);
        break;
      case ListKind::String: {
        auto it = usedOn.find(name);
        checkStringList(name, list.entries,
                        it == usedOn.end() ? std::vector<FieldRef>{} : it->second, diags);
        break;
      }
      default:
        break;
    }
  }
}

}  // namespace

void checkStrict(const RuleSet& set, const ListRecorder& lists, Diagnostics& diags) {
  SourceLines lines;
  Diagnostics found;
  checkShadowed(set, found);
  checkRegexes(set, lines, found);
  checkLists(set, lists, found);
  // In file order, as an editor's quickfix list wants them.
  std::vector<Diagnostic> items = found.items();
  std::stable_sort(items.begin(), items.end(), [](const Diagnostic& a, const Diagnostic& b) {
    return std::tie(a.where.file, a.where.line, a.where.column) <
           std::tie(b.where.file, b.where.line, b.where.column);
  });
  for (auto& d : items) {
    diags.add(std::move(d));
  }
}

}  // namespace smtpgate::rules
