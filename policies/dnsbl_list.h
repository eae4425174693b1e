#pragma once
/// DnsblList — a DNS blocklist zone (`zen.spamhaus.org`) used as a list:
/// `client.ip in @spamhaus` or, for one answer code, `@spamhaus:127.0.0.2`
/// (a last-octet range `@spamhaus:127.0.0.2-11` is allowed too).
///
/// The list holds exactly one zone, written as its only entry and validated
/// as a domain name (stored lowercase, without a trailing dot); a second
/// zone is an error. With a resolver (set by the StandardListBuilder when a
/// DnsResolver is configured), `contains` asks for the A records of
/// `queryName(addr, zone)`: NXDOMAIN or no data is False; an answer is True
/// (with a qualifier: True only if some A record is in its range; without
/// one, any 127.0.0.0/8 answer except the 127.255.255.0/24 error codes,
/// e.g. Spamhaus' 127.255.255.254 "public resolver refused"); a temporary
/// DNS failure, an error code, or no resolver at all (`smtpgate lint`) is
/// `Tri::Unknown` — never a made-up True or False, so a rule on it neither
/// fires nor is skipped as "not listed" (Kleene logic in rules/value.h).
/// Failures are counted per thread (`lookupFailuresOnThisThread`) so the
/// Policy can apply `[failure] dns` to a stage whose rules needed one.
/// Each lookup blocks the calling thread for up to the resolver's timeout;
/// repeated lookups are answered from the resolver's cache.
///
/// Recording and replay: while a thread has an `AnswerLog` installed
/// (`useAnswerLogOnThisThread`), every definite answer its lookups get
/// (listed, with the A records, or not listed) is written into it, so the
/// decision log can keep the DNSBL facts a session was judged on. With
/// `AnswerLog::replay` set, lookups are answered from the log alone and never
/// reach the resolver (`smtpgate replay`): a query name the log lacks is
/// Unknown, is noted in `missing`, and does not count as a DNS failure.
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
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policies/dns_resolver.h"
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
  /// Without a resolver every lookup answers Unknown.
  static std::shared_ptr<const DnsblList> build(const std::vector<rules::ListEntry>& entries,
                                                rules::Diagnostics& diags,
                                                std::shared_ptr<DnsResolver> resolver = nullptr);

  /// DNS lookups of any DnsblList that failed temporarily on this thread so far.
  static std::uint64_t lookupFailuresOnThisThread();

  /// Definite answers by query name (`queryName(addr, zone)`): the A records
  /// as dotted quads, an empty list for "not listed" (NXDOMAIN, no data).
  struct AnswerLog {
    std::map<std::string, std::vector<std::string>, std::less<>> answers;
    bool replay = false;               ///< answer from `answers` only, never ask DNS
    std::vector<std::string> missing;  ///< replay: query names asked for but not in `answers`
  };
  /// At most this many answers are recorded per log (a session asks a few).
  static constexpr std::size_t kMaxLoggedAnswers = 32;
  /// Installs `log` (null: none) for this thread's lookups; returns the one
  /// it replaces, for the caller to put back.
  static AnswerLog* useAnswerLogOnThisThread(AnswerLog* log);

  /// Sets the zone from `entry`; false (and an error) if the entry is not a
  /// domain name or a zone is already set (unless it is the same zone).
  bool add(const rules::ListEntry& entry, rules::Diagnostics& diags);

  [[nodiscard]] rules::ListKind kind() const override { return rules::ListKind::Dnsbl; }
  /// 1 once a zone is set, else 0.
  [[nodiscard]] std::size_t size() const override { return zone_.empty() ? 0 : 1; }
  /// The DNS answer for an address (an IpAddress, or Strings with address
  /// texts: True if any is listed), Unknown for an Unavailable value or
  /// when the lookup fails; False for a value that is no address at all.
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
  rules::Tri lookup(const rules::IpAddress& addr, std::string_view qualifier) const;
  /// The A records for `name` (empty: not listed); nullopt when unknown.
  std::optional<std::vector<rules::IpAddress>> answerFor(const std::string& name) const;

  std::string zone_;
  std::shared_ptr<DnsResolver> resolver_;
};

}  // namespace smtpgate::policies
