#include "policies/spf_macro.h"

#include <algorithm>
#include <cstdio>

namespace smtpgate::policies {

namespace {

constexpr std::size_t kMaxDomainName = 253;  // RFC 1035 text form, no final dot
constexpr std::string_view kMacroLetters = "slodiphcrtv";
constexpr std::string_view kExplanationOnlyLetters = "crt";
constexpr std::string_view kDelimiters = ".-+,/_=";

bool isAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

bool isAlnum(char c) {
  return isAlpha(c) || isDigit(c);
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

/// macro-literal = %x21-24 / %x26-7E: visible ASCII but "%".
bool isMacroLiteral(char c) {
  return c >= 0x21 && c <= 0x7e && c != '%';
}

/// A byte for an error message: itself if visible, else \xNN.
std::string shown(char c) {
  if (c > 0x20 && c < 0x7f) {
    return std::string("'") + c + "'";
  }
  char buf[8];
  std::snprintf(buf, sizeof buf, "\\x%02X", static_cast<unsigned char>(c));
  return buf;
}

/// RFC 3986 unreserved characters, which URL-escaping leaves alone (7.3).
bool isUnreserved(char c) {
  return isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

std::string urlEscape(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : value) {
    if (isUnreserved(c)) {
      out += c;
    } else {
      const auto b = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[b >> 4];
      out += kHex[b & 0x0f];
    }
  }
  return out;
}

/// %{i} of an IPv6 client: "2.0.0.1.0.D.B.8. ..." (7.3, examples in 7.4).
std::string dottedNibbles(const rules::IpAddress& ip) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (std::uint8_t b : ip.bytes()) {
    out += kHex[b >> 4];
    out += '.';
    out += kHex[b & 0x0f];
    out += '.';
  }
  out.pop_back();
  return out;
}

/// Splits `value` at any of `delimiters`, keeping empty parts (7.3).
std::vector<std::string_view> splitParts(std::string_view value, std::string_view delimiters) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= value.size(); ++i) {
    if (i == value.size() || delimiters.find(value[i]) != std::string_view::npos) {
      parts.push_back(value.substr(start, i - start));
      start = i + 1;
    }
  }
  return parts;
}

/// domain-end = ( "." toplabel [ "." ] ) / macro-expand, where `tail` is
/// the literal text after the last macro-expand (7.1).
bool validDomainEnd(std::string_view tail, bool endsWithExpand) {
  if (endsWithExpand) {
    return true;
  }
  if (!tail.empty() && tail.back() == '.') {
    tail.remove_suffix(1);
  }
  const std::size_t dot = tail.rfind('.');
  return dot != std::string_view::npos && isSpfTopLabel(tail.substr(dot + 1));
}

}  // namespace

bool isSpfTopLabel(std::string_view label) {
  if (label.empty() ||
      !std::all_of(label.begin(), label.end(), [](char c) { return isAlnum(c) || c == '-'; })) {
    return false;
  }
  if (label.find('-') == std::string_view::npos) {
    return std::any_of(label.begin(), label.end(), isAlpha);
  }
  return isAlnum(label.front()) && isAlnum(label.back());
}

std::string truncateSpfDomain(std::string name) {
  if (!name.empty() && name.back() == '.') {
    name.pop_back();
  }
  while (name.size() > kMaxDomainName) {
    const std::size_t dot = name.find('.');
    if (dot == std::string::npos) {
      return {};  // one label too long to be a name: nothing can be queried
    }
    name.erase(0, dot + 1);
  }
  return name;
}

bool SpfMacroString::parseMacro(std::string_view text, std::size_t& pos, SpfMacroSyntax syntax,
                                Token& token, std::string& error) {
  if (pos >= text.size() || kMacroLetters.find(lower(text[pos])) == std::string_view::npos) {
    error = pos >= text.size() ? "unterminated macro" : "unknown macro letter " + shown(text[pos]);
    return false;
  }
  token.urlEscape = text[pos] >= 'A' && text[pos] <= 'Z';
  token.letter = lower(text[pos++]);
  if (syntax == SpfMacroSyntax::DomainSpec &&
      kExplanationOnlyLetters.find(token.letter) != std::string_view::npos) {
    error = std::string("macro letter '") + token.letter + "' is allowed only in explanation text";
    return false;
  }
  bool digits = false;
  for (; pos < text.size() && isDigit(text[pos]); ++pos) {
    digits = true;
    // Clamped while reading, so a thousand digits cannot overflow.
    token.keep = std::min(kMaxSpfMacroParts + 1, token.keep * 10 + (text[pos] - '0'));
  }
  if (digits && token.keep == 0) {
    error = "macro transformer 0 (the number of parts must not be zero)";
    return false;
  }
  token.keep = std::min(token.keep, kMaxSpfMacroParts);
  if (pos < text.size() && lower(text[pos]) == 'r') {
    token.reverse = true;
    ++pos;
  }
  for (; pos < text.size() && kDelimiters.find(text[pos]) != std::string_view::npos; ++pos) {
    token.delimiters += text[pos];
  }
  if (pos >= text.size() || text[pos] != '}') {
    error = pos >= text.size() ? "unterminated macro"
                               : "invalid character " + shown(text[pos]) + " in macro";
    return false;
  }
  ++pos;
  return true;
}

