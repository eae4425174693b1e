#pragma once
/// Loading the config and rules the way every subcommand does: `-c PATH`,
/// else /etc/smtpgate/smtpgate.toml if present, else the embedded default.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "policies/config.h"
#include "policies/decision_log.h"
#include "policies/dns_resolver.h"
#include "policies/file_watch.h"
#include "policies/policy.h"
#include "rules/diagnostic.h"
#include "rules/rule_set.h"

namespace smtpgate::cli {

struct LoadedConfig {
  policies::Config config;
  rules::RuleSetPtr rules;  ///< nullptr if the rules have errors
  /// The process's one resolver (DNS facts, DNSBL lists); null without DNS.
  policies::DnsResolverPtr resolver;
};

/// How a subcommand wants DNS: off (lint), or on with [dns] servers, which
/// `serversOverride` replaces when not empty (`check --dns`).
struct DnsChoice {
  bool enabled = false;
  std::vector<std::string> serversOverride = {};
};

/// Config errors and rule errors all land in `diags`; the result is nullopt
/// only when the config itself could not be loaded. With DNS enabled the
/// resolver is made first, so DNSBL lists look up through it; a resolver that
/// cannot be made is an error in `diags` and leaves `rules` null.
std::optional<LoadedConfig> loadConfigAndRules(const std::string& configPath,
                                               rules::Diagnostics& diags, DnsChoice dns = {});

/// The PolicyOptions every frontend starts from: dry-run, DNS failure mode,
/// hostname and the resolver of `loaded`.
policies::PolicyOptions policyOptionsFor(const LoadedConfig& loaded, std::string frontend);

/// What SIGHUP (proxy) and SIGUSR2 (milter) run: config and rules loaded anew
/// from `configPath`, with DNS, diagnostics printed; nullopt when they have
/// errors (the caller keeps what is in force). With a `watch`, it is pointed
/// at the files of what was just loaded (or of the diagnostics, so a fix to
/// a broken file is seen too).
std::function<std::optional<LoadedConfig>()> reloaderFor(std::string configPath,
                                                         policies::FileWatch* watch = nullptr);

/// With `[rules] watch` on, a file watch on the config, rule and list files
/// of `loaded` that sends this process `reloadSignal` when they change, so a
/// saved file and a signal reload the same way; nullptr when off, or when
/// inotify fails (said on stderr: reload by signal still works).
std::unique_ptr<policies::FileWatch> startFileWatch(const LoadedConfig& loaded, int reloadSignal,
                                                    std::string_view command);

/// The decision log of `config`, opened for appending; nullptr after telling
/// stderr why (`command` names who asks, e.g. "smtpgate proxy").
std::unique_ptr<policies::DecisionLog> openDecisionLog(const policies::Config& config,
                                                       std::string_view command);

/// Prints diagnostics to stderr, with colour-free carets.
void printDiagnostics(const rules::Diagnostics& diags);

}  // namespace smtpgate::cli
