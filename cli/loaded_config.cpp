#include "cli/loaded_config.h"

#include <cstdio>

#include "policies/rule_loader.h"

namespace smtpgate::cli {

std::optional<LoadedConfig> loadConfigAndRules(const std::string& configPath,
                                               rules::Diagnostics& diags) {
  std::optional<policies::Config> config = configPath.empty()
                                               ? policies::loadDefaultConfig(diags)
                                               : policies::loadConfig(configPath, diags);
  if (!config) {
    return std::nullopt;
  }
  LoadedConfig loaded{std::move(*config), nullptr};
  loaded.rules = policies::loadRuleSet(loaded.config, diags);
  return loaded;
}

void printDiagnostics(const rules::Diagnostics& diags) {
  std::string text = rules::format(diags);
  std::fwrite(text.data(), 1, text.size(), stderr);
}

}  // namespace smtpgate::cli
