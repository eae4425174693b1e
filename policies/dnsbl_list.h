#pragma once
/// DnsblList — a DNS blocklist zone (`zen.spamhaus.org`) used as a list:
/// `client.ip in @spamhaus` or, for one answer code, `@spamhaus:127.0.0.2`
/// (a last-octet range `@spamhaus:127.0.0.2-11` is allowed too).
///
/// The list holds exactly one zone, written as its only entry and validated
/// as a domain name (stored lowercase, without a trailing dot); a second
/// zone is an error. DNS lookups are not part of this build yet
/// (TODO(lists): wire the libunbound Resolver), so `contains` answers
/// `Tri::Unknown` for every address — never a made-up True or False, so a
/// rule on it neither fires nor is skipped as "not listed" (Kleene logic in
/// rules/value.h). The pure parts are here already: `queryName` builds the
/// RFC 5782 query name, and `parseQualifier`/`validQualifier` check the
/// answer-code syntax, so `smtpgate lint` can reject `@spamhaus:127.0.0.x`.
///
/// Ownership and threads: built once by `build`, then immutable; a
/// `std::shared_ptr<const DnsblList>` is safe to share and read concurrently.
///
/// Limits: query names are at most 8 (IPv4) or 64 (IPv6) bytes plus the zone,
/// which is at most 253 bytes.
///
/// SECURITY: the zone comes from an admin-edited file and is validated as a
/// DNS name, so nothing but [A-Za-z0-9-_.] is ever put into a query. Query
/// names are built from the 16 bytes of a parsed IpAddress, never from
/// client-supplied text; the qualifier is parsed strictly (dotted-quad IPv4,
/// optional `-N` with N 0-255 and not below the last octet).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/diagnostic.h"
#include "rules/list.h"
#include "rules/value.h"

namespace smtpgate::policies {

class DnsblList : public rules::List {
 public:
  /// An inclusive range of IPv4 answer codes, in host byte order.
  struct AnswerRange {
    std::uint32_t first = 0;
    std::uint32_t last = 0;
    friend bool operator==(const AnswerRange&, const AnswerRange&) = default;
  };

  /// Builds a list from `entries` (one zone), reporting problems into `diags`.
  static std::shared_ptr<const DnsblList> build(const std::vector<rules::ListEntry>& entries,
                                                rules::Diagnostics& diags);

  /// Sets the zone from `entry`; false (and an error) if the entry is not a
  /// domain name or a zone is already set (unless it is the same zone).
  bool add(const rules::ListEntry& entry, rules::Diagnostics& diags);

  [[nodiscard]] rules::ListKind kind() const override { return rules::ListKind::Dnsbl; }
  /// 1 once a zone is set, else 0.
  [[nodiscard]] std::size_t size() const override { return zone_.empty() ? 0 : 1; }
  /// Unknown for an address (an IpAddress, or Strings with an address text)
  /// and for an Unavailable value, since nothing is looked up yet; False for
  /// a value that is no address at all (it cannot be listed).
  [[nodiscard]] rules::Tri contains(const rules::FactValue& value,
                                    std::string_view qualifier) const override;

  /// The zone, lowercase and without a trailing dot; empty if none was valid.
  [[nodiscard]] const std::string& zone() const { return zone_; }

  /// `127.0.0.2` or `127.0.0.2-11` (last octet range, inclusive) as a range;
  /// nullopt for anything else, including an empty qualifier.
  static std::optional<AnswerRange> parseQualifier(std::string_view qualifier);
  static bool validQualifier(std::string_view qualifier) {
    return parseQualifier(qualifier).has_value();
  }

  /// The RFC 5782 query name for `addr` under `zone`: for IPv4 (including
  /// v4-mapped) the octets reversed, `4.3.2.1.zone`; for IPv6 the 32 nibbles
  /// reversed, lowercase hex, then `zone`. `zone` is appended as given.
  static std::string queryName(const rules::IpAddress& addr, std::string_view zone);

 private:
  std::string zone_;
};

}  // namespace smtpgate::policies
