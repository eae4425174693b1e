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
  s.dryRun = config.rules.mode == policies::RulesMode::DryRun;
  return s;
}

bool ProxyContext::admit(const std::string& ip) {
  std::lock_guard lock(mutex_);
  std::size_t& forIp = perIp_[ip];
  if (connections_ >= settings_.maxConnections || forIp >= settings_.maxConnectionsPerIp) {
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
