#include "cli/proxy_command.h"

#include <fmt/core.h>

#include "cli/daemon_memory.h"
#include "cli/exit_codes.h"
#include "cli/loaded_config.h"
#include "cli/systemd_notify.h"
#include "proxy/server.h"

#include <boost/asio/ssl/context.hpp>
#include <csignal>

namespace smtpgate::cli {

namespace {

struct ProxyOptions {
  std::string config;
  unsigned threads = 0;
};

/// The STARTTLS context: TLS 1.2 and later only, the certificate chain and
/// key from the config. nullptr with a message on failure.
std::shared_ptr<boost::asio::ssl::context> makeTlsContext(const policies::ProxyConfig& proxy) {
  namespace ssl = boost::asio::ssl;
  auto tls = std::make_shared<ssl::context>(ssl::context::tls_server);
  boost::system::error_code ec;
  tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                       ssl::context::single_dh_use,
                   ec);
  if (!ec) {
    tls->use_certificate_chain_file(proxy.tlsCertificate, ec);
  }
  if (!ec) {
    tls->use_private_key_file(proxy.tlsKey, ssl::context::pem, ec);
  }
  if (ec) {
    fmt::print(stderr, "smtpgate proxy: TLS certificate {} / key {}: {}\n", proxy.tlsCertificate,
               proxy.tlsKey, ec.message());
    return nullptr;
  }
  return tls;
}

/// The client context for STARTTLS to the backend: TLS 1.2 and later; for
/// "verify" the configured CAs, or the system's. nullptr with a message on
/// failure.
std::shared_ptr<boost::asio::ssl::context> makeBackendTlsContext(
    const policies::ProxyConfig& proxy) {
  namespace ssl = boost::asio::ssl;
  auto tls = std::make_shared<ssl::context>(ssl::context::tls_client);
  boost::system::error_code ec;
  tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                   ec);
  if (!ec && proxy.backendTls == policies::BackendTlsLevel::Verify) {
    if (proxy.backendTlsCaFile.empty()) {
      tls->set_default_verify_paths(ec);
    } else {
      tls->load_verify_file(proxy.backendTlsCaFile, ec);
    }
  }
  if (ec) {
    fmt::print(stderr, "smtpgate proxy: backend TLS: {}{}\n",
               proxy.backendTlsCaFile.empty() ? "" : proxy.backendTlsCaFile + ": ", ec.message());
    return nullptr;
  }
  return tls;
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
  auto reload = reloaderFor(options.config, watch.get());
  auto settings = proxy::settingsFrom(loaded->config);
  settings.policy.resolver = loaded->resolver;
  if (settings.backend.tls != proxy::BackendTls::None) {
    settings.backend.tlsContext = makeBackendTlsContext(loaded->config.proxy);
    if (!settings.backend.tlsContext) {
      return kExitConfig;
    }
  }
  const unsigned threads = options.threads ? options.threads : settings.threads;  // flag wins
  proxy::Server server(std::move(settings), loaded->rules, log.get(), reload, threads);
  if (!loaded->config.proxy.tlsCertificate.empty()) {
    auto tls = makeTlsContext(loaded->config.proxy);
    if (!tls) {
      return kExitConfig;
    }
    server.setTls(std::move(tls));
  }
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
