#pragma once
/// DnsResolver — the one DNS resolver of the process, on libunbound.
///
/// One libunbound context (one cache, shared by every lookup: PTR, SPF,
/// DNSBL, later DKIM/DMARC) forwards to the configured servers
/// (`[dns] servers = ["127.0.0.1:5353"]`), or to the nameservers of
/// /etc/resolv.conf when the list is empty. Every query has a deadline: the
/// per-query timeout (`[dns] timeout`) or the caller's, whichever is
/// earlier. A query that passes its deadline is cancelled inside libunbound
/// and answered `TempFail` ("timed out") — a dead server costs one timeout,
/// never a hang.
///
/// Results keep the three cases a policy must tell apart: an answer, a
/// definite "nothing here" (NXDOMAIN or no data of that type), and a
/// temporary failure (timeout, SERVFAIL, REFUSED, network error) that must
/// never be read as "not listed" or "no record".
///
/// Threads: one background thread (the "pump") owns libunbound's result
/// pipe: it runs ub_process() and expires deadlines. `queryAsync` may be
/// called from any thread; its callback runs exactly once, on the pump
/// thread (or at once on the caller's, see Cache below), so it must be
/// short (set a value, post to an Asio executor, wake a waiter) and must
/// not call `query` (it would wait on itself).
/// `query` is the synchronous form for code that can only call
/// synchronously (SPF, DKIM key lookups, DNSBL lists, reverse DNS): it
/// blocks the calling thread — never call it on an event loop thread,
/// except inside a `CacheOnlyScope` (below). The destructor answers every
/// outstanding query `TempFail` ("resolver shut down") before it returns.
///
/// Cache: in front of libunbound sits our own answer cache (DnsCache,
/// `DnsResolverOptions::cacheEntries`): answers for their TTL, NXDOMAIN and
/// NODATA for the RFC 2308 negative TTL, temporary failures never. A cached
/// answer is returned on the calling thread without touching libunbound:
/// `query` returns it at once and `queryAsync` runs its callback before it
/// returns (as it already did for invalid names). Behind it is libunbound's
/// own cache (msg-cache-size default, 4 MB), which a miss of ours may hit.
/// `observeLatency` sees only the lookups that went to libunbound.
///
/// Cache-only mode (the proxy's optimistic path): while a thread holds a
/// `CacheOnlyScope`, its lookups are answered from the cache alone and never
/// wait. A miss is noted (`cacheMissedOnThisThread`); then `query` throws
/// `WouldBlock`, while `queryAsync` answers `TempFail` ("not cached") at
/// once and never throws. Inside a `QuietMissScope`, `query` answers
/// `TempFail` too instead of throwing, for code that calls us from C
/// callbacks (libopendkim), which no exception may cross; such callers
/// check `throwIfCacheMissed()` once back in C++. `WouldBlock` is not a
/// std::exception on purpose: a `catch (const std::exception&)` meant for
/// real errors must not turn "not cached" into a result. A `catch (...)`
/// still can (checkSpf has one), so a caller that keeps a result computed
/// in a scope must call `throwIfCacheMissed()` before keeping it.
///
/// Limits: names longer than 253 bytes or with a label over 63 bytes are
/// answered `NxDomain` without a query (they cannot exist).
///
/// SECURITY: names come from the network (SPF macros, HELO, PTR data); they
/// are passed to libunbound as text, which parses and length-checks them;
/// answers are returned as raw RDATA and parsed with bounds checks by the
/// helpers below.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/value.h"

namespace smtpgate::policies {

/// The RR types smtpgate asks for.
enum class DnsType : std::uint16_t { A = 1, Ptr = 12, Mx = 15, Txt = 16, Aaaa = 28 };

enum class DnsStatus {
  Answer,    ///< at least one record of the type
  NxDomain,  ///< the name does not exist
  NoData,    ///< the name exists, with no record of this type
  TempFail,  ///< timeout, SERVFAIL, REFUSED, network or resolver error
};

std::string_view toString(DnsStatus status);

struct DnsAnswer {
  DnsStatus status = DnsStatus::TempFail;
  std::vector<std::string> rdata;  ///< raw RDATA, one per record, for Answer
  std::string error;               ///< why, for TempFail ("timed out after 5000 ms")

