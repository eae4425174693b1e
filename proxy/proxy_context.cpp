#include "proxy/proxy_context.h"

#include <unistd.h>

#include <climits>

namespace smtpgate::proxy {

namespace {

std::string systemHostname() {
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') {
    return "localhost";
  }
  return name;
}

BackendTls backendTlsFrom(policies::BackendTlsLevel level) {
  switch (level) {
    case policies::BackendTlsLevel::None:
      return BackendTls::None;
    case policies::BackendTlsLevel::May:
      return BackendTls::May;
    case policies::BackendTlsLevel::Encrypt:
      return BackendTls::Encrypt;
    case policies::BackendTlsLevel::Verify:
      return BackendTls::Verify;
  }
  return BackendTls::None;
}

}  // namespace

ProxySettings settingsFrom(const policies::Config& config) {
  ProxySettings s;
  s.hostname = config.proxy.hostname.empty() ? systemHostname() : config.proxy.hostname;
  for (const auto& l : config.proxy.listen) {
    std::string error;
    if (auto hp = policies::parseHostPort(l, error)) {
      s.listen.push_back(*hp);
    }
  }
  std::string error;
  if (auto backend = policies::parseBackendAddress(config.proxy.backend, error)) {
    s.backend.host = backend->tcp.host;
    s.backend.port = backend->tcp.port;
  }
  s.backend.ehloName = s.hostname;
  s.backend.xclient = config.proxy.xclient;
  s.maxMessageSize = config.proxy.maxMessageSize;
  s.maxHeaderSize = config.proxy.maxHeaderSize;
  s.policy.dryRun = config.rules.mode == policies::RulesMode::DryRun;
  s.policy.dnsFailure = config.failure.dns;
  s.policy.hostname = s.hostname;
  policies::applyAuthConfig(config, s.policy);  // [auth] authserv_id, [dkim]
  const policies::ProxyConfig& p = config.proxy;
  s.maxRecipients = p.maxRecipients;
  s.maxErrors = p.maxErrors;
  s.commandTimeout = p.commandTimeout;
  s.dataTimeout = p.dataTimeout;
  s.sessionLifetime = p.sessionLifetime;
  s.maxConnections = p.maxConnections;
  s.maxConnectionsPerIp = p.maxConnectionsPerIp;
  s.maxLineLength = p.maxLineLength;
  s.bareLines = p.bareNewlines == policies::BareNewlines::Normalize ? BareLinePolicy::Normalize
                                                                    : BareLinePolicy::Reject;
  s.shutdownGrace = p.shutdownGrace;
  // backend_timeout covers the reply to each command; the final reply to the
  // message keeps BackendOptions::dataTimeout (smtp_data_done_timeout = 600s).
  s.backend.connectTimeout = p.backendConnectTimeout;
  s.backend.commandTimeout = p.backendTimeout;
  s.backend.tls = backendTlsFrom(p.backendTls);  // its context: the caller's (CAs may not load)
  s.backendReuse = {p.backendIdleConnections, p.backendIdleTime, p.backendReuseTime};
  s.threads = p.threads;
  if (!config.metrics.listen.empty()) {
    std::string error;
    s.metricsListen = policies::parseHostPort(config.metrics.listen, error);  // lint checked it
  }
  s.proxyProtocol = p.proxyProtocol;
  s.trustedProxies = p.trustedProxies;
  s.tlsHandshakeTimeout = p.tlsHandshakeTimeout;
  return s;
}

std::vector<std::string> keepStartOnlySettings(const ProxySettings& running, ProxySettings& fresh) {
  std::vector<std::string> kept;
  auto keep = [&](auto member, std::string key) {
    if (!(fresh.*member == running.*member)) {
      fresh.*member = running.*member;
      kept.push_back(std::move(key));
    }
  };
  keep(&ProxySettings::listen, "[proxy] listen");
  keep(&ProxySettings::threads, "[proxy] threads");
  keep(&ProxySettings::metricsListen, "[metrics] listen");
  keep(&ProxySettings::backendReuse,
       "[proxy] backend_idle_connections/backend_idle_time/"
       "backend_reuse_time");
  return kept;
}

bool ServingConfig::trustsProxy(const std::string& peerIp) const {
  auto ip = rules::IpAddress::parse(peerIp);
  return ip && trustedProxies &&
         trustedProxies->contains(rules::FactValue(*ip), {}) == rules::Tri::True;
}

ProxyContext::ProxyContext(ServingConfig config, policies::DecisionLog* log) : log_(log) {
  if (config.settings.policy.resolver) {
    // Each worker waits at most one DNS timeout per lookup; 32 of them keep
    // 32 sessions resolving at once while the I/O threads go on. (Every
    // reload makes a resolver too: the proxy always runs with DNS.)
    constexpr std::size_t kBlockingWorkers = 32;
    blockingPool_ = std::make_unique<asio::thread_pool>(kBlockingWorkers);
  }
  install(std::move(config));
}

void ProxyContext::install(ServingConfig config) {
  std::vector<rules::ListEntry> entries;
  for (const auto& cidr : config.settings.trustedProxies) {
    entries.push_back({cidr, {}, cidr});
  }
  rules::Diagnostics ignored;  // parseConfig validated every entry already
  config.trustedProxies = policies::CidrList::build(entries, ignored);
  auto fresh = std::make_shared<const ServingConfig>(std::move(config));
  std::lock_guard lock(mutex_);
  if (current_ && !(current_->settings.backend == fresh->settings.backend)) {
    backendCapabilities_.reset();
    backendXclientOffer_.reset();
  }
  current_ = std::move(fresh);
}

void ProxyContext::learnBackend(const BackendOptions& from,
                                std::optional<std::set<std::string>> caps,
                                std::optional<std::string> xclientOffer) {
  std::lock_guard lock(mutex_);
  if (!(current_->settings.backend == from)) {
    return;
  }
  if (caps) {
    backendCapabilities_ = std::move(caps);
  }
  if (xclientOffer) {
    backendXclientOffer_ = std::move(xclientOffer);
  }
}

bool ProxyContext::admit(const std::string& ip) {
  std::lock_guard lock(mutex_);
  std::size_t& forIp = perIp_[ip];
  const ProxySettings& limits = current_->settings;
  if (connections_ >= limits.maxConnections || forIp >= limits.maxConnectionsPerIp) {
    if (forIp == 0) {
      perIp_.erase(ip);
    }
    return false;
  }
  ++forIp;
  ++connections_;
  return true;
}

void ProxyContext::release(const std::string& ip) {
  std::lock_guard lock(mutex_);
  auto it = perIp_.find(ip);
  if (it != perIp_.end() && --it->second == 0) {
    perIp_.erase(it);
  }
  --connections_;
}

}  // namespace smtpgate::proxy
