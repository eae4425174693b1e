#include "cli/loaded_config.h"

#include <fmt/core.h>

#include <cstdio>

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

std::function<rules::RuleSetPtr()> reloaderFor(std::string configPath) {
  return [configPath = std::move(configPath)]() -> rules::RuleSetPtr {
    rules::Diagnostics diags;
    auto fresh = loadConfigAndRules(configPath, diags, {.enabled = true});
    printDiagnostics(diags);
    return fresh ? fresh->rules : nullptr;
  };
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
