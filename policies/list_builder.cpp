#include "policies/list_builder.h"

#include <string>

#include "policies/cidr_list.h"
#include "policies/dnsbl_list.h"
#include "policies/domain_list.h"
#include "policies/string_list.h"

namespace smtpgate::policies {

namespace {

rules::ListPtr buildOfKind(rules::ListKind kind, const std::vector<rules::ListEntry>& entries,
                           rules::Diagnostics& diags,
                           const std::shared_ptr<DnsResolver>& resolver) {
  switch (kind) {
    case rules::ListKind::Cidr:
      return CidrList::build(entries, diags);
    case rules::ListKind::Domain:
      return DomainList::build(entries, diags);
    case rules::ListKind::String:
      return StringList::build(entries, diags);
    case rules::ListKind::Dnsbl:
      return DnsblList::build(entries, diags, resolver);
    case rules::ListKind::Regex:
      return nullptr;  // rules/ compiles regex lists into its RE2::Set
  }
  return nullptr;
}

}  // namespace

rules::ListPtr StandardListBuilder::build(rules::ListKind kind, std::string_view name,
                                          const std::vector<rules::ListEntry>& entries,
                                          rules::Diagnostics& diags) {
  rules::ListPtr list = buildOfKind(kind, entries, diags, resolver_);
  if (list && list->size() == 0 && !entries.empty()) {
    // Every entry was bad: point at the file as a whole (line 0), since no
    // single line is "the" empty list.
    rules::SourceLocation where{entries.front().where.file, 0, 0};
    diags.warning(std::move(where), "list " + std::string(name) + " is empty");
  }
  return list;
}

}  // namespace smtpgate::policies
