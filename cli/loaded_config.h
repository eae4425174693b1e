#pragma once
/// Loading the config and rules the way every subcommand does: `-c PATH`,
/// else /etc/smtpgate/smtpgate.toml if present, else the embedded default.

#include <optional>
#include <string>

#include "policies/config.h"
#include "rules/diagnostic.h"
#include "rules/rule_set.h"

namespace smtpgate::cli {

struct LoadedConfig {
  policies::Config config;
  rules::RuleSetPtr rules;  ///< nullptr if the rules have errors
};

/// Config errors and rule errors all land in `diags`; the result is nullopt
/// only when the config itself could not be loaded.
std::optional<LoadedConfig> loadConfigAndRules(const std::string& configPath,
                                               rules::Diagnostics& diags);

/// Prints diagnostics to stderr, with colour-free carets.
void printDiagnostics(const rules::Diagnostics& diags);

}  // namespace smtpgate::cli
