#pragma once
/// RecordedFacts — the `facts` key of a decision log line, written and read.
///
/// A decision line keeps the envelope in its own keys (client_ip, helo,
/// sender, rcpts, spf). The other facts the envelope stages can read go into
/// `facts`, one "field=value" item each, named as in the rule language, so
/// `smtpgate replay` can run other rules over a logged session without the
/// network, and an admin can grep them (`client.fcrdns=false`):
///
///   client.port=40312   local.port=25   pregreet=false
///   tls=true   tls.version=TLSv1.3   tls.cipher=TLS_AES_256_GCM_SHA384
///   mail.size=1234                        (once the session gave MAIL FROM)
///   client.ptr=mail.example.net          (empty value: the address has no PTR)
///   client.fcrdns=true
///   spf.explanation=...                   (the SPF result is the `spf` key)
///   dnsbl:5.113.0.203.zen.spamhaus.org=127.0.0.2,127.0.0.4   (empty: not listed)
///
/// The DNS facts appear only when a rule needed them and the lookup gave a
/// definite answer; a failed lookup is never written, so replay can tell
/// "not looked up" from an answer. An item is split at its first '=' (field
/// names and DNS query names never hold one); an item replay does not know
/// is ignored, so later versions may add items.
///
/// SECURITY: values (PTR names, the SPF explanation) come from the network.
/// Reading validates numbers and booleans (a bad one is left out, hence
/// unknown) and keeps strings as they are.

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "rules/fields.h"
#include "rules/value.h"

namespace smtpgate::policies {

struct RecordedFacts {
  std::map<rules::FieldId, rules::FactValue> values;
  /// DNSBL answers by query name, as DnsblList::AnswerLog keeps them.
  std::map<std::string, std::vector<std::string>, std::less<>> dnsbl;

  /// The recorded value of `id`, or null.
  [[nodiscard]] const rules::FactValue* find(rules::FieldId id) const;
  /// Adds the items of one line's `facts`; an item for a field already
  /// recorded replaces it.
  void addItems(const std::vector<std::string>& items);
  /// Adds a line's `spf` key (empty: SPF was not checked). A known SPF
  /// result with no `spf.explanation` item means an empty explanation.
  void addSpf(std::string_view spf);
};

/// True for the fields a decision line keeps in `facts` (and `spf`):
/// replay takes them from the record, not from the envelope keys.
bool isRecordedField(rules::FieldId id);

/// "name=value" for a boolean, number (whole numbers without exponent) or text fact.
std::string factItem(std::string_view name, const rules::FactValue& value);

/// "dnsbl:QUERYNAME=a,b" for the answers of one DNSBL query.
std::string dnsblItem(std::string_view queryName, const std::vector<std::string>& answers);

}  // namespace smtpgate::policies
