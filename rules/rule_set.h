#pragma once
/// RuleSet — a loaded, checked and compiled set of rule files.
///
/// Built once per (re)load and shared read-only (`std::shared_ptr<const
/// RuleSet>`) by every transaction that started under it; a reload builds a
/// new one, so evaluation needs no locks. `load` reads every file (following
/// `include`s), reports every problem it finds as a Diagnostic, and returns
/// nullptr if there was any error: a broken rule set is never half-used.
///
/// Evaluation of a stage walks the stage's rules in file order and stops at
/// the first rule whose action is accept, tempfail or reject and whose
/// condition is True; `score` rules add and go on. Facts are pulled from a
/// FactSource only when a condition reads them. All regexes on one field at
/// one stage (literals and regex lists alike) are one RE2::Set, run once per
/// value of that field per evaluation.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "rules/diagnostic.h"
#include "rules/fields.h"
#include "rules/list.h"
#include "rules/reply_template.h"
#include "rules/stage.h"
#include "rules/value.h"

namespace smtpgate::rules {

enum class RuleAction { Accept, Tempfail, Reject, Score };
std::string_view toString(RuleAction a);

struct Condition;  // defined in rules/condition.h
using ConditionPtr = std::unique_ptr<Condition>;

struct Rule {
  std::string id;
  Stage stage = Stage::Connect;
  RuleAction action = RuleAction::Accept;
  std::optional<ReplyTemplate> reply;  ///< as written; empty = the default reply for the action
  double score = 0;                    ///< for RuleAction::Score
  bool monitor = false;  ///< `then monitor reject ...`: log "would reject", let through
  SourceLocation where;  ///< the rule id
  std::string sourceLine;
  ConditionPtr condition;
  [[nodiscard]] std::string whereShort() const;  ///< "file:line"
};

struct Threshold {
  RuleAction action = RuleAction::Reject;  ///< Tempfail or Reject
  double at = 0;
  std::optional<ReplyTemplate> reply;
  SourceLocation where;
  std::string sourceLine;
};

/// Supplies fact values while a stage is evaluated. Implemented by Policy.
/// The reference must stay valid until the evaluation returns.
class FactSource {
 public:
  virtual ~FactSource() = default;
  virtual const FactValue& fact(const FieldRef& field) = 0;
  /// A text field read where it lies, for a source that keeps big texts (a
  /// message body) and would otherwise copy one into a FactValue per
  /// evaluation. Regex matching asks here first; nullopt means "see fact()".
  /// The view must stay valid while the evaluation runs.
  virtual std::optional<std::string_view> textInPlace(const FieldRef& /*field*/) {
    return std::nullopt;
  }
};

/// What one rule's condition came to, for `smtpgate check` and the log.
struct RuleTrace {
  const Rule* rule = nullptr;
  Tri result = Tri::False;
};

struct StageOutcome {
  const Rule* decisive = nullptr;       ///< the first true accept/tempfail/reject rule, if any
  double scoreAdded = 0;                ///< sum of the true `score` rules before `decisive`
  std::vector<const Rule*> scoreRules;  ///< the `score` rules that added
  std::vector<const Rule*> monitored;   ///< monitor rules that would have decided
};

class RuleSet {
 public:
  RuleSet();
  ~RuleSet();
  RuleSet(const RuleSet&) = delete;
  RuleSet& operator=(const RuleSet&) = delete;

  /// Loads `files` in order (paths, already glob-expanded). Returns nullptr if
  /// any error was reported; warnings alone do not fail the load.
  static std::shared_ptr<const RuleSet> load(const std::vector<std::string>& files,
                                             ListBuilder& lists, Diagnostics& diags);
  /// Loads rule text held in memory as if it were the file `name` (includes
  /// resolve relative to the directory of `name`).
  static std::shared_ptr<const RuleSet> loadText(std::string_view text, const std::string& name,
                                                 ListBuilder& lists, Diagnostics& diags);

  [[nodiscard]] const std::vector<Rule>& rules() const { return rules_; }
  [[nodiscard]] const std::vector<Threshold>& thresholds() const { return thresholds_; }
  [[nodiscard]] const std::vector<std::string>& files() const { return files_; }
  /// Every file the set was read from: the rule files and the list files, the
  /// bytes `hash()` covers (what a file watch must watch).
  [[nodiscard]] const std::vector<std::string>& sources() const { return sources_; }
  /// A short fingerprint (12 hex digits) of every loaded file's bytes, so a
  /// log line tells which version of the rules decided.
  [[nodiscard]] const std::string& hash() const { return hash_; }

  /// True if some rule (at any stage) reads the field; the frontends skip
  /// work (DNS, MIME parsing, keeping the body) nobody needs.
  [[nodiscard]] bool reads(FieldId id) const;
  /// The fields the rules of one stage read, in first-use order.
  [[nodiscard]] const std::vector<FieldRef>& fieldsReadAt(Stage stage) const;
  [[nodiscard]] std::size_t ruleCount(Stage stage) const;

  /// Runs the rules of `stage`. `trace`, if given, receives every rule's result.
  StageOutcome evaluate(Stage stage, FactSource& facts,
                        std::vector<RuleTrace>* trace = nullptr) const;

  /// The highest threshold that `score` reaches, if any (reject before tempfail at equal `at`).
  [[nodiscard]] const Threshold* thresholdFor(double score) const;

  struct Compiled;  ///< RE2 sets and per-stage indexes (rule_set.cpp)

 private:
  friend class RuleSetBuilder;
  std::vector<Rule> rules_;
  std::vector<Threshold> thresholds_;
  std::vector<std::string> files_;
  std::vector<std::string> sources_;
  std::string hash_;
  std::unique_ptr<Compiled> compiled_;
};

using RuleSetPtr = std::shared_ptr<const RuleSet>;

}  // namespace smtpgate::rules
