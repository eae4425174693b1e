#pragma once
/// DnsCache — the answers DnsResolver already had, kept for their TTL, so a
/// lookup whose answer is known costs a hash and a short lock instead of a
/// round trip through libunbound's threads.
///
/// Keyed by (name, type, class); names compare case-insensitively and
/// without a final dot ("Example.COM." is "example.com"). What is kept and
/// for how long is the caller's choice (`store` with a TTL); DnsResolver
/// stores answers for their DNS TTL, NXDOMAIN and NODATA for the negative
/// TTL of RFC 2308 (`negativeTtl`), and never a temporary failure. An entry
/// is served until `now` reaches its expiry and dropped when found expired.
///
/// Limits: at most `maxEntries` entries (0 disables the cache: every `find`
/// misses, `store` keeps nothing). The entries are split over kShards
/// shards by the key's hash, each with its own mutex and its own LRU order;
/// a full shard evicts its least recently used entry. TTLs are capped at
/// kMaxTtl (answers) and kMaxNegativeTtl (NXDOMAIN, NODATA), libunbound's
/// own defaults (cache-max-ttl, cache-max-negative-ttl).
///
/// Threads: every method may be called from any thread at once; a call
/// holds one shard's mutex for a map lookup and a list splice (copying the
/// answer out on a hit), never while calling out.
///
/// Time is passed in (`now`), never read here, so tests drive expiry with a
/// manual clock (STYLE.md G6).

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "policies/dns_resolver.h"

namespace smtpgate::policies {

class DnsCache {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t kShards = 16;
  static constexpr std::size_t kDefaultEntries = 10'000;
  static constexpr std::chrono::seconds kMaxTtl{86'400};
  static constexpr std::chrono::seconds kMaxNegativeTtl{3'600};
  /// NXDOMAIN/NODATA without an SOA in the authority section: RFC 2308 5
  /// says not to cache it; a leaf cache keeps it this briefly so a burst of
  /// sessions asking the same name does not hit libunbound each time.
  static constexpr std::chrono::seconds kNegativeTtlWithoutSoa{5};

  explicit DnsCache(std::size_t maxEntries = kDefaultEntries);
  DnsCache(const DnsCache&) = delete;
  DnsCache& operator=(const DnsCache&) = delete;

  /// The cached answer, if one is there and not expired at `now`.
  std::optional<DnsAnswer> find(std::string_view name, DnsType type, Clock::time_point now);
  /// Keeps `answer` until now + ttl (capped); a TempFail answer, a ttl of
  /// zero or less, or a disabled cache keeps nothing.
  void store(std::string_view name, DnsType type, const DnsAnswer& answer, std::chrono::seconds ttl,
             Clock::time_point now);

  struct Stats {
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
    std::uint64_t stores = 0;
    std::uint64_t evictions = 0;  ///< entries pushed out by a full shard (not expiries)
  };
  [[nodiscard]] Stats stats() const;
  /// Entries held (expired ones not yet found included).
  [[nodiscard]] std::size_t size() const;
  [[nodiscard]] std::size_t capacity() const { return perShard_ * kShards; }

  /// The TTL to cache a negative answer (NXDOMAIN, NODATA) for, from the DNS
  /// message that carried it: min(SOA TTL, SOA MINIMUM) of the first SOA in
  /// the authority section (RFC 2308 5), capped at kMaxNegativeTtl;
  /// kNegativeTtlWithoutSoa when there is none. Malformed or truncated
  /// messages count as having no SOA.
  static std::chrono::seconds negativeTtl(std::string_view packet);

 private:
  struct Entry {
    std::string key;
    DnsAnswer answer;
    Clock::time_point expires;
  };
  struct Shard {
    mutable std::mutex mutex;
    std::list<Entry> lru;  ///< most recently used first
    std::unordered_map<std::string_view, std::list<Entry>::iterator>
        index;  ///< views into lru keys
  };

  static std::string keyFor(std::string_view name, DnsType type);
  Shard& shardFor(std::string_view key);

  std::size_t perShard_;
  std::array<Shard, kShards> shards_;
  std::atomic<std::uint64_t> hits_{0};
  std::atomic<std::uint64_t> misses_{0};
  std::atomic<std::uint64_t> stores_{0};
  std::atomic<std::uint64_t> evictions_{0};
};

}  // namespace smtpgate::policies
