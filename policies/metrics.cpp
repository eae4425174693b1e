#include "policies/metrics.h"

#include <fmt/core.h>

#include "policies/decision_log.h"
#include "policies/dkim_key_cache.h"

namespace smtpgate::policies {

std::string escapeLabelValue(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

Metrics& processMetrics() {
  static Metrics metrics;
  return metrics;
}

void Metrics::sessionOpened() {
  sessionsOpen_.fetch_add(1, std::memory_order_relaxed);
  sessionsTotal_.fetch_add(1, std::memory_order_relaxed);
}

void Metrics::sessionClosed() {
  sessionsOpen_.fetch_sub(1, std::memory_order_relaxed);
}

void Metrics::countDecision(const DecisionRecord& record) {
  std::lock_guard lock(mutex_);
  ++verdicts_[{record.frontend, record.action, record.stage, record.rule}];
}

void Metrics::observeDns(std::chrono::duration<double> latency) {
  const double seconds = latency.count();
  std::size_t bucket = 0;
  while (bucket < kDnsBuckets.size() && seconds > kDnsBuckets[bucket]) {
    ++bucket;
  }
  dnsBuckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  dnsMicrosTotal_.fetch_add(static_cast<std::uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

void Metrics::rulesLoaded(bool ok, std::string_view rulesetHash) {
  if (!ok) {
    reloadFailures_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  reloadsOk_.fetch_add(1, std::memory_order_relaxed);
  setRuleset(rulesetHash);
}

void Metrics::setRuleset(std::string_view rulesetHash) {
  std::lock_guard lock(mutex_);
  rulesetHash_ = std::string(rulesetHash);
}

namespace {

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += fmt::format("# HELP smtpgate_{} {}\n# TYPE smtpgate_{} {}\n", name, help, name, type);
}

}  // namespace

std::string Metrics::render(std::string_view version) const {
  std::string out;
  family(out, "build_info", "gauge", "Build of this smtpgate.");
  out += fmt::format("smtpgate_build_info{{version=\"{}\"}} 1\n", escapeLabelValue(version));
  family(out, "sessions_open", "gauge", "SMTP sessions open now.");
  out += fmt::format("smtpgate_sessions_open {}\n", sessionsOpen_.load());
  family(out, "sessions_total", "counter", "SMTP sessions accepted since start.");
  out += fmt::format("smtpgate_sessions_total {}\n", sessionsTotal_.load());
  family(out, "messages_delivered_total", "counter",
         "Messages the backend accepted (250 after DATA).");
  out += fmt::format("smtpgate_messages_delivered_total {}\n", delivered_.load());
  family(out, "messages_possible_duplicates_total", "counter",
         "Messages the backend may have taken although the client saw no reply.");
  out +=
      fmt::format("smtpgate_messages_possible_duplicates_total {}\n", possibleDuplicates_.load());
  family(out, "backend_errors_total", "counter",
         "Backend connections or commands that failed (client got 4xx).");
  out += fmt::format("smtpgate_backend_errors_total {}\n", backendErrors_.load());
  family(out, "backend_sessions_total", "counter",
         "Client sessions handed to the backend, by connection: new, or kept from an earlier "
         "session.");
  out +=
      fmt::format("smtpgate_backend_sessions_total{{connection=\"new\"}} {}\n", backendNew_.load());
  out += fmt::format("smtpgate_backend_sessions_total{{connection=\"reused\"}} {}\n",
                     backendReused_.load());
  family(out, "decision_log_errors_total", "counter",
         "Decision log lines that could not be written.");
  out += fmt::format("smtpgate_decision_log_errors_total {}\n", logErrors_.load());
  family(out, "rules_reloads_total", "counter", "Rule-set reloads, by result.");
  out += fmt::format("smtpgate_rules_reloads_total{{result=\"ok\"}} {}\n", reloadsOk_.load());
  out +=
      fmt::format("smtpgate_rules_reloads_total{{result=\"failed\"}} {}\n", reloadFailures_.load());

  family(out, "dns_query_seconds", "histogram",
         "DNS query time, answer or timeout (queries our answer cache could not answer).");
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < kDnsBuckets.size(); ++i) {
    cumulative += dnsBuckets_[i].load();
    out += fmt::format("smtpgate_dns_query_seconds_bucket{{le=\"{}\"}} {}\n", kDnsBuckets[i],
                       cumulative);
  }
  cumulative += dnsBuckets_.back().load();
  out += fmt::format("smtpgate_dns_query_seconds_bucket{{le=\"+Inf\"}} {}\n", cumulative);
  out += fmt::format("smtpgate_dns_query_seconds_sum {}\n",
                     static_cast<double>(dnsMicrosTotal_.load()) / 1e6);
  out += fmt::format("smtpgate_dns_query_seconds_count {}\n", cumulative);
  family(out, "dns_stages_total", "counter",
         "Stages whose rules may look up DNS, by where they ran: inline (every answer cached) "
         "or on the blocking pool.");
  out += fmt::format("smtpgate_dns_stages_total{{ran=\"inline\"}} {}\n", dnsStagesInline_.load());
  out += fmt::format("smtpgate_dns_stages_total{{ran=\"pool\"}} {}\n", dnsStagesPool_.load());
  const DkimKeyCacheCounts dkimKeys = dkimKeyCacheCounts();
  family(out, "dkim_keys_total", "counter",
         "DKIM public keys needed for a verification, by where the decoded key came from.");
  out += fmt::format("smtpgate_dkim_keys_total{{from=\"cache\"}} {}\n", dkimKeys.hits);
  out += fmt::format("smtpgate_dkim_keys_total{{from=\"openssl\"}} {}\n", dkimKeys.decoded);

  std::lock_guard lock(mutex_);
  family(out, "rules_loaded_info", "gauge", "The rule set in force (its hash).");
  out += fmt::format("smtpgate_rules_loaded_info{{ruleset=\"{}\"}} 1\n",
                     escapeLabelValue(rulesetHash_));
  family(out, "verdicts_total", "counter", "Logged decisions by frontend, action, stage and rule.");
  for (const auto& [labels, count] : verdicts_) {
    const auto& [frontend, action, stage, rule] = labels;
    out += fmt::format(
        "smtpgate_verdicts_total{{frontend=\"{}\",action=\"{}\",stage=\"{}\",rule=\"{}\"}} {}\n",
        escapeLabelValue(frontend), escapeLabelValue(action), escapeLabelValue(stage),
        escapeLabelValue(rule), count);
  }
  return out;
}

}  // namespace smtpgate::policies
