#pragma once
/// ProxyContext — what all sessions of one proxy share, and nothing else
/// (STYLE.md G8): the serving config (settings, RuleSet and TLS context,
/// swapped whole on reload; a session keeps the one it started with), the
/// backend's last known capabilities, the decision log, the per-client
/// connection counts, the worker pool for stages that may block on DNS, and
/// the process's metrics. Thread-safe.

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/thread_pool.hpp>

#include "policies/cidr_list.h"
#include "policies/config.h"
#include "policies/decision_log.h"
#include "policies/metrics.h"
#include "policies/policy.h"
#include "proxy/backend_client.h"
#include "proxy/backend_pool.h"
#include "proxy/data_framer.h"
#include "proxy/limits.h"
#include "rules/rule_set.h"

namespace smtpgate::proxy {

struct ProxySettings {
  std::string hostname;  ///< in the banner and EHLO reply
  std::vector<policies::HostPort> listen;
  BackendOptions backend;
  /// Backend connections kept between sessions; maxIdle counts for the whole
  /// server (the Server splits it between its I/O threads).
  BackendPoolLimits backendReuse = {100, std::chrono::seconds(2), std::chrono::seconds(300)};
  std::uint64_t maxMessageSize = limits::kMessageSizeMax;
  std::uint64_t maxHeaderSize = limits::kHeaderSizeMax;  ///< the message's header section
  std::size_t maxRecipients = limits::kRecipientsMax;
  /// Errors (unknown commands, bad syntax, refused commands) before "421 4.7.0
  /// Too many errors" and close. Postfix: smtpd_hard_error_limit = 20.
  std::size_t maxErrors = 20;
  Duration commandTimeout = std::chrono::seconds(limits::kCommandTimeoutSeconds);
  /// Time for the whole message after 354. Postfix has no single knob; its
  /// smtpd_timeout applies per read, which a slow drip can stretch forever.
  Duration dataTimeout = std::chrono::minutes(10);
  /// A session older than this is closed with 421 (a watchdog, not Postfix).
  Duration sessionLifetime = std::chrono::hours(1);
  std::size_t maxConnections = 1000;     ///< Postfix: default_process_limit = 100
  std::size_t maxConnectionsPerIp = 50;  ///< Postfix: smtpd_client_connection_count_limit = 50
  BareLinePolicy bareLines = BareLinePolicy::Reject;
  /// How every session's Policy runs: dry-run, frontend "proxy", DNS failure
  /// mode, our hostname and the process's DNS resolver (null: no DNS facts).
  policies::PolicyOptions policy = {false, "proxy"};
  Duration shutdownGrace = std::chrono::seconds(30);
  /// Time for the TLS handshake after STARTTLS. Postfix: smtpd_starttls_timeout = 300s
  /// (a stalled handshake holds a session, so shorter here).
  Duration tlsHandshakeTimeout = std::chrono::seconds(10);
  Duration backendProbeInterval = std::chrono::seconds(60);
  /// A message larger than this during DATA moves from memory to a temporary
  /// file in spoolDirectory (unlinked at once).
  std::size_t messageMemoryLimit = std::size_t{1} << 20;
  std::string spoolDirectory = "/tmp";
  /// Longest command line, CRLF not counted. Postfix: line_length_limit = 2048.
  std::size_t maxLineLength = limits::kCommandLineMax;
  /// Every listener reads a PROXY protocol header (proxy/proxy_protocol.h)
  /// before the banner, and only from a peer inside trustedProxies. Postfix:
  /// smtpd_upstream_proxy_protocol = haproxy.
  bool proxyProtocol = false;
  std::vector<std::string> trustedProxies;  ///< CIDRs, validated by parseConfig
  unsigned threads = 0;                     ///< I/O threads; 0 = one per core
  /// `[metrics] listen`: where GET /metrics is served; unset: nowhere.
  std::optional<policies::HostPort> metricsListen;
};

/// Builds the proxy settings from the configuration.
ProxySettings settingsFrom(const policies::Config& config);

/// What a start or a reload puts in force at once. A session takes the one
/// current when it is accepted and keeps it to its end, so a reload never
/// changes the limits, rules or certificate under an open session.
struct ServingConfig {
  ProxySettings settings;
  rules::RuleSetPtr rules;
  /// STARTTLS to clients; nullptr when no certificate is configured (then
  /// STARTTLS is neither offered nor accepted).
  std::shared_ptr<asio::ssl::context> tls;
  /// settings.trustedProxies, compiled (ProxyContext::install fills it in).
  std::shared_ptr<const policies::CidrList> trustedProxies;

