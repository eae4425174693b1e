#pragma once
/// ASCII case folding for the names mail compares case-insensitively (domains,
/// header field names, keywords, DKIM/DMARC tags). ASCII only, independent of
/// the process locale, on purpose: UTF-8 bytes pass through unchanged.

#include <string>
#include <string_view>

namespace smtpgate::rules {

inline std::string asciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

}  // namespace smtpgate::rules
