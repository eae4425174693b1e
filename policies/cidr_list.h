#pragma once
/// CidrList — a set of IPv4 and IPv6 networks answering "is this client
/// address in one of them?" by longest-prefix match.
///
/// Both families live in one 128-bit path-compressed binary trie (a radix
/// tree). IPv4 is stored in the v4-mapped space ::ffff:0:0/96, as IpAddress
/// stores it, so a v4 /n is the 128-bit prefix /96+n and a client that
/// connects over IPv6 as ::ffff:1.2.3.4 matches IPv4 entries. One consequence,
/// on purpose: `0.0.0.0/0` covers all of IPv4 but no native IPv6 address;
/// `::/0` covers everything.
///
/// Entries (one per ListEntry): `1.2.3.4`, `1.2.3.0/24`, `2001:db8::/32`,
/// `::1`, `0.0.0.0/0`, `::/0`. A bad entry (not an address, a prefix that is
/// not a number or is too long for its family) is an error at the entry's
/// location and is left out; an entry with host bits set beyond its prefix
/// (`10.0.0.1/8`) is a warning and the network (`10.0.0.0/8`) is used.
/// Duplicates are harmless. An address written with a colon (`::ffff:10.0.0.0`)
/// is IPv6 syntax and takes a 128-bit prefix.
///
/// Ownership and threads: built once by `build` (single-threaded), then
/// immutable; a `std::shared_ptr<const CidrList>` is safe to share between
/// threads and to read concurrently without locks.
///
/// Limits: a lookup visits at most 129 trie nodes (one per prefix length), each
/// in O(1), whatever the list size. The trie has at most 2n+1 nodes for n
/// distinct prefixes, kept in one vector with int32 child indexes (about 28
/// bytes a node), so 100,000 entries cost a few megabytes. The node count is
/// capped at INT32_MAX by the index type; entries beyond that are reported.
///
/// SECURITY: entries come from admin-edited files and are validated, never
/// trusted (an overlong or non-numeric prefix is refused, not truncated);
/// messages quote entry text through `rules::describe`, which escapes control
/// bytes. Values come from the network: lookup does no allocation for an
/// IpAddress, is bounded by the address length, and a Strings value is
/// parsed element by element with the same bounded parser.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "rules/diagnostic.h"
#include "rules/list.h"
#include "rules/value.h"

namespace smtpgate::policies {

class CidrList : public rules::List {
 public:
  /// Builds a list from `entries`, reporting every bad entry into `diags`.
  static std::shared_ptr<const CidrList> build(const std::vector<rules::ListEntry>& entries,
                                               rules::Diagnostics& diags);

  CidrList();

  /// Validates and adds one entry. Returns false (and reports an error) if it
  /// was left out; a host-bits warning still returns true.
  bool add(const rules::ListEntry& entry, rules::Diagnostics& diags);

  [[nodiscard]] rules::ListKind kind() const override { return rules::ListKind::Cidr; }
  /// Number of distinct networks.
  [[nodiscard]] std::size_t size() const override { return size_; }
  /// True if `value` (an IpAddress, or Strings of address texts: any of them)
  /// is inside one of the networks; Unknown for an Unavailable value; False
  /// for anything else. `qualifier` is not used by CIDR lists.
  [[nodiscard]] rules::Tri contains(const rules::FactValue& value,
                                    std::string_view qualifier) const override;

  /// The prefix length of the longest network containing `addr`, in the
  /// network's own family: a v4 /24 gives 24, a v6 /32 gives 32. A native v6
  /// network that happens to cover the v4-mapped space (`::/64`) gives its
  /// 128-bit length.
  [[nodiscard]] std::optional<int> longestMatch(const rules::IpAddress& addr) const;

 private:
  using Key = std::array<std::uint8_t, 16>;
  struct Node {
    Key key{};                         ///< the prefix, bits beyond `length` zero
    std::int32_t child[2] = {-1, -1};  ///< indexes into nodes_, -1 = none
    std::uint8_t length = 0;           ///< 0..128
    bool terminal = false;             ///< a network ends here
  };

  /// Inserts the 128-bit prefix (key already masked). False if the node pool is full.
  bool insert(const Key& key, unsigned length);
  std::int32_t newNode(const Key& key, unsigned length, bool terminal);
  [[nodiscard]] std::optional<unsigned> longestMatch128(const Key& key) const;

  std::vector<Node> nodes_;  ///< nodes_[0] is the root, ::/0
  std::size_t size_ = 0;
};

}  // namespace smtpgate::policies
