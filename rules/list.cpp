#include "rules/list.h"

#include <array>

namespace smtpgate::rules {

namespace {
constexpr std::array<std::string_view, 5> kListKindNames = {"cidr", "domain", "regex", "string",
                                                            "dnsbl"};
}

std::string_view toString(ListKind kind) {
  return kListKindNames[static_cast<std::size_t>(kind)];
}

std::optional<ListKind> parseListKind(std::string_view name) {
  for (std::size_t i = 0; i < kListKindNames.size(); ++i) {
    if (kListKindNames[i] == name) {
      return static_cast<ListKind>(i);
    }
  }
  return std::nullopt;
}

}  // namespace smtpgate::rules