void SpfMacroString::addLiteral(std::string_view text) {
  if (tokens_.empty() || tokens_.back().letter != 0) {
    tokens_.emplace_back();
  }
  tokens_.back().literal += text;
}

std::optional<SpfMacroString> SpfMacroString::parse(std::string_view text, SpfMacroSyntax syntax,
                                                    std::string& error) {
  SpfMacroString out;
  out.text_ = std::string(text);
  std::string tail;  // literal text since the last macro-expand, for domain-end
  bool endsWithExpand = false;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const char c = text[pos];
    if (c != '%') {
      if (!isMacroLiteral(c) && !(c == ' ' && syntax == SpfMacroSyntax::Explanation)) {
        error = "invalid character " + shown(c);
        return std::nullopt;
      }
      out.addLiteral(text.substr(pos++, 1));
      tail += c;
      endsWithExpand = false;
      continue;
    }
    if (pos + 1 >= text.size()) {
      error = "'%' at the end (a literal '%' is written \"%%\")";
      return std::nullopt;
    }
    const char next = text[pos + 1];
    pos += 2;
    if (next == '%' || next == '_' || next == '-') {
      out.addLiteral(next == '%' ? "%" : next == '_' ? " " : "%20");
    } else if (next == '{') {
      Token t;
      if (!parseMacro(text, pos, syntax, t, error)) {
        return std::nullopt;
      }
      out.tokens_.push_back(std::move(t));
    } else {
      error = "'%' followed by " + shown(next) + " (only {, %, _ or - may follow)";
      return std::nullopt;
    }
    tail.clear();
    endsWithExpand = true;
  }
  if (syntax == SpfMacroSyntax::DomainSpec) {
    if (text.empty()) {
      error = "empty domain-spec";
      return std::nullopt;
    }
    if (!validDomainEnd(tail, endsWithExpand)) {
      error = "domain-spec does not end in a macro or a valid top label";
      return std::nullopt;
    }
  }
  return out;
}

std::string SpfMacroString::expandMacro(const Token& token, const SpfMacroValues& values) const {
  std::string value;
  switch (token.letter) {
    case 's':
      value = values.sender;
      break;
    case 'l':
      value = values.localPart;
      break;
    case 'o':
      value = values.senderDomain;
      break;
    case 'd':
      value = values.domain;
      break;
    case 'i':
      value = values.ip.isV4() ? values.ip.toString() : dottedNibbles(values.ip);
      break;
    case 'c':
      value = values.ip.toString();
      break;
    case 'v':
      value = values.ip.isV4() ? "in-addr" : "ip6";
      break;
    case 'h':
      value = values.helo;
      break;
    case 'r':
      value = values.receiver.empty() ? "unknown" : values.receiver;
      break;
    case 't':
      value = std::to_string(values.timestamp);
      break;
    case 'p':
      value = values.validatedName ? values.validatedName(values.domain) : std::string();
      if (value.empty()) {
        value = "unknown";
      }
      break;
    default:
      break;  // parse() admits only the letters above
  }
  if (token.keep != 0 || token.reverse || !token.delimiters.empty()) {
    auto parts = splitParts(value, token.delimiters.empty() ? "." : token.delimiters);
    if (token.reverse) {
      std::reverse(parts.begin(), parts.end());
    }
    const auto keep = static_cast<std::size_t>(token.keep);
    const std::size_t drop = keep != 0 && keep < parts.size() ? parts.size() - keep : 0;
    std::string joined;
    for (std::size_t i = drop; i < parts.size(); ++i) {
      joined += (i == drop ? "" : ".") + std::string(parts[i]);
    }
    value = std::move(joined);
  }
  return token.urlEscape ? urlEscape(value) : value;
}

std::optional<std::string> SpfMacroString::expand(const SpfMacroValues& values,
                                                  std::string& error) const {
  std::string out;
  for (const auto& token : tokens_) {
    out += token.letter == 0 ? token.literal : expandMacro(token, values);
    if (out.size() > kMaxSpfExpansion) {
      error = "macro expansion longer than " + std::to_string(kMaxSpfExpansion) + " bytes";
      return std::nullopt;
    }
  }
  return out;
}

}  // namespace smtpgate::policies
