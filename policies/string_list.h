#pragma once
/// StringList — a set of exact strings, compared ASCII case-insensitively.
///
/// Why case-insensitive: these lists mostly hold mail addresses and names
/// (`postmaster@example.com`, HELO names). The domain part of an address is
/// case-insensitive by definition (RFC 5321 §2.4, DNS RFC 4343), and although
/// the local part may in theory be case-sensitive, in practice no mail system
/// treats `John@` and `john@` as different mailboxes, and Postfix's own access
/// tables fold case. An admin listing `Spammer@Example.COM` expects it to catch
/// `spammer@example.com`. Only ASCII letters are folded: that is all SMTP
/// envelopes use, and it keeps the comparison locale-free and predictable.
///
/// Entries: any non-empty text (an empty entry is an error at its location).
/// Duplicates, including ones differing only in case, are harmless.
///
/// Ownership and threads: built once by `build`, then immutable; a
/// `std::shared_ptr<const StringList>` is safe to share and read concurrently.
///
/// Limits: a lookup is one hash probe. A value longer than the longest entry
/// cannot match and is refused before it is copied or hashed.
///
/// SECURITY: entries come from admin-edited files; values from the network
/// (addresses, headers) may be long or contain any byte. Values are only
/// lowercased and compared, never interpreted; the work per value is bounded
/// by the longest entry, as above.

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

class StringList : public rules::List {
 public:
  /// Builds a list from `entries`, reporting every bad entry into `diags`.
  static std::shared_ptr<const StringList> build(const std::vector<rules::ListEntry>& entries,
                                                 rules::Diagnostics& diags);

  /// Adds one entry; false (and an error) for an empty one.
  bool add(const rules::ListEntry& entry, rules::Diagnostics& diags);

  [[nodiscard]] rules::ListKind kind() const override { return rules::ListKind::String; }
  /// Number of distinct entries (after case folding).
  [[nodiscard]] std::size_t size() const override { return entries_.size(); }
  /// True if the string value (or any element of a Strings value) equals an
  /// entry, ignoring ASCII case; Unknown for an Unavailable value; False
  /// otherwise. `qualifier` is not used by string lists.
  [[nodiscard]] rules::Tri contains(const rules::FactValue& value,
                                    std::string_view qualifier) const override;

  [[nodiscard]] bool matches(std::string_view text) const;

 private:
  struct TextHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  std::unordered_set<std::string, TextHash, std::equal_to<>> entries_;
  std::size_t longest_ = 0;
};

}  // namespace smtpgate::policies
