#include "cli/proxy_command.h"

#include <fmt/core.h>

#include "cli/daemon_memory.h"
#include "cli/exit_codes.h"
#include "cli/loaded_config.h"
#include "cli/systemd_notify.h"
#include "cli/tls_contexts.h"
#include "proxy/server.h"

#include <csignal>

namespace smtpgate::cli {

namespace {

struct ProxyOptions {
  std::string config;
  unsigned threads = 0;
};

/// What `loaded` puts in force: the proxy settings with the resolver, the
/// rules, and the TLS contexts its certificates make; nullopt, with the
/// reason on stderr, when a certificate, key or CA file does not load.
std::optional<proxy::ServingConfig> servingConfigFrom(const LoadedConfig& loaded) {
  const policies::ProxyConfig& config = loaded.config.proxy;
  proxy::ServingConfig serving{proxy::settingsFrom(loaded.config), loaded.rules, nullptr, nullptr};
  serving.settings.policy.resolver = loaded.resolver;
  std::string error;
  if (serving.settings.backend.tls != proxy::BackendTls::None) {
    serving.settings.backend.tlsContext = makeBackendTlsContext(config, error);
    if (!serving.settings.backend.tlsContext) {
      fmt::print(stderr, "smtpgate proxy: {}\n", error);
      return std::nullopt;
    }
  }
  if (!config.tlsCertificate.empty()) {
    serving.tls = makeServerTlsContext(config, error);
    if (!serving.tls) {
      fmt::print(stderr, "smtpgate proxy: {}\n", error);
      return std::nullopt;
    }
  }
  return serving;
}

int runProxy(const ProxyOptions& options) {
  keepMessageMemory();
  rules::Diagnostics diags;
  auto loaded = loadConfigAndRules(options.config, diags, {.enabled = true});
  printDiagnostics(diags);
  if (!loaded || !loaded->rules) {
    fmt::print(stderr, "smtpgate proxy: fix the errors above first (smtpgate lint)\n");
    return kExitConfig;
  }
  auto log = openDecisionLog(loaded->config, "smtpgate proxy");
  if (!log) {
    return kExitOsError;
  }
  // The watch signals SIGHUP only after a change has settled (300 ms), by
  // which time the server below handles it.
  auto watch = startFileWatch(*loaded, SIGHUP, "smtpgate proxy");
  // SIGHUP and the file watch: the whole config anew, certificates included
  // (a renewed certificate is live after a reload).
  auto reload = [reloadConfig = reloaderFor(options.config, watch.get())] {
    std::optional<LoadedConfig> fresh = reloadConfig();
    return fresh ? servingConfigFrom(*fresh) : std::nullopt;
  };
  std::optional<proxy::ServingConfig> serving = servingConfigFrom(*loaded);
  if (!serving) {
    return kExitConfig;
  }
  const unsigned threads = options.threads ? options.threads : serving->settings.threads;
  proxy::Server server(std::move(*serving), log.get(), reload, threads);  // the flag wins
  if (!server.bind()) {
    return kExitOsError;
  }
  notifyReady();  // listening: connections queue in the backlog from here on
  return server.run();
}

}  // namespace

void addProxyCommand(CLI::App& app, int& exitCode) {
  auto options = std::make_shared<ProxyOptions>();
  CLI::App* cmd = app.add_subcommand("proxy", "Run the SMTP proxy in front of the backend MTA");
  cmd->add_option("-c,--config", options->config, "Config file");
  cmd->add_option("--threads", options->threads, "I/O threads (default: one per core)");
  cmd->callback([options, &exitCode] { exitCode = runProxy(*options); });
}

}  // namespace smtpgate::cli
