#pragma once
/// Lists — the interface between the rule language and the list data
/// structures, which live in policies/ (CIDR trie, domain suffix set, ...).
///
/// rules/ reads a list's entries (from its file or inline `{a, b}`) with their
/// locations and hands them to a ListBuilder; the builder validates each entry
/// (a bad CIDR is reported at its own file:line:col) and returns an immutable
/// List. Regex lists are the exception: rules/ compiles them itself, into the
/// same RE2::Set as the field they are matched against, so `body ~ @badwords`
/// costs one pass over the body however many patterns the list has.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/diagnostic.h"
#include "rules/value.h"

namespace smtpgate::rules {

enum class ListKind { Cidr, Domain, Regex, String, Dnsbl };

std::string_view toString(ListKind kind);
std::optional<ListKind> parseListKind(std::string_view name);

struct ListEntry {
  std::string text;      ///< trimmed, comment removed
  SourceLocation where;  ///< where the entry starts
  std::string sourceLine;
};

/// An immutable, thread-safe set. `contains` answers for one value:
/// an IpAddress (cidr, dnsbl) or a string (domain, string); a Strings value
/// is in the list if any element is. `qualifier` is the text after
/// `@name:` in a rule (a DNSBL answer code such as 127.0.0.2), empty if none.
class List {
 public:
  virtual ~List() = default;
  [[nodiscard]] virtual ListKind kind() const = 0;
  [[nodiscard]] virtual std::size_t size() const = 0;
  [[nodiscard]] virtual Tri contains(const FactValue& value, std::string_view qualifier) const = 0;
};
using ListPtr = std::shared_ptr<const List>;

class ListBuilder {
 public:
  virtual ~ListBuilder() = default;
  /// Builds a list of `kind` (never Regex). Reports each bad entry into
  /// `diags` at the entry's location and leaves it out. Returns nullptr only
  /// for a kind the builder does not know.
  virtual ListPtr build(ListKind kind, std::string_view name, const std::vector<ListEntry>& entries,
                        Diagnostics& diags) = 0;
};

}  // namespace smtpgate::rules