  [[nodiscard]] bool ok() const { return status == DnsStatus::Answer; }
  [[nodiscard]] bool tempFailed() const { return status == DnsStatus::TempFail; }
};

struct DnsResolverOptions {
  /// "IP", "IP:PORT" or "[IPV6]:PORT" (config.h's syntax); empty: /etc/resolv.conf.
  std::vector<std::string> servers;
  std::chrono::milliseconds timeout{5000};  ///< per query
  /// resolv.conf-style file used when `servers` is empty (for tests).
  std::string resolvConf = "/etc/resolv.conf";
  /// Called with each query's time from submission to answer or timeout (any
  /// thread): the metrics' DNS latency histogram. May be empty.
  std::function<void(std::chrono::duration<double>)> observeLatency = {};
  /// Answers our own cache keeps (DnsCache); 0: none (every lookup goes to libunbound).
  std::size_t cacheEntries = 10'000;
};

class DnsCache;

class DnsResolver {
 public:
  using Clock = std::chrono::steady_clock;
  using Callback = std::function<void(DnsAnswer)>;

  /// nullptr (and `error` set) if the servers are malformed or libunbound
  /// cannot be set up.
  static std::shared_ptr<DnsResolver> create(const DnsResolverOptions& options, std::string& error);
  ~DnsResolver();
  DnsResolver(const DnsResolver&) = delete;
  DnsResolver& operator=(const DnsResolver&) = delete;

  /// Thrown by `query` in a CacheOnlyScope when the answer is not cached.
  /// Deliberately not derived from std::exception (see the header comment).
  struct WouldBlock {};

  /// While alive, this thread's lookups (on any resolver) answer from the
  /// cache only (see the header comment). Scopes nest; the innermost counts.
  class CacheOnlyScope {
   public:
    CacheOnlyScope();
    ~CacheOnlyScope();
    CacheOnlyScope(const CacheOnlyScope&) = delete;
    CacheOnlyScope& operator=(const CacheOnlyScope&) = delete;
    /// A lookup in this scope was not cached.
    [[nodiscard]] bool missed() const;

   private:
    bool savedActive_;
    bool savedQuiet_;
    bool savedMissed_;
  };

  /// Inside a CacheOnlyScope: `query` answers a miss TempFail instead of
  /// throwing (for code under C callbacks). Outside one it changes nothing.
  class QuietMissScope {
   public:
    QuietMissScope();
    ~QuietMissScope();
    QuietMissScope(const QuietMissScope&) = delete;
    QuietMissScope& operator=(const QuietMissScope&) = delete;

   private:
    bool savedQuiet_;
  };

  /// True inside a CacheOnlyScope whose lookups missed the cache.
  static bool cacheMissedOnThisThread();
  /// Throws WouldBlock if cacheMissedOnThisThread().
  static void throwIfCacheMissed();

  /// Asks for `name`/`type`; `done` runs once, by min(deadline, now +
  /// timeout()) at the latest: on the resolver's thread, or on the caller's
  /// before queryAsync returns (a cached answer, an invalid name, a
  /// cache-only miss).
  void queryAsync(std::string_view name, DnsType type, Clock::time_point deadline, Callback done);
  /// Blocks until the answer or the deadline (see queryAsync).
  DnsAnswer query(std::string_view name, DnsType type, Clock::time_point deadline);
  /// With the per-query timeout as the only deadline.
  DnsAnswer query(std::string_view name, DnsType type);

  [[nodiscard]] std::chrono::milliseconds timeout() const;
  /// What the resolver forwards to, for `smtpgate check` ("127.0.0.1@5353" or
  /// "resolv.conf").
  [[nodiscard]] std::string describe() const;
  /// Our answer cache (for tests and diagnostics).
  [[nodiscard]] const DnsCache& cache() const;

  struct Impl;

 private:
  explicit DnsResolver(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

using DnsResolverPtr = std::shared_ptr<DnsResolver>;

// RDATA parsers: nullopt on malformed data.

/// An A (4 bytes) or AAAA (16 bytes) record as an address.
std::optional<rules::IpAddress> parseAddressRdata(std::string_view rdata);
/// A domain name in uncompressed wire format (PTR RDATA, or MX after the
/// 2-byte preference) as text without the final dot, lowercase kept as is.
std::optional<std::string> parseNameRdata(std::string_view rdata);
/// The exchange of an MX record.
std::optional<std::string> parseMxRdata(std::string_view rdata);
/// The character-strings of a TXT record, concatenated without separator (RFC 7208 3.3).
std::optional<std::string> parseTxtRdata(std::string_view rdata);

/// The reverse-lookup name of `addr`: "4.3.2.1.in-addr.arpa" or the 32
/// nibbles of an IPv6 address under "ip6.arpa".
std::string reverseName(const rules::IpAddress& addr);

}  // namespace smtpgate::policies
