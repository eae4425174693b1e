#include "policies/domain_list.h"

#include <variant>

namespace smtpgate::policies {

namespace {

constexpr std::string_view kRedundantWildcard = "*.";

char asciiLower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool nameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

std::string lowered(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    c = asciiLower(c);
  }
  return out;
}

std::string_view withoutTrailingDot(std::string_view name) {
  if (!name.empty() && name.back() == '.') {
    name.remove_suffix(1);
  }
  return name;
}

std::string badCharProblem(char c) {
  if (c == '@') {
    return "'@' is not part of a domain name: list domains (example.com), and use a string "
           "list for whole addresses";
  }
  if (c == '*') {
    return "'*' is only allowed as a leading '*.'";
  }
  return "invalid character " + rules::describe(rules::FactValue{std::string(1, c)}) +
         " (allowed: letters, digits, '-', '_' and '.')";
}

}  // namespace

std::string DomainList::nameProblem(std::string_view name) {
  name = withoutTrailingDot(name);
  if (name.empty()) {
    return "empty domain name";
  }
  if (name.size() > kMaxNameLength) {
    return "domain name is longer than " + std::to_string(kMaxNameLength) + " characters";
  }
  std::size_t labelLength = 0;
  for (char c : name) {
    if (c == '.') {
      if (labelLength == 0) {
        return "empty label (a leading dot or two dots in a row)";
      }
      labelLength = 0;
      continue;
    }
    if (!nameChar(c)) {
      return badCharProblem(c);
    }
    if (++labelLength > kMaxLabelLength) {
      return "label longer than " + std::to_string(kMaxLabelLength) + " characters";
    }
  }
  return {};
}

std::string DomainList::canonicalName(std::string_view name) {
  return lowered(withoutTrailingDot(name));
}

std::shared_ptr<const DomainList> DomainList::build(const std::vector<rules::ListEntry>& entries,
                                                    rules::Diagnostics& diags) {
  auto list = std::make_shared<DomainList>();
  for (const auto& entry : entries) {
    list->add(entry, diags);
  }
  return list;
}

bool DomainList::add(const rules::ListEntry& entry, rules::Diagnostics& diags) {
  std::string_view name = entry.text;
  const bool wildcard = name.starts_with(kRedundantWildcard);
  if (wildcard) {
    name.remove_prefix(kRedundantWildcard.size());
  }
  const std::string problem = nameProblem(name);
  if (!problem.empty()) {
    diags.error(entry.where,
                "bad domain " + rules::describe(rules::FactValue{entry.text}) + ": " + problem,
                entry.sourceLine);
    return false;
  }
  if (wildcard) {
    diags.warning(entry.where,
                  "'*.' is redundant: " + std::string(name) +
                      " already matches all its subdomains; write it without '*.'",
                  entry.sourceLine);
  }
  names_.insert(canonicalName(name));
  return true;
}

bool DomainList::matches(std::string_view value) const {
  if (const auto at = value.rfind('@'); at != std::string_view::npos) {
    value.remove_prefix(at + 1);
  }
  value = withoutTrailingDot(value);
  // Only the last kMaxNameLength bytes can hold a matching suffix; if the
  // value is longer, start at the first label boundary inside that window.
  std::size_t skip = 0;
  if (value.size() > kMaxNameLength) {
    skip = value.size() - kMaxNameLength;
    if (value[skip - 1] != '.') {
      const auto dot = value.find('.', skip);
      if (dot == std::string_view::npos) {
        return false;
      }
      skip = dot + 1;
    }
  }
  const std::string name = lowered(value.substr(skip));
  std::string_view suffix = name;
  for (;;) {
    if (!suffix.empty() && names_.find(suffix) != names_.end()) {
      return true;
    }
    const auto dot = suffix.find('.');
    if (dot == std::string_view::npos) {
      return false;
    }
    suffix.remove_prefix(dot + 1);
  }
}

rules::Tri DomainList::contains(const rules::FactValue& value,
                                std::string_view /*qualifier*/) const {
  if (std::holds_alternative<rules::Unavailable>(value)) {
    return rules::Tri::Unknown;
  }
  if (const auto* text = std::get_if<std::string>(&value)) {
    return rules::toTri(matches(*text));
  }
  if (const auto* texts = std::get_if<rules::Strings>(&value)) {
    for (const auto& t : *texts) {
      if (matches(t)) {
        return rules::Tri::True;
      }
    }
  }
  return rules::Tri::False;
}

}  // namespace smtpgate::policies
