#pragma once
/// DomainList — a set of domain names that each match themselves and every
/// subdomain: `example.com` matches `example.com` and `a.b.example.com`, but
/// not `badexample.com`. This is what `rcpt.domain in @ourdomains` and
/// `sender in @freemail` mean.
///
/// Matching is ASCII case-insensitive (DNS names are, RFC 4343) and ignores
/// one trailing dot on either side. If the value contains '@' only the part
/// after the last '@' is looked at, so a whole address can be tested. Names
/// are stored lowercase in a hash set; a lookup tries the value's suffixes at
/// each label boundary, so it costs O(labels) hash probes, not O(list size).
///
/// Entries: a DNS name whose labels are non-empty, at most 63 characters of
/// [A-Za-z0-9-_], at most 253 characters in all. A leading `*.` is accepted
/// and means the same as the name without it (subdomains always match), with
/// a warning that it is redundant. A bad entry is an error at its location
/// and is left out. Duplicates are harmless.
///
/// Ownership and threads: built once by `build`, then immutable; a
/// `std::shared_ptr<const DomainList>` is safe to share and read concurrently.
///
/// Limits: a lookup reads at most the last 253 bytes of the value (a longer
/// suffix cannot equal an entry), so a hostile value costs at most ~127
/// probes of ≤ 253 bytes however long it is.
///
/// SECURITY: entries come from admin-edited files and are validated
/// character by character; diagnostic text quotes them through
/// `rules::describe`, which escapes control bytes. Values come from the
/// network (envelope addresses, HELO names, headers) and may be arbitrarily
/// long or contain any byte: they are only lowercased and compared, never
/// interpreted, and the work per value is bounded as above.

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "rules/diagnostic.h"
#include "rules/list.h"
#include "rules/value.h"

namespace smtpgate::policies {

class DomainList : public rules::List {
 public:
  /// The longest DNS name in text form, without the trailing dot (RFC 1035).
  static constexpr std::size_t kMaxNameLength = 253;
  static constexpr std::size_t kMaxLabelLength = 63;

  /// Builds a list from `entries`, reporting every bad entry into `diags`.
  static std::shared_ptr<const DomainList> build(const std::vector<rules::ListEntry>& entries,
                                                 rules::Diagnostics& diags);

  /// Validates and adds one entry. Returns false (and reports an error) if it
  /// was left out; the redundant-`*.` warning still returns true.
  bool add(const rules::ListEntry& entry, rules::Diagnostics& diags);

  [[nodiscard]] rules::ListKind kind() const override { return rules::ListKind::Domain; }
  /// Number of distinct names.
  [[nodiscard]] std::size_t size() const override { return names_.size(); }
  /// True if the string value (or any element of a Strings value) is one of
  /// the names or a subdomain of one; Unknown for an Unavailable value; False
  /// otherwise. `qualifier` is not used by domain lists.
  [[nodiscard]] rules::Tri contains(const rules::FactValue& value,
                                    std::string_view qualifier) const override;

  /// The suffix test for one domain name or address (see above).
  [[nodiscard]] bool matches(std::string_view nameOrAddress) const;

  /// What is wrong with `name` as a DNS name (one trailing dot allowed), or
  /// an empty string if nothing is. Shared with DnsblList's zone check.
  static std::string nameProblem(std::string_view name);
  /// `name` lowercased (ASCII only) and without one trailing dot.
  static std::string canonicalName(std::string_view name);

 private:
  struct NameHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  std::unordered_set<std::string, NameHash, std::equal_to<>> names_;
};

}  // namespace smtpgate::policies
