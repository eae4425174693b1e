#include "cli/lint_command.h"

#include <fmt/core.h>

#include "cli/exit_codes.h"
#include "cli/loaded_config.h"
#include "cli/tls_contexts.h"
#include "policies/list_builder.h"
#include "rules/strict_lint.h"

namespace smtpgate::cli {

namespace {

struct LintOptions {
  std::string config;
  std::vector<std::string> ruleFiles;
  bool strict = false;
};

std::string stageCounts(const rules::RuleSet& set) {
  std::string out;
  for (rules::Stage s : rules::kAllStages) {
    out += fmt::format("{}{} {}", out.empty() ? "" : ", ", set.ruleCount(s), rules::toString(s));
  }
  return out;
}

/// --strict: loads the same files again through a ListRecorder (the normal
/// load keeps no list entries) and adds the strict warnings to `diags`.
void addStrictWarnings(const std::vector<std::string>& files, rules::Diagnostics& diags) {
  policies::StandardListBuilder standard;
  rules::ListRecorder recorder(standard);
  rules::Diagnostics again;  // the first load already reported these
  auto set = rules::RuleSet::load(files, recorder, again);
  if (set) {
    rules::checkStrict(*set, recorder, diags);
  }
}

/// The certificate, key and CA files of `[proxy]`, loaded as `smtpgate
/// proxy` loads them at start and on reload, so a reload never meets a
/// file lint passed but OpenSSL refuses.
void checkTlsFiles(const policies::Config& config, rules::Diagnostics& diags) {
  const policies::ProxyConfig& proxy = config.proxy;
  std::string error;
  if (!proxy.tlsCertificate.empty() && !makeServerTlsContext(proxy, error)) {
    diags.error({config.source, 0, 0}, error);
  }
  if (proxy.backendTls != policies::BackendTlsLevel::None && !makeBackendTlsContext(proxy, error)) {
    diags.error({config.source, 0, 0}, error);
  }
}

int runLint(const LintOptions& options) {
  rules::Diagnostics diags;
  rules::RuleSetPtr set;
  std::string subject;
  std::vector<std::string> files = options.ruleFiles;
  if (!options.ruleFiles.empty()) {
    // Lint rule files directly, without a config (handy in an editor or a hook).
    policies::StandardListBuilder lists;
    set = rules::RuleSet::load(options.ruleFiles, lists, diags);
    subject = fmt::format("{} rule file(s)", options.ruleFiles.size());
  } else {
    auto loaded = loadConfigAndRules(options.config, diags);
    subject = loaded ? loaded->config.source : options.config;
    set = loaded ? loaded->rules : nullptr;
    if (loaded) {
      checkTlsFiles(loaded->config, diags);
    }
    if (loaded && set && options.strict) {
      rules::Diagnostics scratch;
      files = policies::expandRuleFiles(loaded->config, scratch);
    }
  }
  if (set && options.strict) {
    addStrictWarnings(files, diags);
  }
  printDiagnostics(diags);
  std::size_t warnings = diags.items().size() - diags.errorCount();
  if (diags.hasErrors() || !set) {
    fmt::print(stderr, "lint: {}: {} error(s), {} warning(s)\n", subject, diags.errorCount(),
               warnings);
    return kExitReject;
  }
  if (options.strict && warnings > 0) {
    // --strict is lint's -Werror: the rules load, but the lint fails.
    fmt::print(stderr, "lint: {}: {} warning(s) (--strict: warnings fail the lint)\n", subject,
               warnings);
    return kExitReject;
  }
  fmt::print("lint: {}: OK, {} rules ({}), {} thresholds, {} files, ruleset {}{}{}\n", subject,
             set->rules().size(), stageCounts(*set), set->thresholds().size(), set->files().size(),
             set->hash(), warnings ? fmt::format(", {} warning(s)", warnings) : "",
             options.strict ? ", strict checks passed" : "");
  return kExitAccept;
}

}  // namespace

void addLintCommand(CLI::App& app, int& exitCode) {
  auto options = std::make_shared<LintOptions>();
  CLI::App* cmd = app.add_subcommand("lint", "Check the config, rule files and list files");
  cmd->add_option("-c,--config", options->config,
                  "Config file (default: /etc/smtpgate/smtpgate.toml, else the embedded default)");
  cmd->add_option("rules", options->ruleFiles,
                  "Rule files to lint instead of the config's [rules] files");
  cmd->add_flag("--strict", options->strict,
                "Also warn about shadowed rules, unanchored envelope regexes, oversized regexes "
                "and list entries that change nothing or never match; any warning exits 1");
  cmd->callback([options, &exitCode] { exitCode = runLint(*options); });
}

}  // namespace smtpgate::cli
