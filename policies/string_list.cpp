#include "policies/string_list.h"

#include <algorithm>
#include <variant>

namespace smtpgate::policies {

namespace {

std::string asciiLowered(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

}  // namespace

std::shared_ptr<const StringList> StringList::build(const std::vector<rules::ListEntry>& entries,
                                                    rules::Diagnostics& diags) {
  auto list = std::make_shared<StringList>();
  for (const auto& entry : entries) {
    list->add(entry, diags);
  }
  return list;
}

bool StringList::add(const rules::ListEntry& entry, rules::Diagnostics& diags) {
  if (entry.text.empty()) {
    diags.error(entry.where, "empty entry in a string list", entry.sourceLine);
    return false;
  }
  entries_.insert(asciiLowered(entry.text));
  longest_ = std::max(longest_, entry.text.size());
  return true;
}

bool StringList::matches(std::string_view text) const {
  if (text.size() > longest_) {
    return false;  // cannot match; don't copy a huge network value
  }
  return entries_.find(asciiLowered(text)) != entries_.end();
}

rules::Tri StringList::contains(const rules::FactValue& value,
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
