#include "policies/dnsbl_list.h"

#include <algorithm>
#include <variant>

#include "policies/domain_list.h"

namespace smtpgate::policies {

namespace {

constexpr char kHexDigits[] = "0123456789abcdef";
constexpr std::uint32_t kMaxOctet = 255;

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

/// A dotted-quad IPv4 address in host order; nothing else (no brackets, no IPv6).
std::optional<std::uint32_t> parseDottedQuad(std::string_view text) {
  const bool plain =
      std::all_of(text.begin(), text.end(), [](char c) { return isDigit(c) || c == '.'; });
  if (!plain) {
    return std::nullopt;
  }
  const auto addr = rules::IpAddress::parse(text);
  if (!addr || !addr->isV4()) {
    return std::nullopt;
  }
  const auto& b = addr->bytes();
  return (std::uint32_t{b[12]} << 24) | (std::uint32_t{b[13]} << 16) | (std::uint32_t{b[14]} << 8) |
         std::uint32_t{b[15]};
}

/// 1-3 digits, 0-255.
std::optional<std::uint32_t> parseOctet(std::string_view text) {
  if (text.empty() || text.size() > 3 || !std::all_of(text.begin(), text.end(), isDigit)) {
    return std::nullopt;
  }
  std::uint32_t n = 0;
  for (char c : text) {
    n = n * 10 + static_cast<std::uint32_t>(c - '0');
  }
  return n <= kMaxOctet ? std::optional<std::uint32_t>{n} : std::nullopt;
}

bool isAddress(const rules::FactValue& value) {
  if (std::holds_alternative<rules::IpAddress>(value)) {
    return true;
  }
  if (const auto* texts = std::get_if<rules::Strings>(&value)) {
    return std::any_of(texts->begin(), texts->end(),
                       [](const std::string& t) { return rules::IpAddress::parse(t).has_value(); });
  }
  return false;
}

thread_local std::uint64_t tLookupFailures = 0;
thread_local DnsblList::AnswerLog* tAnswerLog = nullptr;

}  // namespace

std::uint64_t DnsblList::lookupFailuresOnThisThread() {
  return tLookupFailures;
}

DnsblList::AnswerLog* DnsblList::useAnswerLogOnThisThread(AnswerLog* log) {
  AnswerLog* previous = tAnswerLog;
  tAnswerLog = log;
  return previous;
}

std::shared_ptr<const DnsblList> DnsblList::build(const std::vector<rules::ListEntry>& entries,
                                                  rules::Diagnostics& diags,
                                                  std::shared_ptr<DnsResolver> resolver) {
  auto list = std::make_shared<DnsblList>();
  list->resolver_ = std::move(resolver);
  for (const auto& entry : entries) {
    list->add(entry, diags);
  }
  return list;
}

bool DnsblList::add(const rules::ListEntry& entry, rules::Diagnostics& diags) {
  const std::string problem = DomainList::nameProblem(entry.text);
  if (!problem.empty()) {
    diags.error(entry.where,
                "bad DNSBL zone " + rules::describe(rules::FactValue{entry.text}) + ": " + problem,
                entry.sourceLine);
    return false;
  }
  std::string zone = DomainList::canonicalName(entry.text);
  if (!zone_.empty() && zone != zone_) {
    diags.error(entry.where,
                "a dnsbl list holds one zone; " + zone_ + " is already set, so " + zone +
                    " is ignored (declare another list for it)",
                entry.sourceLine);
    return false;
  }
  zone_ = std::move(zone);
  return true;
}

rules::Tri DnsblList::contains(const rules::FactValue& value, std::string_view qualifier) const {
  if (std::holds_alternative<rules::Unavailable>(value)) {
    return rules::Tri::Unknown;
  }
  if (!isAddress(value)) {
    return rules::Tri::False;
  }
  if (const auto* addr = std::get_if<rules::IpAddress>(&value)) {
    return lookup(*addr, qualifier);
  }
  rules::Tri result = rules::Tri::False;
  for (const auto& text : std::get<rules::Strings>(value)) {
    if (auto addr = rules::IpAddress::parse(text)) {
      result = rules::triOr(result, lookup(*addr, qualifier));
    }
  }
  return result;
}

std::optional<std::vector<rules::IpAddress>> DnsblList::answerFor(const std::string& name) const {
  AnswerLog* log = tAnswerLog;
  if (log != nullptr && log->replay) {
    const auto it = log->answers.find(name);
    if (it == log->answers.end()) {
      log->missing.push_back(name);
      return std::nullopt;
    }
    std::vector<rules::IpAddress> codes;
    for (const std::string& text : it->second) {
      if (auto code = rules::IpAddress::parse(text)) {
        codes.push_back(*code);
      }
    }
    return codes;
  }
  if (!resolver_) {
    return std::nullopt;
  }
  const DnsAnswer answer = resolver_->query(name, DnsType::A);
  if (answer.tempFailed()) {
    ++tLookupFailures;
    return std::nullopt;
  }
  std::vector<rules::IpAddress> codes;
  for (const auto& rdata : answer.rdata) {
    if (auto code = parseAddressRdata(rdata)) {
      codes.push_back(*code);
    }
  }
  if (log != nullptr && (log->answers.size() < kMaxLoggedAnswers || log->answers.count(name))) {
    std::vector<std::string>& texts = log->answers[name];
    texts.clear();
    for (const auto& code : codes) {
      texts.push_back(code.toString());
    }
  }
  return codes;
}

rules::Tri DnsblList::lookup(const rules::IpAddress& addr, std::string_view qualifier) const {
  if (zone_.empty()) {
    return rules::Tri::Unknown;
  }
  const auto codes = answerFor(queryName(addr, zone_));
  if (!codes) {
    return rules::Tri::Unknown;
  }
  const auto range = parseQualifier(qualifier);
  bool errorCode = false;
  for (const auto& code : *codes) {
    if (!code.isV4()) {
      continue;
    }
    const auto& b = code.bytes();
    const std::uint32_t v = (std::uint32_t{b[12]} << 24) | (std::uint32_t{b[13]} << 16) |
                            (std::uint32_t{b[14]} << 8) | std::uint32_t{b[15]};
    if (range) {
      if (v >= range->first && v <= range->last) {
        return rules::Tri::True;
      }
    } else if ((v >> 8) == 0x7FFFFFU) {
      errorCode = true;  // 127.255.255.x: the list refused or failed to answer
    } else if ((v >> 24) == 127U) {
      return rules::Tri::True;
    }
  }
  if (errorCode) {
    ++tLookupFailures;
    return rules::Tri::Unknown;
  }
  return rules::Tri::False;
}

std::optional<DnsblList::AnswerRange> DnsblList::parseQualifier(std::string_view qualifier) {
  const auto dash = qualifier.find('-');
  const auto first = parseDottedQuad(qualifier.substr(0, dash));
  if (!first) {
    return std::nullopt;
  }
  if (dash == std::string_view::npos) {
    return AnswerRange{*first, *first};
  }
  const auto lastOctet = parseOctet(qualifier.substr(dash + 1));
  if (!lastOctet || *lastOctet < (*first & kMaxOctet)) {
    return std::nullopt;
  }
  return AnswerRange{*first, (*first & ~kMaxOctet) | *lastOctet};
}

std::string DnsblList::queryName(const rules::IpAddress& addr, std::string_view zone) {
  const auto& b = addr.bytes();
  std::string name;
  if (addr.isV4()) {
    for (int i = 15; i >= 12; --i) {
      name += std::to_string(b[i]);
      name += '.';
    }
  } else {
    name.reserve(64 + zone.size());
    for (int i = 15; i >= 0; --i) {
      name += kHexDigits[b[i] & 0xFU];
      name += '.';
      name += kHexDigits[b[i] >> 4];
      name += '.';
    }
  }
  name += zone;
  return name;
}

}  // namespace smtpgate::policies