  /// True if `peerIp` may send a PROXY protocol header (proxy.trusted_proxies).
  [[nodiscard]] bool trustsProxy(const std::string& peerIp) const;
};
using ServingConfigPtr = std::shared_ptr<const ServingConfig>;

/// The settings a reload cannot change in a running process (listeners, I/O
/// threads, the kept-connection pools are made once at start): each such
/// setting that differs in `fresh` is set back to its value in `running`,
/// and its config key is returned, for the "restart to apply" warning.
std::vector<std::string> keepStartOnlySettings(const ProxySettings& running, ProxySettings& fresh);

class ProxyContext {
 public:
  ProxyContext(ServingConfig config, policies::DecisionLog* log);

  /// The serving config in force now.
  [[nodiscard]] ServingConfigPtr current() const {
    std::lock_guard lock(mutex_);
    return current_;
  }
  /// Puts `config` in force for the sessions accepted from now on. When the
  /// backend changed, what was learnt about the old one is forgotten (its
  /// capabilities, its XCLIENT offer) until the next probe or session.
  void install(ServingConfig config);

  [[nodiscard]] std::optional<std::set<std::string>> backendCapabilities() const {
    std::lock_guard lock(mutex_);
    return backendCapabilities_;
  }
  /// The backend's "XCLIENT ..." capability in its answer to the proxy's own
  /// EHLO (probe or session), empty if it offered none; nullopt until seen.
  [[nodiscard]] std::optional<std::string> backendXclientOffer() const {
    std::lock_guard lock(mutex_);
    return backendXclientOffer_;
  }
  /// What the probe or a session learnt from the backend `from`: its EHLO
  /// capabilities and XCLIENT offer (each kept as before when nullopt).
  /// Ignored when `from` is no longer the backend in force: a reload changed
  /// it while the probe or the session was talking to the old one.
  void learnBackend(const BackendOptions& from, std::optional<std::set<std::string>> caps,
                    std::optional<std::string> xclientOffer);

  /// Writes a decision line; failures are counted, never fatal.
  void log(const policies::DecisionRecord& record) {
    metrics.countDecision(record);
    if (log_ != nullptr && !log_->write(record)) {
      metrics.logError();
    }
  }

  /// Where Policy stages that may block in a DNS lookup run (SPF, DKIM and the
  /// DNSBL lookups are synchronous), so the I/O threads never wait on DNS;
  /// a stage whose answers are all cached runs inline (SmtpSession::decide).
  /// Null when there is no resolver: then stages run on the session's executor.
  [[nodiscard]] asio::thread_pool* blockingPool() { return blockingPool_.get(); }

  /// Admits a connection from `ip` within the total and per-IP limits (those
  /// of the config in force).
  bool admit(const std::string& ip);
  void release(const std::string& ip);

  /// Counters for the metrics endpoint (and the drain at shutdown).
  policies::Metrics& metrics = policies::processMetrics();

 private:
  mutable std::mutex mutex_;
  ServingConfigPtr current_;
  std::optional<std::set<std::string>> backendCapabilities_;
  std::optional<std::string> backendXclientOffer_;
  policies::DecisionLog* log_;
  std::unique_ptr<asio::thread_pool> blockingPool_;
  std::map<std::string, std::size_t> perIp_;
  std::size_t connections_ = 0;
};

}  // namespace smtpgate::proxy
