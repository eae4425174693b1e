#pragma once
/// Metrics — what an operator scrapes to see "is anything wrong right now?",
/// in Prometheus' text exposition format (version 0.0.4). One instance per
/// process, shared by every session; all methods are thread-safe and cheap
/// (atomics; one short mutex for the verdict labels).
///
/// Families (all prefixed smtpgate_):
///   sessions_open (gauge), sessions_total, messages_delivered_total,
///   messages_possible_duplicates_total,
///   verdicts_total{frontend,action,stage,rule}, backend_errors_total,
///   backend_sessions_total{connection="new"|"reused"},
///   decision_log_errors_total, dns_query_seconds (histogram),
///   dns_stages_total{ran="inline"|"pool"}, dkim_keys_total{from="cache"|"openssl"},
///   rules_reloads_total{result="ok"|"failed"}, rules_loaded_info{ruleset},
///   build_info{version}.
///
/// Label values are escaped as the format requires (backslash, quote,
/// newline), so a hostile rule id or action cannot forge a line.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

namespace smtpgate::policies {

struct DecisionRecord;

class Metrics {
 public:
  /// Upper bounds of the DNS latency buckets, in seconds (+Inf is implied).
  static constexpr std::array<double, 10> kDnsBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025,
                                                         0.05,  0.1,    0.25,  1.0,  5.0};

  void sessionOpened();
  void sessionClosed();
  void messageDelivered() { delivered_.fetch_add(1, std::memory_order_relaxed); }
  /// The backend took a message but its reply was lost: it may be sent twice.
  void possibleDuplicate() { possibleDuplicates_.fetch_add(1, std::memory_order_relaxed); }
  void backendError() { backendErrors_.fetch_add(1, std::memory_order_relaxed); }
  /// A client session got its backend connection: a new one, or one kept
  /// from an earlier session (proxy::BackendPool).
  void backendSession(bool reused) {
    (reused ? backendReused_ : backendNew_).fetch_add(1, std::memory_order_relaxed);
  }
  void logError() { logErrors_.fetch_add(1, std::memory_order_relaxed); }
  /// A logged decision: counted by its frontend, action, stage and rule.
  void countDecision(const DecisionRecord& record);
  void observeDns(std::chrono::duration<double> latency);
  /// A stage whose rules may look up DNS ran: on the I/O thread because every
  /// answer was cached (`inline`), or on the blocking pool.
  void dnsStage(bool inline_) {
    (inline_ ? dnsStagesInline_ : dnsStagesPool_).fetch_add(1, std::memory_order_relaxed);
  }
  /// A rule-set reload: `ok` with the new set's hash, or a failure.
  void rulesLoaded(bool ok, std::string_view rulesetHash);
  /// The rule set in force (at start-up; rulesLoaded sets it on reloads).
  void setRuleset(std::string_view rulesetHash);

  [[nodiscard]] std::int64_t sessionsOpen() const { return sessionsOpen_.load(); }
  [[nodiscard]] std::uint64_t reloadFailures() const { return reloadFailures_.load(); }

  /// The whole exposition, ending in a newline.
  [[nodiscard]] std::string render(std::string_view version) const;

 private:
  std::atomic<std::int64_t> sessionsOpen_{0};
  std::atomic<std::uint64_t> sessionsTotal_{0};
  std::atomic<std::uint64_t> delivered_{0};
  std::atomic<std::uint64_t> possibleDuplicates_{0};
  std::atomic<std::uint64_t> backendErrors_{0};
  std::atomic<std::uint64_t> backendNew_{0};
  std::atomic<std::uint64_t> backendReused_{0};
  std::atomic<std::uint64_t> logErrors_{0};
  std::atomic<std::uint64_t> reloadsOk_{0};
  std::atomic<std::uint64_t> reloadFailures_{0};
  std::array<std::atomic<std::uint64_t>, kDnsBuckets.size() + 1> dnsBuckets_{};
  std::atomic<std::uint64_t> dnsMicrosTotal_{0};

  mutable std::mutex mutex_;
  /// (frontend, action, stage, rule) -> count
  std::map<std::tuple<std::string, std::string, std::string, std::string>, std::uint64_t> verdicts_;
  std::string rulesetHash_;
  std::atomic<std::uint64_t> dnsStagesInline_{0};
  std::atomic<std::uint64_t> dnsStagesPool_{0};
};

/// The process's metrics: every frontend and the DNS resolver count here.
Metrics& processMetrics();

/// `text` escaped for a Prometheus label value.
std::string escapeLabelValue(std::string_view text);

}  // namespace smtpgate::policies
