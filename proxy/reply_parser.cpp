#include "proxy/reply_parser.h"

#include <algorithm>

namespace smtpgate::proxy {

namespace {

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

char upper(char c) {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

bool isControl(char ch) {
  auto c = static_cast<unsigned char>(ch);
  return (c < 0x20 && c != '\t') || c == 0x7f;
}

/// Reply-code = %x32-35 %x30-35 %x30-39 (RFC 5321 4.2).
bool isReplyCode(std::string_view s) {
  return s.size() >= 3 && s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '5' && isDigit(s[2]);
}

std::optional<rules::EnhancedStatus> leadingEsc(std::string_view text, int code) {
  std::string_view word = text.substr(0, text.find(' '));
  auto esc = rules::EnhancedStatus::parse(word);
  if (esc && esc->klass == code / 100) {
    return esc;
  }
  return std::nullopt;
}

/// Upper-cases and collapses blanks: " size   10240000 " -> "SIZE 10240000".
std::string normalizeCapability(std::string_view line) {
  std::string out;
  bool blank = false;
  for (char c : line) {
    if (c == ' ' || c == '\t') {
      blank = !out.empty();
      continue;
    }
    if (blank) {
      out += ' ';
      blank = false;
    }
    out += upper(c);
  }
  return out;
}

bool isQueueIdChar(char c) {
  return isDigit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

}  // namespace

std::string BackendReply::render() const {
  std::string codeText = std::to_string(code);
  if (lines.empty()) {
    return codeText + "\r\n";
  }
  std::string out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    bool last = i + 1 == lines.size();
    out += codeText;
    if (!last || !lines[i].empty()) {
      out += last ? ' ' : '-';
    }
    out += lines[i];
    out += "\r\n";
  }
  return out;
}

std::string BackendReply::text() const {
  std::string out;
  for (const auto& line : lines) {
    if (!out.empty()) {
      out += '\n';
    }
    out += line;
  }
  return out;
}

ReplyParser::ReplyParser(std::size_t maxLines, std::size_t maxLine)
    : lines_(maxLine), maxLines_(maxLines) {}

void ReplyParser::reset() {
  lines_.reset();
  reply_ = {};
  complete_ = false;
  error_ = ReplyError::None;
}

ParseStatus ReplyParser::fail(ReplyError error) {
  error_ = error;
  return ParseStatus::Error;
}

ParseResult ReplyParser::feed(std::string_view bytes) {
  if (error_ != ReplyError::None) {
    return {ParseStatus::Error, 0};
  }
  if (complete_) {
    reply_ = {};
    complete_ = false;
  }
  std::size_t total = 0;
  while (total < bytes.size()) {
    ParseResult r = lines_.feed(bytes.substr(total));
    total += r.consumed;
    if (r.status == ParseStatus::Error) {
      fail(ReplyError::LineTooLong);
      return {ParseStatus::Error, total};
    }
    if (r.status == ParseStatus::NeedMore) {
      break;
    }
    ParseStatus s = addLine(lines_.line());
    if (s != ParseStatus::NeedMore) {
      complete_ = s == ParseStatus::Complete;
      return {s, total};
    }
  }
  return {ParseStatus::NeedMore, total};
}

ParseStatus ReplyParser::addLine(const CommandLine& line) {
  std::string_view text = line.text;
  if (line.hasNul || line.hasBareCr) {
    return fail(ReplyError::BadCharacter);
  }
  if (!isReplyCode(text)) {
    return fail(ReplyError::BadCode);
  }
  int code = (text[0] - '0') * 100 + (text[1] - '0') * 10 + (text[2] - '0');
  if (!reply_.lines.empty() && code != reply_.code) {
    return fail(ReplyError::CodeMismatch);
  }
  bool last = text.size() == 3 || text[3] == ' ';
  if (!last && text[3] != '-') {
    return fail(ReplyError::BadSeparator);
  }
  std::string_view body = text.size() > 3 ? text.substr(4) : std::string_view();
  if (std::any_of(body.begin(), body.end(), isControl)) {
    return fail(ReplyError::BadCharacter);
  }
  if (reply_.lines.size() >= maxLines_) {
    return fail(ReplyError::TooManyLines);
  }
  if (reply_.lines.empty()) {
    reply_.code = code;
    reply_.esc = leadingEsc(body, code);
  }
  reply_.lines.emplace_back(body);
  return last ? ParseStatus::Complete : ParseStatus::NeedMore;
}

policies::Reply replyFor(ReplyError error) {
  if (error == ReplyError::None) {
    return {250, {2, 0, 0}, "Ok"};
  }
  // Postfix's smtpd_proxy answers a backend failure with 451 too: the client
  // must retry, the mail is not lost.
  return {451, {4, 4, 2}, "Error: malformed reply from the mail server"};
}

std::set<std::string> capabilitiesFromEhlo(const BackendReply& reply) {
  std::set<std::string> caps;
  if (reply.code != 250) {
    return caps;
  }
  for (std::size_t i = 1; i < reply.lines.size(); ++i) {  // line 0 is the greeting
    std::string cap = normalizeCapability(reply.lines[i]);
    if (!cap.empty()) {
      caps.insert(std::move(cap));
    }
  }
  return caps;
}

std::optional<std::string> capabilityParams(const std::set<std::string>& capabilities,
                                            std::string_view keyword) {
  std::string key = normalizeCapability(keyword);
  for (const std::string& cap : capabilities) {
    if (cap == key) {
      return std::string();
    }
    if (cap.size() > key.size() && cap.compare(0, key.size(), key) == 0 && cap[key.size()] == ' ') {
      return cap.substr(key.size() + 1);
    }
  }
  return std::nullopt;
}

std::string queueIdFromReply(const BackendReply& reply) {
  constexpr std::string_view kMarker = "queued as ";
  if (reply.code / 100 != 2) {
    return {};
  }
  for (const std::string& line : reply.lines) {
    auto it = std::search(line.begin(), line.end(), kMarker.begin(), kMarker.end(),
                          [](char a, char b) { return upper(a) == upper(b); });
    if (it == line.end()) {
      continue;
    }
    auto start = it + static_cast<std::ptrdiff_t>(kMarker.size());
    auto end = std::find_if_not(start, line.end(), isQueueIdChar);
    if (end != start) {
      return std::string(start, end);
    }
  }
  return {};
}

}  // namespace smtpgate::proxy
