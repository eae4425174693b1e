#include "rules/fields.h"

#include <algorithm>
#include <array>
#include <cctype>

#include "rules/ascii.h"

namespace smtpgate::rules {

namespace {

constexpr std::array<std::string_view, 7> kSpfWords = {"none",     "neutral",   "pass",     "fail",
                                                       "softfail", "temperror", "permerror"};
constexpr std::array<std::string_view, 6> kDkimWords = {"none",    "pass",      "fail",
                                                        "neutral", "temperror", "permerror"};
constexpr std::array<std::string_view, 5> kDmarcWords = {"none", "pass", "fail", "temperror",
                                                         "permerror"};
constexpr std::array<std::string_view, 3> kDmarcPolicyWords = {"none", "quarantine", "reject"};

using enum FieldId;
using enum FieldType;

const std::array kFields = {
    FieldInfo{ClientIp, "client.ip", Ip, Stage::Connect, false, {}, "the client's IP address"},
    FieldInfo{ClientPort, "client.port", Number, Stage::Connect, false, {}, "the client's port"},
    FieldInfo{ClientPtr,
              "client.ptr",
              Text,
              Stage::Connect,
              true,
              {},
              "the client's PTR name, empty if none"},
    FieldInfo{ClientFcrdns,
              "client.fcrdns",
              Bool,
              Stage::Connect,
              true,
              {},
              "the PTR name resolves back to the client's IP"},
    FieldInfo{LocalPort,
              "local.port",
              Number,
              Stage::Connect,
              false,
              {},
              "the port the client connected to"},
    FieldInfo{Pregreet,
              "pregreet",
              Bool,
              Stage::Connect,
              false,
              {},
              "the client spoke before the banner"},
    FieldInfo{Helo, "helo", Text, Stage::Helo, false, {}, "the HELO/EHLO argument"},
    FieldInfo{Tls, "tls", Bool, Stage::Helo, false, {}, "the session is under TLS"},
    FieldInfo{TlsVersion, "tls.version", Text, Stage::Helo, false, {}, "e.g. TLSv1.3"},
    FieldInfo{TlsCipher, "tls.cipher", Text, Stage::Helo, false, {}, "the TLS cipher suite"},
    FieldInfo{
        Sender, "sender", Text, Stage::Mail, false, {}, "the envelope sender, empty for bounces"},
    FieldInfo{SenderDomain,
              "sender.domain",
              Text,
              Stage::Mail,
              false,
              {},
              "the envelope sender's domain, lower case"},
    FieldInfo{MailSize,
              "mail.size",
              Number,
              Stage::Mail,
              false,
              {},
              "the SIZE= parameter of MAIL FROM, 0 if absent"},
    FieldInfo{Spf, "spf", AuthResult, Stage::Mail, true, kSpfWords, "the SPF result"},
    FieldInfo{
        SpfExplanation, "spf.explanation", Text, Stage::Mail, true, {}, "the SPF explanation"},
    FieldInfo{Rcpt,
              "rcpt",
              TextList,
              Stage::Rcpt,
              false,
              {},
              "the recipient (at rcpt); every accepted recipient (at data)"},
    FieldInfo{RcptDomain,
              "rcpt.domain",
              TextList,
              Stage::Rcpt,
              false,
              {},
              "the recipient's domain, lower case"},
    FieldInfo{RcptCount,
              "rcpt.count",
              Number,
              Stage::Rcpt,
              false,
              {},
              "recipients accepted so far, this one included"},
    FieldInfo{Header,
              "header",
              TextList,
              Stage::Data,
              false,
              {},
              "header.NAME: every header of that name, unfolded and RFC 2047-decoded"},
    FieldInfo{Body,
              "body",
              Text,
              Stage::Data,
              false,
              {},
              "the decoded text of the message's text parts, in UTF-8"},
    FieldInfo{RawBody, "rawbody", Text, Stage::Data, false, {}, "the message body as sent"},
    FieldInfo{Size, "size", Number, Stage::Data, false, {}, "the message size in bytes"},
    FieldInfo{Dkim, "dkim", AuthResult, Stage::Data, true, kDkimWords,
              "pass if any valid DKIM signature"},
    FieldInfo{DkimDomain,
              "dkim.domain",
              TextList,
              Stage::Data,
              true,
              {},
              "the d= of every valid signature"},
    FieldInfo{Dmarc, "dmarc", AuthResult, Stage::Data, true, kDmarcWords, "the DMARC result"},
    FieldInfo{DmarcPolicy, "dmarc.policy", AuthResult, Stage::Data, true, kDmarcPolicyWords,
              "the From domain's DMARC policy"},
    FieldInfo{Score, "score", Number, Stage::Data, false, {}, "the transaction's score so far"},
};

bool isHeaderNameChar(unsigned char c) {
  // RFC 5322 field-name: printable US-ASCII except ':'.
  return c > 32 && c < 127 && c != ':';
}

}  // namespace

std::string FieldRef::display() const {
  if (info == nullptr) {
    return "?";
  }
  return info->id == FieldId::Header ? "header." + headerName : std::string(info->name);
}

std::span<const FieldInfo> allFields() {
  return kFields;
}

const FieldInfo& fieldInfo(FieldId id) {
  return kFields[static_cast<std::size_t>(id)];
}

std::optional<FieldRef> lookupField(std::string_view name) {
  constexpr std::string_view kHeaderPrefix = "header.";
  if (name.size() > kHeaderPrefix.size() &&
      asciiLower(name.substr(0, kHeaderPrefix.size())) == kHeaderPrefix) {
    std::string_view header = name.substr(kHeaderPrefix.size());
    if (!std::all_of(header.begin(), header.end(),
                     [](char c) { return isHeaderNameChar(static_cast<unsigned char>(c)); })) {
      return std::nullopt;
    }
    return FieldRef{&fieldInfo(FieldId::Header), asciiLower(header)};
  }
  for (const auto& f : kFields) {
    if (f.id != FieldId::Header && f.name == name) {
      return FieldRef{&f, {}};
    }
  }
  return std::nullopt;
}

}  // namespace smtpgate::rules
