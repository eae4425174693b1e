#include "cli/loaded_config.h"

#include <fmt/core.h>

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <set>
#include <system_error>

#include "policies/metrics.h"
#include "policies/rule_loader.h"

namespace smtpgate::cli {

std::optional<LoadedConfig> loadConfigAndRules(const std::string& configPath,
                                               rules::Diagnostics& diags, DnsChoice dns) {
  std::optional<policies::Config> config = configPath.empty()
                                               ? policies::loadDefaultConfig(diags)
                                               : policies::loadConfig(configPath, diags);
  if (!config) {
    return std::nullopt;
  }
  LoadedConfig loaded{std::move(*config), nullptr, nullptr};
  if (dns.enabled) {
    policies::DnsResolverOptions options{
        dns.serversOverride.empty() ? loaded.config.dns.servers : dns.serversOverride,
        loaded.config.dns.timeout};
    options.observeLatency = [](std::chrono::duration<double> latency) {
      policies::processMetrics().observeDns(latency);
    };
    std::string error;
    loaded.resolver = policies::DnsResolver::create(options, error);
    if (!loaded.resolver) {
      diags.error({configPath.empty() ? "<default config>" : configPath, 0, 0},
                  "DNS resolver: " + error);
      return loaded;
    }
  }
  loaded.rules = policies::loadRuleSet(loaded.config, diags, loaded.resolver);
  return loaded;
}

policies::PolicyOptions policyOptionsFor(const LoadedConfig& loaded, std::string frontend) {
  policies::PolicyOptions options;
  options.dryRun = loaded.config.rules.mode == policies::RulesMode::DryRun;
  options.frontend = std::move(frontend);
  options.resolver = loaded.resolver;
  options.dnsFailure = loaded.config.failure.dns;
  options.hostname = loaded.config.proxy.hostname;
  policies::applyAuthConfig(loaded.config, options);  // [auth] authserv_id, [dkim]
  return options;
}

namespace {

/// Points `watch` at the config file, the files the rules were read from,
/// the proxy's TLS files and the `rules.files` globs (a new matching file is
/// a change); after a failed load, also at every file a diagnostic names.
void watchFilesOf(policies::FileWatch& watch, const LoadedConfig* loaded,
                  const std::string& configPath, const rules::Diagnostics& diags) {
  std::set<std::string> files;
  std::vector<std::string> patterns;
  if (!configPath.empty()) {
    files.insert(std::filesystem::absolute(configPath).string());
  }
  if (loaded != nullptr) {
    if (loaded->config.source != policies::kEmbeddedConfigName) {
      files.insert(std::filesystem::absolute(loaded->config.source).string());
    }
    if (loaded->rules) {
      files.insert(loaded->rules->sources().begin(), loaded->rules->sources().end());
    }
    // The proxy reads its certificates on reload too: a renewed one (certbot
    // swaps the files or their symlinks) is live without a signal.
    const policies::ProxyConfig& proxy = loaded->config.proxy;
    for (const std::string& tlsFile :
         {proxy.tlsCertificate, proxy.tlsKey, proxy.backendTlsCaFile}) {
      if (!tlsFile.empty()) {
        files.insert(std::filesystem::absolute(tlsFile).string());
      }
    }
    patterns = loaded->config.rules.files;
  }
  for (const auto& d : diags.items()) {
    if (!d.where.file.empty() && d.where.file.front() == '/') {
      files.insert(d.where.file);
    }
  }
  watch.watch({files.begin(), files.end()}, patterns);
}

}  // namespace

std::function<std::optional<LoadedConfig>()> reloaderFor(std::string configPath,
                                                         policies::FileWatch* watch) {
  return [configPath = std::move(configPath), watch]() -> std::optional<LoadedConfig> {
    rules::Diagnostics diags;
    auto fresh = loadConfigAndRules(configPath, diags, {.enabled = true});
    printDiagnostics(diags);
    if (watch != nullptr) {
      watchFilesOf(*watch, fresh ? &*fresh : nullptr, configPath, diags);
    }
    if (!fresh || !fresh->rules) {
      return std::nullopt;
    }
    return fresh;
  };
}

std::unique_ptr<policies::FileWatch> startFileWatch(const LoadedConfig& loaded, int reloadSignal,
                                                    std::string_view command) {
  if (!loaded.config.rules.watch) {
    return nullptr;
  }
  try {
    auto watch =
        std::make_unique<policies::FileWatch>([reloadSignal] { ::kill(::getpid(), reloadSignal); });
    watchFilesOf(*watch, &loaded, {}, {});
    return watch;
  } catch (const std::system_error& e) {
    fmt::print(stderr, "{}: no file watch ({}); reload with a signal\n", command, e.what());
    return nullptr;
  }
}

std::unique_ptr<policies::DecisionLog> openDecisionLog(const policies::Config& config,
                                                       std::string_view command) {
  std::string error;
  auto log = policies::DecisionLog::open(config.log.decisions, error);
  if (!log) {
    fmt::print(stderr, "{}: cannot open decision log {}: {}\n", command, config.log.decisions,
               error);
  }
  return log;
}

void printDiagnostics(const rules::Diagnostics& diags) {
  std::string text = rules::format(diags);
  std::fwrite(text.data(), 1, text.size(), stderr);
}

}  // namespace smtpgate::cli
