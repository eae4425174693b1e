#include "rules/lexer.h"

#include <cctype>

namespace smtpgate::rules {

bool isWordChar(char c) {
  auto u = static_cast<unsigned char>(c);
  return std::isalnum(u) || c == '_' || c == '.' || c == ':' || c == '-' || c == '*' || c == '+';
}

void Lexer::skipSpace() {
  while (pos_ < line_.size() && (line_[pos_] == ' ' || line_[pos_] == '\t')) {
    ++pos_;
  }
}

Token Lexer::next() {
  skipSpace();
  int col = column();
  if (pos_ >= line_.size() || line_[pos_] == '#' || line_[pos_] == '\r') {
    return {TokenKind::End, {}, {}, col, 0};
  }
  char c = line_[pos_];
  switch (c) {
    case '"':
      return lexString(col);
    case '/':
      return lexRegex(col);
    case '@':
      return lexListRef(col);
    case '(':
      ++pos_;
      return {TokenKind::LParen, "(", {}, col, 0};
    case ')':
      ++pos_;
      return {TokenKind::RParen, ")", {}, col, 0};
    case '{':
      ++pos_;
      return {TokenKind::LBrace, "{", {}, col, 0};
    case '}':
      ++pos_;
      return {TokenKind::RBrace, "}", {}, col, 0};
    case ',':
      ++pos_;
      return {TokenKind::Comma, ",", {}, col, 0};
    case '=':
    case '!':
    case '~':
    case '<':
    case '>':
      return lexOperator(col);
    default:
      break;
  }
  if (isWordChar(c)) {
    std::size_t start = pos_;
    // '@' inside a word makes bare addresses work: sender == a@example.org.
    while (pos_ < line_.size() && (isWordChar(line_[pos_]) || line_[pos_] == '@')) {
      ++pos_;
    }
    return {TokenKind::Word, std::string(line_.substr(start, pos_ - start)), {}, col, 0};
  }
  ++pos_;
  auto u = static_cast<unsigned char>(c);
  std::string shown = std::isprint(u) ? std::string("'") + c + "'" : "byte " + std::to_string(u);
  return {TokenKind::Error, "unexpected character " + shown, {}, col, 0};
}

Token Lexer::lexString(int col) {
  std::string value;
  ++pos_;  // opening quote
  while (pos_ < line_.size()) {
    char c = line_[pos_++];
    if (c == '"') {
      return {TokenKind::String, std::move(value), {}, col, 0};
    }
    if (c == '\\' && pos_ < line_.size() && (line_[pos_] == '"' || line_[pos_] == '\\')) {
      c = line_[pos_++];
    }
    value += c;
  }
  return {TokenKind::Error, "unterminated string (missing closing \")", {}, col, 0};
}

Token Lexer::lexRegex(int col) {
  std::string pattern;
  ++pos_;  // opening slash
  while (pos_ < line_.size()) {
    char c = line_[pos_++];
    if (c == '/') {
      Token t{TokenKind::Regex, std::move(pattern), {}, col, column()};
      while (pos_ < line_.size() && std::isalpha(static_cast<unsigned char>(line_[pos_]))) {
        t.flags += line_[pos_++];
      }
      return t;
    }
    if (c == '\\' && pos_ < line_.size()) {
      // Keep the escape for RE2, except \/ which only hides the delimiter.
      char escaped = line_[pos_++];
      if (escaped != '/') {
        pattern += '\\';
      }
      pattern += escaped;
      continue;
    }
    pattern += c;
  }
  return {TokenKind::Error, "unterminated regex (missing closing /)", {}, col, 0};
}

Token Lexer::lexListRef(int col) {
  ++pos_;  // @
  std::size_t start = pos_;
  while (pos_ < line_.size() && isWordChar(line_[pos_]) && line_[pos_] != ':') {
    ++pos_;
  }
  Token t{TokenKind::ListRef, std::string(line_.substr(start, pos_ - start)), {}, col, 0};
  if (t.text.empty()) {
    return {TokenKind::Error, "expected a list name after '@'", {}, col, 0};
  }
  if (pos_ < line_.size() && line_[pos_] == ':') {
    ++pos_;
    t.flagsColumn = column();
    std::size_t qstart = pos_;
    while (pos_ < line_.size() && isWordChar(line_[pos_])) {
      ++pos_;
    }
    t.flags = std::string(line_.substr(qstart, pos_ - qstart));
    if (t.flags.empty()) {
      return {TokenKind::Error, "expected an answer code after '@" + t.text + ":'", {}, col, 0};
    }
  }
  return t;
}

Token Lexer::lexOperator(int col) {
  std::string_view two = line_.substr(pos_, 2);
  for (std::string_view op : {"==", "!=", "!~", "<=", ">="}) {
    if (two == op) {
      pos_ += 2;
      return {TokenKind::Op, std::string(op), {}, col, 0};
    }
  }
  char c = line_[pos_++];
  if (c == '~' || c == '<' || c == '>') {
    return {TokenKind::Op, std::string(1, c), {}, col, 0};
  }
  if (c == '=') {
    return {TokenKind::Error, "'=' is not an operator; use '==' to compare", {}, col, 0};
  }
  return {TokenKind::Error, "'!' must be followed by '=' or '~' (use 'not' to negate)", {}, col, 0};
}

}  // namespace smtpgate::rules
