#pragma once
/// LineParser — turns one line of a rule file into a statement.
///
/// Statements (one per line; `#` starts a comment):
///   include "FILE"                                  (FILE may be a glob)
///   list NAME KIND "FILE" | list NAME KIND { a, b }   (KIND: cidr domain regex string dnsbl;
///                                                    for dnsbl the string is the zone)
///   rule ID on STAGE when CONDITION then ACTION       (ACTION: accept | tempfail ["REPLY"] |
///                                                    reject ["REPLY"] | score N |
///                                                    monitor tempfail|reject ["REPLY"])
///   threshold tempfail|reject at N ["REPLY"]
/// Checks that need only the line are done here (unknown field, field not
/// known at the rule's stage, operator/operand types, regex syntax through
/// RE2, reply codes); checks across lines (unknown or duplicate lists and
/// rule ids, list kinds) are the loader's. A syntax error abandons the rest
/// of its line; other lines still get parsed, so every error is reported.
///
/// SECURITY: rule files are admin input but may be generated from untrusted
/// data; nesting depth is bounded and no input makes the parser recurse
/// without limit or throw.

#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "rules/condition.h"
#include "rules/diagnostic.h"
#include "rules/lexer.h"
#include "rules/list.h"
#include "rules/rule_set.h"

namespace smtpgate::rules {

struct IncludeStatement {
  std::string path;
  SourceLocation where;  ///< the path string
};

struct ListStatement {
  std::string name;
  ListKind kind = ListKind::String;
  bool isInline = false;
  std::string source;  ///< file path (or the zone for dnsbl) when not inline
  SourceLocation sourceWhere;
  std::vector<ListEntry> entries;  ///< inline entries (and the dnsbl zone)
  SourceLocation where;            ///< the list name
};

using Statement = std::variant<std::monostate, IncludeStatement, ListStatement, Rule, Threshold>;

/// Deepest nesting of parentheses and `not` the parser accepts.
inline constexpr int kMaxConditionDepth = 64;

class LineParser {
 public:
  LineParser(std::string_view line, std::string file, int lineNumber, Diagnostics& diags);
  /// monostate for a blank line, a comment, or a line with a syntax error.
  Statement parse();

 private:
  Statement parseInclude();
  Statement parseList();
  Statement parseRule();
  Statement parseThreshold();
  bool parseInlineEntries(ListStatement& list);
  bool parseAction(Rule& rule);
  std::optional<ReplyTemplate> parseReply(RuleAction action, Stage stage);

  std::unique_ptr<Condition> parseOr(int depth);
  std::unique_ptr<Condition> parseAnd(int depth);
  std::unique_ptr<Condition> parseUnary(int depth);
  std::unique_ptr<Condition> parseLeaf();
  bool parseOperand(Condition& leaf, const Token& op, bool negate);
  bool parseCompareLiteral(Condition& leaf, const Token& value);
  bool parseRegexLiteral(Condition& leaf, const Token& value);
  bool parseSet(Condition& leaf);

  const Token& peek();
  Token take();
  bool expectWord(std::string_view word, std::string_view context);
  bool isWord(const Token& t, std::string_view word) const;
  void error(int column, std::string message);
  void warning(int column, std::string message);
  SourceLocation at(int column) const;

  std::string line_;
  std::string file_;
  int lineNumber_;
  Diagnostics& diags_;
  Lexer lexer_;
  Token lookahead_;
  bool hasLookahead_ = false;
  bool failed_ = false;  ///< a syntax error was reported; stop parsing this line
  Stage stage_ = Stage::Connect;
};

/// Folds /re/flags into RE2 inline flags; nullopt (and `error`) for an unknown flag.
std::optional<std::string> regexWithFlags(const std::string& pattern, const std::string& flags,
                                          std::string& error);
/// Compiles one pattern alone to check it; returns RE2's message, empty if fine.
std::string checkRegex(const std::string& pattern);

}  // namespace smtpgate::rules
