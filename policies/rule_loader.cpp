#include "policies/rule_loader.h"

#include "policies/list_builder.h"

namespace smtpgate::policies {

rules::RuleSetPtr loadRuleSet(const Config& config, rules::Diagnostics& diags,
                              std::shared_ptr<DnsResolver> resolver) {
  std::vector<std::string> files = expandRuleFiles(config, diags);
  if (config.rules.files.empty()) {
    diags.warning({config.source, 0, 0},
                  "no rule files configured ([rules] files): every message is accepted");
  }
  StandardListBuilder lists(std::move(resolver));
  auto set = rules::RuleSet::load(files, lists, diags);
  return diags.hasErrors() ? nullptr : set;
}

}  // namespace smtpgate::policies
