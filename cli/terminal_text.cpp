#include "cli/terminal_text.h"

#include <algorithm>

namespace smtpgate::cli {

namespace {

std::size_t utf8Length(unsigned char lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

bool isUnsafeSequence(std::string_view ch) {
  const auto b = [&](std::size_t i) { return static_cast<unsigned char>(ch[i]); };
  if (ch.size() == 1) {
    return b(0) < 0x20 || b(0) == 0x7F;
  }
  if (ch.size() == 2) {
    return b(0) == 0xC2 && b(1) < 0xA0;  // C1 controls U+0080..U+009F
  }
  // U+2028..U+202E (line/paragraph separators, bidi embeddings), U+2066..U+2069 (isolates)
  return ch.size() == 3 && b(0) == 0xE2 &&
         ((b(1) == 0x80 && b(2) >= 0xA8 && b(2) <= 0xAE) ||
          (b(1) == 0x81 && b(2) >= 0xA6 && b(2) <= 0xA9));
}

}  // namespace

std::size_t countChars(std::string_view text) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < text.size(); i += utf8Length(static_cast<unsigned char>(text[i]))) {
    ++n;
  }
  return n;
}

std::size_t appendClean(std::string& out, std::string_view text, std::size_t maxChars) {
  const bool cut = countChars(text) > maxChars;
  const std::size_t keep = cut ? maxChars - 1 : maxChars;
  std::size_t n = 0;
  for (std::size_t i = 0; i < text.size() && n < keep; ++n) {
    const std::size_t len =
        std::min(utf8Length(static_cast<unsigned char>(text[i])), text.size() - i);
    const std::string_view ch = text.substr(i, len);
    out += isUnsafeSequence(ch) ? std::string_view("?") : ch;
    i += len;
  }
  if (cut) {
    out += "…";
    ++n;
  }
  return n;
}

std::string clean(std::string_view text, std::size_t maxChars) {
  std::string out;
  appendClean(out, text, maxChars);
  return out;
}

std::string grouped(std::uint64_t n) {
  const std::string digits = std::to_string(n);
  std::string out;
  out.reserve(digits.size() + digits.size() / 3);
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) {
      out += ',';
    }
    out += digits[i];
  }
  return out;
}

}  // namespace smtpgate::cli
