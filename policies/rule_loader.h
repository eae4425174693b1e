#pragma once
/// Rule loading — from a Config to a compiled, shared RuleSet.
///
/// Expands `[rules] files`, reads every rule and list file with the standard
/// list types (CIDR trie, domain suffixes, strings, DNSBL zones), and reports
/// every problem as a Diagnostic. Used by `lint`, `check`, and (later) the
/// proxy and milter at start-up and on reload; a set with errors is never
/// returned, so a broken edit can't replace working rules.

#include "policies/config.h"
#include "policies/dns_resolver.h"
#include "rules/diagnostic.h"
#include "rules/rule_set.h"

namespace smtpgate::policies {

/// nullptr if any error was reported into `diags`. DNSBL lists look up
/// through `resolver`; without one they answer unknown (lint).
rules::RuleSetPtr loadRuleSet(const Config& config, rules::Diagnostics& diags,
                              std::shared_ptr<DnsResolver> resolver = nullptr);

}  // namespace smtpgate::policies
