#include "policies/added_header.h"

#include "rules/ascii.h"

namespace smtpgate::policies {

std::string_view trimmedHeaderName(std::string_view name) {
  while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) {
    name.remove_suffix(1);
  }
  return name;
}

bool headerNameIs(std::string_view name, std::string_view expected) {
  name = trimmedHeaderName(name);
  return name.size() == expected.size() && rules::asciiLower(name) == rules::asciiLower(expected);
}

std::string oneLineHeaderValue(std::string_view value) {
  std::string out(value);
  for (char& c : out) {
    auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) {
      c = ' ';
    }
  }
  return out;
}

}  // namespace smtpgate::policies
