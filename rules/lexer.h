#pragma once
/// Lexer — splits one line of a rule file into tokens.
///
/// The language is line-based (one statement per line, so an admin can grep
/// a rule id and land on its rule), so the lexer works on a line at a time
/// and never looks past it. Columns are 1-based byte offsets into the line.
/// A malformed token (unterminated string or regex, stray character) comes
/// back as a TokenKind::Error carrying the message; the parser reports it.

#include <string>
#include <string_view>

namespace smtpgate::rules {

enum class TokenKind {
  End,      ///< end of line (or a # comment)
  Word,     ///< keywords, ids, fields, numbers, addresses: [A-Za-z0-9_.:*+-]+, '@' inside
  String,   ///< "..." with \" and \\ escapes; text is the unescaped value
  Regex,    ///< /.../flags; text is the pattern, flags in `flags`
  ListRef,  ///< @name or @name:qualifier; text is the name
  Op,       ///< == != ~ !~ < <= > >=
  LParen,
  RParen,
  LBrace,
  RBrace,
  Comma,
  Error,  ///< text is the error message
};

struct Token {
  TokenKind kind = TokenKind::End;
  std::string text;
  std::string flags;    ///< Regex flags; ListRef qualifier
  int column = 0;       ///< 1-based column of the token's first byte
  int flagsColumn = 0;  ///< column of the first flag / the qualifier
};

class Lexer {
 public:
  explicit Lexer(std::string_view line) : line_(line) {}
  Token next();
  /// The rest of the line from the current position (for raw list bodies).
  [[nodiscard]] std::string_view rest() const { return line_.substr(pos_); }
  [[nodiscard]] int column() const { return static_cast<int>(pos_) + 1; }
  void skipTo(std::size_t offset) { pos_ = offset; }

 private:
  Token lexString(int col);
  Token lexRegex(int col);
  Token lexListRef(int col);
  Token lexOperator(int col);
  void skipSpace();

  std::string_view line_;
  std::size_t pos_ = 0;
};

bool isWordChar(char c);

}  // namespace smtpgate::rules
