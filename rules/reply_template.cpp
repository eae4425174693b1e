#include "rules/reply_template.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

namespace smtpgate::rules {

namespace {

constexpr std::array<std::string_view, 6> kVariables = {"client_ip", "sender", "rcpt",
                                                        "rule",      "score",  "session"};

bool isVarChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

std::optional<int> parseInt(std::string_view s, int maxDigits) {
  if (s.empty() || static_cast<int>(s.size()) > maxDigits) {
    return std::nullopt;
  }
  // Digits only: from_chars would also take a sign ("5.-7.1").
  if (!std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

const std::string* variable(const ReplyVariables& vars, std::string_view name) {
  if (name == "client_ip")
    return &vars.clientIp;
  if (name == "sender")
    return &vars.sender;
  if (name == "rcpt")
    return &vars.rcpt;
  if (name == "rule")
    return &vars.rule;
  if (name == "score")
    return &vars.score;
  if (name == "session")
    return &vars.session;
  return nullptr;
}

// Drops bytes that could break the reply line (CR, LF, other controls).
void appendSafe(std::string& out, std::string_view value) {
  for (char c : value) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7f) {
      out += c;
    }
  }
}

}  // namespace

bool isReplyVariable(std::string_view name) {
  for (auto v : kVariables) {
    if (v == name) {
      return true;
    }
  }
  return false;
}

std::string EnhancedStatus::toString() const {
  return std::to_string(klass) + '.' + std::to_string(subject) + '.' + std::to_string(detail);
}

std::optional<EnhancedStatus> EnhancedStatus::parse(std::string_view text) {
  // RFC 3463: class "." subject "." detail; subject and detail 1-3 digits.
  auto dot1 = text.find('.');
  auto dot2 = dot1 == std::string_view::npos ? dot1 : text.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos) {
    return std::nullopt;
  }
  auto k = parseInt(text.substr(0, dot1), 1);
  auto s = parseInt(text.substr(dot1 + 1, dot2 - dot1 - 1), 3);
  auto d = parseInt(text.substr(dot2 + 1), 3);
  if (!k || !s || !d || (*k != 2 && *k != 4 && *k != 5)) {
    return std::nullopt;
  }
  return EnhancedStatus{*k, *s, *d};
}

std::optional<ReplyTemplate> ReplyTemplate::parse(std::string_view text, std::string& error,
                                                  std::size_t& errorOffset) {
  errorOffset = 0;
  auto code = text.size() >= 3 ? parseInt(text.substr(0, 3), 3) : std::nullopt;
  if (!code || *code < 200 || *code > 599 || (text.size() > 3 && text[3] != ' ')) {
    error = "reply must start with a three-digit SMTP code, e.g. \"550 5.7.1 text\"";
    return std::nullopt;
  }
  std::size_t escStart = text.size() > 3 ? 4 : text.size();
  std::size_t escEnd = text.find(' ', escStart);
  std::string_view escText = text.substr(
      escStart, escEnd == std::string_view::npos ? std::string_view::npos : escEnd - escStart);
  auto esc = EnhancedStatus::parse(escText);
  if (!esc) {
    error = "expected an RFC 3463 enhanced status code after the reply code, e.g. \"" +
            std::to_string(*code) + " " + std::to_string(*code / 100) + ".7.1 text\"";
    errorOffset = escStart;
    return std::nullopt;
  }
  if (esc->klass != *code / 100) {
    error = "enhanced status code " + esc->toString() + " does not match reply code " +
            std::to_string(*code) + " (its class must be " + std::to_string(*code / 100) + ")";
    errorOffset = escStart;
    return std::nullopt;
  }
  std::string body = escEnd == std::string_view::npos ? "" : std::string(text.substr(escEnd + 1));
  for (std::size_t i = 0; i < body.size(); ++i) {
    auto c = static_cast<unsigned char>(body[i]);
    if (c < 0x20 || c == 0x7f) {
      error = "control character in reply text";
      errorOffset = escEnd + 1 + i;
      return std::nullopt;
    }
    if (body[i] == '$') {
      std::size_t j = i + 1;
      while (j < body.size() && isVarChar(body[j])) {
        ++j;
      }
      std::string_view name(body.data() + i + 1, j - i - 1);
      if (!isReplyVariable(name)) {
        error = "unknown variable $" + std::string(name) +
                " in reply; known: $client_ip $sender $rcpt $rule $score $session";
        errorOffset = escEnd + 1 + i;
        return std::nullopt;
      }
    }
  }
  return make(*code, *esc, std::move(body));
}

ReplyTemplate ReplyTemplate::make(int code, EnhancedStatus esc, std::string text) {
  ReplyTemplate t;
  t.code_ = code;
  t.esc_ = esc;
  t.text_ = std::move(text);
  return t;
}

std::string ReplyTemplate::expandText(const ReplyVariables& vars) const {
  std::string out;
  out.reserve(text_.size() + 32);
  for (std::size_t i = 0; i < text_.size(); ++i) {
    if (text_[i] != '$') {
      out += text_[i];
      continue;
    }
    std::size_t j = i + 1;
    while (j < text_.size() && isVarChar(text_[j])) {
      ++j;
    }
    const std::string* value = variable(vars, std::string_view(text_).substr(i + 1, j - i - 1));
    if (value == nullptr) {
      out += text_[i];
      continue;
    }
    appendSafe(out, *value);
    i = j - 1;
  }
  return out;
}

std::string ReplyTemplate::render(const ReplyVariables& vars) const {
  std::string text = expandText(vars);
  return std::to_string(code_) + ' ' + esc_.toString() + (text.empty() ? "" : " " + text);
}

}  // namespace smtpgate::rules
