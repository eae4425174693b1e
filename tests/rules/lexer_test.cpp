// Lexer: token kinds, columns, string escapes, regex escapes and flags,
// list references, operators, comments and malformed tokens.

#include "rules/lexer.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace smtpgate::rules {
namespace {

struct Expected {
  TokenKind kind;
  std::string text;
  int column;
  std::string flags = {};
  int flagsColumn = 0;
};

const char* kindName(TokenKind k) {
  switch (k) {
    case TokenKind::End:
      return "End";
    case TokenKind::Word:
      return "Word";
    case TokenKind::String:
      return "String";
    case TokenKind::Regex:
      return "Regex";
    case TokenKind::ListRef:
      return "ListRef";
    case TokenKind::Op:
      return "Op";
    case TokenKind::LParen:
      return "LParen";
    case TokenKind::RParen:
      return "RParen";
    case TokenKind::LBrace:
      return "LBrace";
    case TokenKind::RBrace:
      return "RBrace";
    case TokenKind::Comma:
      return "Comma";
    case TokenKind::Error:
      return "Error";
  }
  return "?";
}

std::string show(const Token& t) {
  return std::string(kindName(t.kind)) + "[" + t.text + "]@" + std::to_string(t.column) +
         (t.flags.empty() && t.flagsColumn == 0
              ? ""
              : " flags[" + t.flags + "]@" + std::to_string(t.flagsColumn));
}

std::string show(const Expected& e) {
  return std::string(kindName(e.kind)) + "[" + e.text + "]@" + std::to_string(e.column) +
         (e.flags.empty() && e.flagsColumn == 0
              ? ""
              : " flags[" + e.flags + "]@" + std::to_string(e.flagsColumn));
}

// Every token up to and including the End (or the first Error).
std::vector<std::string> lexAll(std::string_view line) {
  Lexer lexer(line);
  std::vector<std::string> out;
  for (int guard = 0; guard < 100; ++guard) {
    Token t = lexer.next();
    out.push_back(show(t));
    if (t.kind == TokenKind::End || t.kind == TokenKind::Error) {
      break;
    }
  }
  return out;
}

std::vector<std::string> shown(const std::vector<Expected>& expected) {
  std::vector<std::string> out;
  for (const auto& e : expected) {
    out.push_back(show(e));
  }
  return out;
}

using K = TokenKind;

TEST_CASE("lexer splits a line into tokens with 1-based columns", "[lexer]") {
  struct Case {
    std::string line;
    std::vector<Expected> tokens;
  };
  // clang-format off
  const std::vector<Case> cases = {
      {"", {{K::End, "", 1}}},
      {"   \t ", {{K::End, "", 6}}},
      {"rule", {{K::Word, "rule", 1}, {K::End, "", 5}}},
      {"  rule x1", {{K::Word, "rule", 3}, {K::Word, "x1", 8}, {K::End, "", 10}}},
      // Word characters: letters, digits and _ . : * + -
      {"client.ip a_b-c 10.0.0.1 ::1 -5 2.5 x*+y",
       {{K::Word, "client.ip", 1}, {K::Word, "a_b-c", 11}, {K::Word, "10.0.0.1", 17},
        {K::Word, "::1", 26}, {K::Word, "-5", 30}, {K::Word, "2.5", 33}, {K::Word, "x*+y", 37},
        {K::End, "", 41}}},
      {"\"a b\"", {{K::String, "a b", 1}, {K::End, "", 6}}},
      {"\"\"", {{K::String, "", 1}, {K::End, "", 3}}},
      {"/re/", {{K::Regex, "re", 1, "", 5}, {K::End, "", 5}}},
      {"@list", {{K::ListRef, "list", 1}, {K::End, "", 6}}},
      // '@' inside a word keeps a bare address one word; at the start it is a list.
      {"a@example.org @l",
       {{K::Word, "a@example.org", 1}, {K::ListRef, "l", 15}, {K::End, "", 17}}},
      {"postmaster@", {{K::Word, "postmaster@", 1}, {K::End, "", 12}}},
      {"( ) { } ,",
       {{K::LParen, "(", 1}, {K::RParen, ")", 3}, {K::LBrace, "{", 5}, {K::RBrace, "}", 7},
        {K::Comma, ",", 9}, {K::End, "", 10}}},
      {"(helo)", {{K::LParen, "(", 1}, {K::Word, "helo", 2}, {K::RParen, ")", 6}, {K::End, "", 7}}},
      {"{a,b}",
       {{K::LBrace, "{", 1}, {K::Word, "a", 2}, {K::Comma, ",", 3}, {K::Word, "b", 4},
        {K::RBrace, "}", 5}, {K::End, "", 6}}},
  };
  // clang-format on
  for (const auto& c : cases) {
    INFO("line: " << c.line);
    CHECK(lexAll(c.line) == shown(c.tokens));
  }
}

TEST_CASE("lexer recognises every comparison operator", "[lexer]") {
  struct Case {
    std::string line;
    std::vector<Expected> tokens;
  };
  // clang-format off
  const std::vector<Case> cases = {
      {"a == b", {{K::Word, "a", 1}, {K::Op, "==", 3}, {K::Word, "b", 6}, {K::End, "", 7}}},
      {"a != b", {{K::Word, "a", 1}, {K::Op, "!=", 3}, {K::Word, "b", 6}, {K::End, "", 7}}},
      {"a ~ /b/", {{K::Word, "a", 1}, {K::Op, "~", 3}, {K::Regex, "b", 5, "", 8}, {K::End, "", 8}}},
      {"a !~ /b/",
       {{K::Word, "a", 1}, {K::Op, "!~", 3}, {K::Regex, "b", 6, "", 9}, {K::End, "", 9}}},
      {"a < 1", {{K::Word, "a", 1}, {K::Op, "<", 3}, {K::Word, "1", 5}, {K::End, "", 6}}},
      {"a <= 1", {{K::Word, "a", 1}, {K::Op, "<=", 3}, {K::Word, "1", 6}, {K::End, "", 7}}},
      {"a > 1", {{K::Word, "a", 1}, {K::Op, ">", 3}, {K::Word, "1", 5}, {K::End, "", 6}}},
      {"a >= 1", {{K::Word, "a", 1}, {K::Op, ">=", 3}, {K::Word, "1", 6}, {K::End, "", 7}}},
      // No spaces needed around operators.
      {"a==b", {{K::Word, "a", 1}, {K::Op, "==", 2}, {K::Word, "b", 4}, {K::End, "", 5}}},
      {"a<=1", {{K::Word, "a", 1}, {K::Op, "<=", 2}, {K::Word, "1", 4}, {K::End, "", 5}}},
      // 'in' and 'not' are words, not operators.
      {"a not in @l",
       {{K::Word, "a", 1}, {K::Word, "not", 3}, {K::Word, "in", 7}, {K::ListRef, "l", 10},
        {K::End, "", 12}}},
  };
  // clang-format on
  for (const auto& c : cases) {
    INFO("line: " << c.line);
    CHECK(lexAll(c.line) == shown(c.tokens));
  }
}

TEST_CASE("lexer unescapes \\\" and \\\\ in strings and keeps other backslashes", "[lexer]") {
  struct Case {
    std::string line;
    std::string value;
    int endColumn;
  };
  const std::vector<Case> cases = {
      {R"("a\"b")", "a\"b", 7},     {R"("a\\b")", "a\\b", 7},
      {R"("\\")", "\\", 5},         {R"("a\nb")", "a\\nb", 7},  // \n is not an escape here
      {R"("x # y")", "x # y", 8},    // # inside a string is not a comment
      {R"("a/b@c~")", "a/b@c~", 9},  // no other token starts inside a string
  };
  for (const auto& c : cases) {
    INFO("line: " << c.line);
    CHECK(lexAll(c.line) == shown({{K::String, c.value, 1}, {K::End, "", c.endColumn}}));
  }
}

TEST_CASE("lexer keeps regex escapes for RE2 except \\/ and reads flags", "[lexer]") {
  struct Case {
    std::string line;
    std::string pattern;
    std::string flags;
    int flagsColumn;
  };
  const std::vector<Case> cases = {
      {R"(/^\[/)", R"(^\[)", "", 6},
      {R"(/a\/b/)", "a/b", "", 7},
      {R"(/@paypal\.com>?$/i)", R"(@paypal\.com>?$)", "i", 18},
      {R"(/a\\/)", R"(a\\)", "", 6},  // an escaped backslash does not hide the delimiter
      {R"(/\d+\s/)", R"(\d+\s)", "", 8},
      {"/x/ims", "x", "ims", 4},
      {"/x/q", "x", "q", 4},  // unknown flags are the parser's business
      {"/#/", "#", "", 4},    // # inside a regex is not a comment
      {"//", "", "", 3},
  };
  for (const auto& c : cases) {
    INFO("line: " << c.line);
    Lexer lexer(c.line);
    Token t = lexer.next();
    CHECK(t.kind == TokenKind::Regex);
    CHECK(t.text == c.pattern);
    CHECK(t.flags == c.flags);
    CHECK(t.column == 1);
    CHECK(t.flagsColumn == c.flagsColumn);
    CHECK(lexer.next().kind == TokenKind::End);
  }
}

TEST_CASE("lexer reads @list and @list:qualifier", "[lexer]") {
  struct Case {
    std::string line;
    std::string name;
    std::string qualifier;
    int qualifierColumn;
    int endColumn;
  };
  const std::vector<Case> cases = {
      {"@office", "office", "", 0, 8},
      {"@bad-words", "bad-words", "", 0, 11},
      {"@spamhaus:127.0.0.2", "spamhaus", "127.0.0.2", 11, 20},
      {"@zen:127.0.0.2-11", "zen", "127.0.0.2-11", 6, 18},
  };
  for (const auto& c : cases) {
    INFO("line: " << c.line);
    Lexer lexer(c.line);
    Token t = lexer.next();
    CHECK(t.kind == TokenKind::ListRef);
    CHECK(t.text == c.name);
    CHECK(t.flags == c.qualifier);
    CHECK(t.column == 1);
    CHECK(t.flagsColumn == c.qualifierColumn);
    Token end = lexer.next();
    CHECK(end.kind == TokenKind::End);
    CHECK(end.column == c.endColumn);
  }
}

TEST_CASE("lexer ends the line at # comments and at a CR", "[lexer]") {
  struct Case {
    std::string line;
    std::vector<Expected> tokens;
  };
  const std::vector<Case> cases = {
      {"# a comment", {{K::End, "", 1}}},
      {"   # indented comment", {{K::End, "", 4}}},
      {"rule x # then reject", {{K::Word, "rule", 1}, {K::Word, "x", 6}, {K::End, "", 8}}},
      {"rule\r", {{K::Word, "rule", 1}, {K::End, "", 5}}},
  };
  for (const auto& c : cases) {
    INFO("line: " << c.line);
    CHECK(lexAll(c.line) == shown(c.tokens));
  }
}

TEST_CASE("lexer reports malformed tokens as Error tokens at their column", "[lexer]") {
  struct Case {
    std::string line;
    int column;
    std::string message;
  };
  const std::vector<Case> cases = {
      {R"(x "abc)", 3, "unterminated string"},
      {R"(x "abc\")", 3, "unterminated string"},  // the escaped quote does not close it
      {"x /abc", 3, "unterminated regex"},
      {R"(x /abc\/)", 3, "unterminated regex"},  // \/ does not close it
      {"x = y", 3, "'=' is not an operator; use '=='"},
      {"x ! y", 3, "'!' must be followed by '=' or '~'"},
      {"x @ y", 3, "expected a list name after '@'"},
      {"x @zen: y", 3, "expected an answer code after '@zen:'"},
      {"x ; y", 3, "unexpected character ';'"},
      {"x $y", 3, "unexpected character '$'"},
      {"x [::1]", 3, "unexpected character '['"},
      {"x \x01", 3, "unexpected character byte 1"},
      {"x \xc3\xa9", 3, "unexpected character byte 195"},
  };
  for (const auto& c : cases) {
    INFO("line: " << c.line);
    Lexer lexer(c.line);
    CHECK(lexer.next().kind == TokenKind::Word);
    Token t = lexer.next();
    CHECK(t.kind == TokenKind::Error);
    CHECK(t.column == c.column);
    CHECK_THAT(t.text, Catch::Contains(c.message));
  }
}

TEST_CASE("lexer rest() and skipTo() expose the raw text after a token", "[lexer]") {
  Lexer lexer("list x cidr { 10.0.0.0/8, ::1 } # c");
  for (int i = 0; i < 4; ++i) {
    lexer.next();
  }
  CHECK(lexer.rest() == " 10.0.0.0/8, ::1 } # c");
  CHECK(lexer.column() == 14);
  lexer.skipTo(31);
  CHECK(lexer.next().kind == TokenKind::End);
}

}  // namespace
}  // namespace smtpgate::rules
