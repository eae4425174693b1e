#pragma once
/// StandardListBuilder — the ListBuilder rules/ uses to turn a `list NAME
/// KIND ...` declaration into a List: CidrList, DomainList, StringList or
/// DnsblList by kind. Regex lists are compiled by rules/ itself (into the
/// field's RE2::Set), so for ListKind::Regex `build` returns nullptr.
///
/// Each entry is validated by its list class, which reports a bad one into
/// the Diagnostics at the entry's own file:line:col and leaves it out; the
/// list is built from the rest. Duplicate entries are accepted silently. A
/// list left with no valid entries is still returned (it matches nothing),
/// with the warning "list NAME is empty" on the file of its first entry; a
/// declaration with no entries at all has no file to point at here, so that
/// case is left to rules/, which knows where the list was declared.
///
/// Ownership and threads: the builder holds only the (thread-safe) resolver,
/// so one instance may be used from any thread. The lists it returns are immutable
/// (`std::shared_ptr<const List>`) and safe to share between threads.
///
/// Limits: those of each list class (see their headers).
///
/// SECURITY: entries come from admin-edited files and are validated by the
/// list classes; the builder only dispatches and counts. Nothing is thrown
/// for bad input.

#include <string_view>
#include <vector>

#include "policies/dns_resolver.h"
#include "rules/diagnostic.h"
#include "rules/list.h"

namespace smtpgate::policies {

class StandardListBuilder : public rules::ListBuilder {
 public:
  StandardListBuilder() = default;
  /// DNSBL lists built by this builder look up through `resolver`.
  explicit StandardListBuilder(std::shared_ptr<DnsResolver> resolver)
      : resolver_(std::move(resolver)) {}

  rules::ListPtr build(rules::ListKind kind, std::string_view name,
                       const std::vector<rules::ListEntry>& entries,
                       rules::Diagnostics& diags) override;

 private:
  std::shared_ptr<DnsResolver> resolver_;
};

}  // namespace smtpgate::policies
