#pragma once
/// Strict lint — the extra checks of `smtpgate lint --strict`: things that
/// load fine and are almost certainly not what the admin meant.
///
/// Every check only warns when it can prove its point from the rule text; a
/// warning here never means "maybe". The checks, each a Warning diagnostic at
/// the file:line:col of the thing to fix:
///
///   * shadowed rule — an earlier accept/tempfail/reject rule (not monitor) of
///     the same stage is True whenever this rule's condition is True, so the
///     stage always ends before this rule is reached. Proved structurally:
///     identical conditions, `a or b` implied by `a`, `a and b` implying `a`,
///     `in { ... }` sets that contain each other, and number comparisons whose
///     ranges contain each other (`rcpt.count > 10` implies `rcpt.count > 5`).
///     Conditions reading `score` are compared only when no `score` rule lies
///     between the two rules (the score may change in between).
///   * unanchored envelope regex — a regex on client.ptr, helo, sender,
///     sender.domain, rcpt or rcpt.domain that is anchored at neither end and
///     spells a domain or address part (an `@` or a `\.`): `/example\.com/`
///     also matches `example.com.evil.example`.
///   * oversized regex — a pattern that does not compile within
///     kStrictRegexBudget (1/8 of the 8 MiB RE2 allows one pattern): it makes
///     every match of its field slow and crowds the field's RE2::Set.
///   * list entries that change nothing — a CIDR inside another entry of the
///     same list, or the same network twice (also when written as v4 and as
///     v4-mapped v6); a domain that is a subdomain of another entry, or
///     listed twice; a string entry listed twice (case ignored).
///   * list entries that can never match — a string-list entry with `@` when
///     every rule reading the list tests a domain field (sender.domain,
///     rcpt.domain, client.ptr, dkim.domain), or an entry in `<...>` when every
///     rule tests an address (sender, rcpt: compared without angle brackets).
///
/// Ownership: ListRecorder wraps the ListBuilder a load uses and keeps a copy
/// of every list's entries (regex lists excepted: the rules hold their
/// patterns). It must outlive the load; checkStrict only reads.
///
/// Limits: list checks sort the entries (O(n log n)); shadowing compares each
/// rule with the earlier rules of its stage (O(rules^2) condition walks,
/// each bounded by kMaxConditionDepth).

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "rules/diagnostic.h"
#include "rules/list.h"
#include "rules/rule_set.h"

namespace smtpgate::rules {

/// RE2 memory one pattern may use before strict lint calls it oversized.
inline constexpr std::int64_t kStrictRegexBudget = std::int64_t{1} << 20;

/// A ListBuilder that passes every call on to `inner` and records the entries.
class ListRecorder : public ListBuilder {
 public:
  struct Recorded {
    ListKind kind = ListKind::String;
    std::vector<ListEntry> entries;
  };

  explicit ListRecorder(ListBuilder& inner) : inner_(inner) {}

  ListPtr build(ListKind kind, std::string_view name, const std::vector<ListEntry>& entries,
                Diagnostics& diags) override;

  /// By list name.
  [[nodiscard]] const std::map<std::string, Recorded, std::less<>>& lists() const { return lists_; }

 private:
  ListBuilder& inner_;
  std::map<std::string, Recorded, std::less<>> lists_;
};

/// Runs every strict check over a loaded set and the lists recorded while
/// loading it; adds warnings (never errors) to `diags`.
void checkStrict(const RuleSet& set, const ListRecorder& lists, Diagnostics& diags);

}  // namespace smtpgate::rules
