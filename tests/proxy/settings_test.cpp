// settingsFrom(): the [proxy] keys reach ProxySettings, and the defaults that
// policies/config.h repeats (policies/ cannot include proxy/limits.h) agree
// with ProxySettings' own.

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "policies/config.h"
#include "proxy/proxy_context.h"

namespace smtpgate::proxy {
namespace {

using namespace std::chrono_literals;

policies::Config parse(const std::string& text) {
  rules::Diagnostics diags;
  auto cfg = policies::parseConfig(text, "smtpgate.toml", diags);
  INFO(rules::format(diags));
  REQUIRE(cfg);
  return *cfg;
}

TEST_CASE("settingsFrom: config defaults equal ProxySettings defaults", "[proxy][settings]") {
  const ProxySettings fromConfig = settingsFrom(parse(""));
  const ProxySettings defaults;
  CHECK(fromConfig.maxRecipients == defaults.maxRecipients);
  CHECK(fromConfig.maxErrors == defaults.maxErrors);
  CHECK(fromConfig.commandTimeout == defaults.commandTimeout);
  CHECK(fromConfig.dataTimeout == defaults.dataTimeout);
  CHECK(fromConfig.sessionLifetime == defaults.sessionLifetime);
  CHECK(fromConfig.maxConnections == defaults.maxConnections);
  CHECK(fromConfig.maxConnectionsPerIp == defaults.maxConnectionsPerIp);
  CHECK(fromConfig.maxLineLength == defaults.maxLineLength);
  CHECK(fromConfig.maxLineLength == limits::kCommandLineMax);
  CHECK(fromConfig.maxHeaderSize == defaults.maxHeaderSize);
  CHECK(fromConfig.maxHeaderSize == limits::kHeaderSizeMax);
  CHECK(fromConfig.bareLines == defaults.bareLines);
  CHECK(fromConfig.shutdownGrace == defaults.shutdownGrace);
  CHECK(fromConfig.backend.connectTimeout == defaults.backend.connectTimeout);
  CHECK(fromConfig.backend.commandTimeout == defaults.backend.commandTimeout);
  CHECK(fromConfig.backend.dataTimeout == defaults.backend.dataTimeout);
  CHECK(fromConfig.backend.tls == defaults.backend.tls);
  CHECK(fromConfig.threads == defaults.threads);
  CHECK(fromConfig.proxyProtocol == defaults.proxyProtocol);
  CHECK(fromConfig.trustedProxies == defaults.trustedProxies);
  CHECK(fromConfig.tlsHandshakeTimeout == defaults.tlsHandshakeTimeout);
  CHECK(fromConfig.backendReuse.maxIdle == defaults.backendReuse.maxIdle);
  CHECK(fromConfig.backendReuse.idleTime == defaults.backendReuse.idleTime);
  CHECK(fromConfig.backendReuse.maxAge == defaults.backendReuse.maxAge);
}

TEST_CASE("settingsFrom: copies every limit and timeout", "[proxy][settings]") {
  const ProxySettings s = settingsFrom(parse(R"([proxy]
max_recipients = 7
max_errors = 3
command_timeout = "1s"
data_timeout = "2s"
session_lifetime = "3s"
max_connections = 40
max_connections_per_ip = 4
max_line_length = 1000
bare_newlines = "normalize"
shutdown_grace = "5s"
backend_connect_timeout = "6s"
backend_timeout = "7s"
threads = 2
proxy_protocol = true
trusted_proxies = ["192.0.2.0/24", "2001:db8::1"]
tls_handshake_timeout = "8s"
backend_idle_connections = 0
backend_idle_time = "9s"
backend_reuse_time = "10s"
backend_tls = "verify"
max_header_size = "64K"
)"));
  CHECK(s.maxRecipients == 7);
  CHECK(s.maxHeaderSize == 64 * 1024);
  CHECK(s.maxErrors == 3);
  CHECK(s.commandTimeout == 1s);
  CHECK(s.dataTimeout == 2s);
  CHECK(s.sessionLifetime == 3s);
  CHECK(s.maxConnections == 40);
  CHECK(s.maxConnectionsPerIp == 4);
  CHECK(s.maxLineLength == 1000);
  CHECK(s.bareLines == BareLinePolicy::Normalize);
  CHECK(s.shutdownGrace == 5s);
  CHECK(s.backend.connectTimeout == 6s);
  CHECK(s.backend.commandTimeout == 7s);
  CHECK(s.backend.dataTimeout == ProxySettings{}.backend.dataTimeout);  // not backend_timeout
  CHECK(s.threads == 2);
  CHECK(s.proxyProtocol);
  CHECK(s.trustedProxies == std::vector<std::string>{"192.0.2.0/24", "2001:db8::1"});
  CHECK(s.tlsHandshakeTimeout == 8s);
  CHECK(s.backendReuse.maxIdle == 0);
  CHECK(s.backendReuse.idleTime == 9s);
  CHECK(s.backendReuse.maxAge == 10s);
  CHECK(s.backend.tls == BackendTls::Verify);
  CHECK(s.backend.tlsContext == nullptr);  // made by the caller, which can report a bad CA file
}

TEST_CASE("keepStartOnlySettings: a reload keeps listeners, threads and pools, takes the rest",
          "[proxy][settings][reload]") {
  const ProxySettings running = settingsFrom(parse(R"([proxy]
listen = ["127.0.0.1:2525"]
threads = 2
max_recipients = 10
hostname = "old.test"
)"));
  SECTION("changes to start-only keys are undone and named") {
    ProxySettings fresh = settingsFrom(parse(R"([proxy]
listen = ["127.0.0.1:2526", "[::1]:2526"]
threads = 4
backend_idle_connections = 7
max_recipients = 20
hostname = "new.test"
[metrics]
listen = "127.0.0.1:9100"
)"));
    CHECK(keepStartOnlySettings(running, fresh) ==
          std::vector<std::string>{"[proxy] listen", "[proxy] threads", "[metrics] listen",
                                   "[proxy] backend_idle_connections/backend_idle_time/"
                                   "backend_reuse_time"});
    CHECK(fresh.listen == running.listen);
    CHECK(fresh.threads == 2);
    CHECK_FALSE(fresh.metricsListen);
    CHECK(fresh.backendReuse == running.backendReuse);
    CHECK(fresh.maxRecipients == 20);  // the rest is the new config's
    CHECK(fresh.hostname == "new.test");
    CHECK(fresh.backend.ehloName == "new.test");
  }
  SECTION("nothing to say when only reloadable keys changed") {
    ProxySettings fresh = settingsFrom(parse(R"([proxy]
listen = ["127.0.0.1:2525"]
threads = 2
max_recipients = 30
)"));
    CHECK(keepStartOnlySettings(running, fresh).empty());
    CHECK(fresh.maxRecipients == 30);
  }
}

}  // namespace
}  // namespace smtpgate::proxy
