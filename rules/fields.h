#pragma once
/// Fields — the facts rules can read, their types, and the stage where each
/// becomes known (DESIGN.md's field table, declared once).
///
/// A later stage sees every earlier stage's fields. `header.NAME` is a family:
/// any header name after `header.` (case-insensitive), known at data.

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "rules/stage.h"

namespace smtpgate::rules {

enum class FieldType {
  Ip,          ///< client.ip
  Number,      ///< ports, sizes, counts, score
  Bool,        ///< client.fcrdns, pregreet, tls
  Text,        ///< a string; a missing value is the empty string
  TextList,    ///< several strings (headers of one name, all recipients); tests are "any"
  AuthResult,  ///< spf/dkim/dmarc: one of a fixed set of words
};

enum class FieldId {
  ClientIp,
  ClientPort,
  ClientPtr,
  ClientFcrdns,
  LocalPort,
  Pregreet,
  Helo,
  Tls,
  TlsVersion,
  TlsCipher,
  Sender,
  SenderDomain,
  MailSize,
  Spf,
  SpfExplanation,
  Rcpt,
  RcptDomain,
  RcptCount,
  Header,  ///< header.NAME
  Body,
  RawBody,
  Size,
  Dkim,
  DkimDomain,
  Dmarc,
  DmarcPolicy,
  Score,
};

struct FieldInfo {
  FieldId id;
  std::string_view name;  ///< as written in rules; "header" for the header.NAME family
  FieldType type;
  Stage knownAt;
  bool needsDns;                            ///< shown "unavailable" until a resolver provides it
  std::span<const std::string_view> words;  ///< AuthResult: the values `==` may compare with
  std::string_view help;                    ///< one line for docs and `check`
};

/// A field as named in a rule: the table entry plus, for header.NAME, the
/// header name in lower case.
struct FieldRef {
  const FieldInfo* info = nullptr;
  std::string headerName;  ///< lower case; only for FieldId::Header
  [[nodiscard]] std::string display() const;
  friend bool operator==(const FieldRef& a, const FieldRef& b) {
    return a.info == b.info && a.headerName == b.headerName;
  }
};

std::span<const FieldInfo> allFields();
const FieldInfo& fieldInfo(FieldId id);
/// Looks a field up by its rule-file name; `header.X-Foo` yields the header family.
std::optional<FieldRef> lookupField(std::string_view name);

}  // namespace smtpgate::rules
