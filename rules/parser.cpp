#include "rules/parser.h"

#include <re2/re2.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

#include "rules/ascii.h"

namespace smtpgate::rules {

namespace {

std::optional<double> parseNumber(std::string_view s) {
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  // from_chars also reads "inf" and "nan"; a NaN score would never reach a threshold.
  if (ec != std::errc{} || p != s.data() + s.size() || !std::isfinite(v)) {
    return std::nullopt;
  }
  return v;
}

bool isIdentifier(std::string_view s) {
  if (s.empty() || !std::isalnum(static_cast<unsigned char>(s.front()))) {
    return false;
  }
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

std::string joinWords(std::span<const std::string_view> words) {
  std::string out;
  for (auto w : words) {
    out += (out.empty() ? "" : ", ") + std::string(w);
  }
  return out;
}

/// The error for a word that is not one of an AuthResult field's results, if it is not.
std::optional<std::string> resultWordError(const FieldInfo& info, std::string_view text) {
  std::string word = asciiLower(text);
  if (std::find(info.words.begin(), info.words.end(), word) != info.words.end()) {
    return std::nullopt;
  }
  return "unknown " + std::string(info.name) + " result '" + std::string(text) +
         "' (expected one of: " + joinWords(info.words) + ")";
}

/// The column of byte `offset` of a string token's value: walks the raw text
/// after the opening quote, where the escapes \" and \\ take two bytes.
int columnInString(std::string_view line, int quoteColumn, std::size_t offset) {
  auto pos = static_cast<std::size_t>(quoteColumn);  // 0-based, just after the quote
  for (std::size_t i = 0; i < offset && pos < line.size(); ++i) {
    if (line[pos] == '\\' && pos + 1 < line.size() &&
        (line[pos + 1] == '"' || line[pos + 1] == '\\')) {
      ++pos;
    }
    ++pos;
  }
  return static_cast<int>(pos) + 1;
}

std::string_view fieldTypeName(FieldType t) {
  switch (t) {
    case FieldType::Ip:
      return "an IP address";
    case FieldType::Number:
      return "a number";
    case FieldType::Bool:
      return "true or false";
    case FieldType::Text:
    case FieldType::TextList:
      return "text";
    case FieldType::AuthResult:
      return "a result word";
  }
  return "?";
}

}  // namespace

std::optional<std::string> regexWithFlags(const std::string& pattern, const std::string& flags,
                                          std::string& error) {
  std::string inlineFlags;
  for (char f : flags) {
    if (f != 'i' && f != 'm' && f != 's') {
      error = std::string("unknown regex flag '") + f + "' (known: i, m, s)";
      return std::nullopt;
    }
    if (inlineFlags.find(f) == std::string::npos) {
      inlineFlags += f;
    }
  }
  return inlineFlags.empty() ? pattern : "(?" + inlineFlags + ")" + pattern;
}

std::string checkRegex(const std::string& pattern) {
  RE2::Options options;
  options.set_log_errors(false);
  RE2 re(pattern, options);
  return re.ok() ? std::string() : re.error();
}

LineParser::LineParser(std::string_view line, std::string file, int lineNumber, Diagnostics& diags)
    : line_(line), file_(std::move(file)), lineNumber_(lineNumber), diags_(diags), lexer_(line_) {
  if (!line_.empty() && line_.back() == '\r') {
    line_.pop_back();
    lexer_ = Lexer(line_);
  }
}

SourceLocation LineParser::at(int column) const {
  return {file_, lineNumber_, column};
}

void LineParser::error(int column, std::string message) {
  diags_.error(at(column), std::move(message), line_);
}

void LineParser::warning(int column, std::string message) {
  diags_.warning(at(column), std::move(message), line_);
}

const Token& LineParser::peek() {
  if (!hasLookahead_) {
    lookahead_ = lexer_.next();
    hasLookahead_ = true;
  }
  return lookahead_;
}

Token LineParser::take() {
  peek();
  hasLookahead_ = false;
  if (lookahead_.kind == TokenKind::Error && !failed_) {
    error(lookahead_.column, lookahead_.text);
    failed_ = true;
  }
  return lookahead_;
}

bool LineParser::isWord(const Token& t, std::string_view word) const {
  return t.kind == TokenKind::Word && t.text == word;
}

bool LineParser::expectWord(std::string_view word, std::string_view context) {
  Token t = take();
  if (failed_) {
    return false;
  }
  if (!isWord(t, word)) {
    error(t.column,
          "expected '" + std::string(word) + "' " + std::string(context) +
              (t.kind == TokenKind::End ? ", found end of line" : ", found '" + t.text + "'"));
    failed_ = true;
    return false;
  }
  return true;
}

Statement LineParser::parse() {
  Token first = take();
  if (failed_ || first.kind == TokenKind::End) {
    return {};
  }
  Statement result;
  if (isWord(first, "include")) {
    result = parseInclude();
  } else if (isWord(first, "list")) {
    result = parseList();
  } else if (isWord(first, "rule")) {
    result = parseRule();
  } else if (isWord(first, "threshold")) {
    result = parseThreshold();
  } else {
    error(first.column,
          "expected 'rule', 'list', 'include' or 'threshold', found '" + first.text + "'");
    return {};
  }
  if (!failed_) {
    Token extra = take();
    if (!failed_ && extra.kind != TokenKind::End) {
      error(extra.column, "unexpected '" + extra.text + "' at end of statement");
      failed_ = true;
    }
  }
  if (failed_) {
    return {};
  }
  return result;
}

Statement LineParser::parseInclude() {
  Token path = take();
  if (failed_) {
    return {};
  }
  if (path.kind != TokenKind::String || path.text.empty()) {
    error(path.column, "expected a quoted file name after 'include'");
    failed_ = true;
    return {};
  }
  return IncludeStatement{path.text, at(path.column)};
}

Statement LineParser::parseList() {
  Token name = take();
  if (failed_) {
    return {};
  }
  if (name.kind != TokenKind::Word || !isIdentifier(name.text)) {
    error(name.column, "expected a list name (letters, digits, '-', '_') after 'list'");
    failed_ = true;
    return {};
  }
  ListStatement list;
  list.name = name.text;
  list.where = at(name.column);
  Token kind = take();
  auto parsedKind = kind.kind == TokenKind::Word ? parseListKind(kind.text) : std::nullopt;
  if (failed_ || !parsedKind) {
    if (!failed_) {
      error(kind.column, "unknown list kind '" + kind.text +
                             "' (expected cidr, domain, regex, string or dnsbl)");
    }
    failed_ = true;
    return {};
  }
  list.kind = *parsedKind;
  const Token& body = peek();
  if (body.kind == TokenKind::LBrace) {
    if (list.kind == ListKind::Dnsbl) {
      error(body.column, "a dnsbl list names one zone: list NAME dnsbl \"zone.example\"");
      failed_ = true;
      return {};
    }
    list.isInline = true;
    if (!parseInlineEntries(list)) {
      return {};
    }
    return list;
  }
  Token source = take();
  if (failed_ || source.kind != TokenKind::String || source.text.empty()) {
    if (!failed_) {
      error(source.column, list.kind == ListKind::Dnsbl
                               ? "expected the DNSBL zone in quotes, e.g. \"zen.example.org\""
                               : "expected a quoted file name or { entries } after the list kind");
    }
    failed_ = true;
    return {};
  }
  list.source = source.text;
  list.sourceWhere = at(source.column);
  if (list.kind == ListKind::Dnsbl) {
    list.entries.push_back({source.text, at(source.column + 1), line_});
  }
  return list;
}

// Inline entries are raw text between { and }, split at commas (not inside
// "..." or /.../), so CIDRs (10.0.0.0/8) and regexes need no quoting. A regex
// entry may be written /re/flags; quotes around an entry are removed.
bool LineParser::parseInlineEntries(ListStatement& list) {
  take();  // {
  std::string_view rest = lexer_.rest();
  std::size_t base = static_cast<std::size_t>(lexer_.column() - 1);
  // The list ends at the first '}' followed by nothing or a # comment (which
  // may hold braces itself); a regex entry may contain '}' too ("/a{2}/").
  // Failing that, the last '}', so trailing garbage is reported as such.
  std::size_t close = std::string_view::npos;
  for (std::size_t i = rest.find('}'); i != std::string_view::npos; i = rest.find('}', i + 1)) {
    std::size_t after = rest.find_first_not_of(" \t", i + 1);
    if (after == std::string_view::npos || rest[after] == '#') {
      close = i;
      break;
    }
  }
  if (close == std::string_view::npos) {
    close = rest.rfind('}');
  }
  if (close == std::string_view::npos) {
    error(static_cast<int>(base), "missing '}' at the end of the list");
    failed_ = true;
    return false;
  }
  std::size_t pos = 0;
  while (pos <= close) {
    std::size_t b = pos;
    while (b < close && std::isspace(static_cast<unsigned char>(rest[b]))) {
      ++b;
    }
    // A "quoted" or /regex/ entry may hold commas ("a,b", /a{1,3}/): the
    // separator is looked for after its closing delimiter.
    std::size_t from = b;
    if (b < close && (rest[b] == '"' || rest[b] == '/')) {
      for (from = b + 1; from < close && rest[from] != rest[b];) {
        from += rest[from] == '\\' ? 2 : 1;
      }
    }
    std::size_t comma = rest.find(',', std::min(from, close));
    std::size_t end = (comma == std::string_view::npos || comma > close) ? close : comma;
    std::size_t e = end;
    while (e > b && std::isspace(static_cast<unsigned char>(rest[e - 1]))) {
      --e;
    }
    std::string entry(rest.substr(b, e - b));
    if (entry.size() >= 2 && entry.front() == '"' && entry.back() == '"') {
      entry = entry.substr(1, entry.size() - 2);
    }
    if (!entry.empty()) {
      list.entries.push_back({entry, at(static_cast<int>(base + b + 1)), line_});
    } else if (end != close || !list.entries.empty()) {
      error(static_cast<int>(base + b + 1), "empty list entry");
    }
    pos = end + 1;
  }
  lexer_.skipTo(base + close + 1);
  return true;
}

Statement LineParser::parseRule() {
  Token id = take();
  if (failed_) {
    return {};
  }
  if (id.kind != TokenKind::Word || !isIdentifier(id.text)) {
    error(id.column, "expected a rule id (letters, digits, '-', '_', '.') after 'rule'");
    failed_ = true;
    return {};
  }
  Rule rule;
  rule.id = id.text;
  rule.where = at(id.column);
  rule.sourceLine = line_;
  if (!expectWord("on", "after the rule id")) {
    return {};
  }
  Token stage = take();
  auto parsedStage = stage.kind == TokenKind::Word ? parseStage(stage.text) : std::nullopt;
  if (failed_ || !parsedStage) {
    if (!failed_) {
      error(stage.column,
            "unknown stage '" + stage.text + "' (expected connect, helo, mail, rcpt or data)");
    }
    failed_ = true;
    return {};
  }
  rule.stage = stage_ = *parsedStage;
  if (!expectWord("when", "after the stage")) {
    return {};
  }
  rule.condition = parseOr(0);
  if (failed_ || !rule.condition || !expectWord("then", "after the condition")) {
    if (!failed_) {
      failed_ = true;
    }
    return {};
  }
  if (!parseAction(rule)) {
    return {};
  }
  return rule;
}

bool LineParser::parseAction(Rule& rule) {
  Token action = take();
  if (failed_) {
    return false;
  }
  if (isWord(action, "monitor")) {
    rule.monitor = true;
    action = take();
    if (!failed_ && !isWord(action, "reject") && !isWord(action, "tempfail")) {
      error(action.column, "expected 'reject' or 'tempfail' after 'monitor'");
      failed_ = true;
    }
    if (failed_) {
      return false;
    }
  }
  if (isWord(action, "accept")) {
    rule.action = RuleAction::Accept;
    return true;
  }
  if (isWord(action, "score")) {
    rule.action = RuleAction::Score;
    Token n = take();
    auto value = n.kind == TokenKind::Word ? parseNumber(n.text) : std::nullopt;
    if (failed_ || !value) {
      if (!failed_) {
        error(n.column, "expected a number after 'score', e.g. score 2.5 or score -5");
      }
      failed_ = true;
      return false;
    }
    rule.score = *value;
    return true;
  }
  if (isWord(action, "reject") || isWord(action, "tempfail")) {
    rule.action = action.text == "reject" ? RuleAction::Reject : RuleAction::Tempfail;
    rule.reply = parseReply(rule.action, rule.stage);
    return !failed_;
  }
  error(action.column, "unknown action '" + action.text +
                           "' (expected accept, tempfail, reject, score N or monitor)");
  failed_ = true;
  return false;
}

std::optional<ReplyTemplate> LineParser::parseReply(RuleAction action, Stage) {
  if (peek().kind != TokenKind::String) {
    return std::nullopt;
  }
  Token text = take();
  std::string message;
  std::size_t offset = 0;
  auto reply = ReplyTemplate::parse(text.text, message, offset);
  int column = columnInString(line_, text.column, offset);
  if (!reply) {
    error(column, message);
    return std::nullopt;
  }
  int wanted = action == RuleAction::Reject ? 5 : 4;
  if (reply->code() / 100 != wanted) {
    error(text.column + 1, std::string(action == RuleAction::Reject ? "a reject" : "a tempfail") +
                               " reply must be a " + std::to_string(wanted) + "xx code, not " +
                               std::to_string(reply->code()));
    return std::nullopt;
  }
  return reply;
}

Statement LineParser::parseThreshold() {
  Token action = take();
  if (failed_) {
    return {};
  }
  Threshold t;
  t.where = at(action.column);
  t.sourceLine = line_;
  if (isWord(action, "reject") || isWord(action, "tempfail")) {
    t.action = action.text == "reject" ? RuleAction::Reject : RuleAction::Tempfail;
  } else {
    error(action.column, "expected 'tempfail' or 'reject' after 'threshold'");
    failed_ = true;
    return {};
  }
  if (!expectWord("at", "after the threshold's action")) {
    return {};
  }
  Token n = take();
  auto value = n.kind == TokenKind::Word ? parseNumber(n.text) : std::nullopt;
  if (failed_ || !value) {
    if (!failed_) {
      error(n.column, "expected a score after 'at'");
    }
    failed_ = true;
    return {};
  }
  t.at = *value;
  t.reply = parseReply(t.action, Stage::Data);
  if (failed_) {
    return {};
  }
  return t;
}

std::unique_ptr<Condition> LineParser::parseOr(int depth) {
  auto left = parseAnd(depth);
  while (left && !failed_ && isWord(peek(), "or")) {
    Token op = take();
    auto right = parseAnd(depth);
    if (!right) {
      return nullptr;
    }
    auto node = std::make_unique<Condition>();
    node->kind = ConditionKind::Or;
    node->where = at(op.column);
    node->left = std::move(left);
    node->right = std::move(right);
    left = std::move(node);
  }
  if (failed_) {
    return nullptr;
  }
  return left;
}

std::unique_ptr<Condition> LineParser::parseAnd(int depth) {
  auto left = parseUnary(depth);
  while (left && !failed_ && isWord(peek(), "and")) {
    Token op = take();
    auto right = parseUnary(depth);
    if (!right) {
      return nullptr;
    }
    auto node = std::make_unique<Condition>();
    node->kind = ConditionKind::And;
    node->where = at(op.column);
    node->left = std::move(left);
    node->right = std::move(right);
    left = std::move(node);
  }
  if (failed_) {
    return nullptr;
  }
  return left;
}

std::unique_ptr<Condition> LineParser::parseUnary(int depth) {
  if (depth > kMaxConditionDepth) {
    error(peek().column, "condition nested too deeply (more than " +
                             std::to_string(kMaxConditionDepth) + " levels)");
    failed_ = true;
    return nullptr;
  }
  const Token& t = peek();
  if (isWord(t, "not")) {
    Token op = take();
    auto inner = parseUnary(depth + 1);
    if (!inner) {
      return nullptr;
    }
    auto node = std::make_unique<Condition>();
    node->kind = ConditionKind::Not;
    node->where = at(op.column);
    node->left = std::move(inner);
    return node;
  }
  if (t.kind == TokenKind::LParen) {
    take();
    auto inner = parseOr(depth + 1);
    if (!inner) {
      return nullptr;
    }
    Token close = take();
    if (!failed_ && close.kind != TokenKind::RParen) {
      error(close.column, "expected ')'");
      failed_ = true;
    }
    if (failed_) {
      return nullptr;
    }
    return inner;
  }
  return parseLeaf();
}

std::unique_ptr<Condition> LineParser::parseLeaf() {
  Token name = take();
  if (failed_) {
    return nullptr;
  }
  if (name.kind != TokenKind::Word) {
    error(name.column, name.kind == TokenKind::End
                           ? "expected a condition, found end of line"
                           : "expected a field name, found '" + name.text + "'");
    failed_ = true;
    return nullptr;
  }
  auto leaf = std::make_unique<Condition>();
  leaf->where = at(name.column);
  auto field = lookupField(name.text);
  bool fieldOk = field.has_value();
  if (!field) {
    error(name.column, "unknown field '" + name.text + "'");
  } else if (field->info->knownAt > stage_) {
    error(name.column, "field '" + field->display() + "' is not known at stage " +
                           std::string(toString(stage_)) + " (it is known from stage " +
                           std::string(toString(field->info->knownAt)) + " on)");
    fieldOk = false;
  }
  if (fieldOk) {
    leaf->field = *field;
  }
  const Token& next = peek();
  bool negate = false;
  if (isWord(next, "not")) {
    // `field not in @list`; a bare `not` here would start nothing valid.
    take();
    if (!isWord(peek(), "in")) {
      error(peek().column, "expected 'in' after 'not'");
      failed_ = true;
      return nullptr;
    }
    negate = true;
  }
  const Token& op = peek();
  if (op.kind != TokenKind::Op && !isWord(op, "in")) {
    leaf->kind = ConditionKind::Truthy;
    return leaf;
  }
  Token opToken = take();
  if (!parseOperand(*leaf, opToken, negate)) {
    if (failed_) {
      return nullptr;
    }
    return leaf;
  }
  return leaf;
}

bool LineParser::parseOperand(Condition& leaf, const Token& op, bool negate) {
  bool known = leaf.field.info != nullptr;
  FieldType type = known ? leaf.field.info->type : FieldType::Text;
  if (op.text == "in") {
    leaf.negate = negate;
    if (peek().kind == TokenKind::LBrace) {
      leaf.kind = ConditionKind::InSet;
      if (known && type != FieldType::Text && type != FieldType::TextList &&
          type != FieldType::AuthResult) {
        error(op.column, "'in { ... }' needs a text field; for " + leaf.field.display() +
                             " use a list (list NAME cidr ...)");
      }
      return parseSet(leaf);
    }
    Token ref = take();
    if (failed_ || ref.kind != TokenKind::ListRef) {
      if (!failed_) {
        error(ref.column, "expected @listname or { ... } after 'in'");
      }
      failed_ = true;
      return false;
    }
    leaf.kind = ConditionKind::InList;
    leaf.listName = ref.text;
    leaf.qualifier = ref.flags;
    leaf.listWhere = at(ref.column);
    return true;
  }
  leaf.negate = op.text == "!=" || op.text == "!~";
  Token value = take();
  if (failed_) {
    return false;
  }
  if (op.text == "~" || op.text == "!~") {
    leaf.kind = ConditionKind::Regex;
    if (known && (type == FieldType::Number || type == FieldType::Bool)) {
      error(op.column, "'" + op.text + "' needs a text field; " + leaf.field.display() + " is " +
                           std::string(fieldTypeName(type)));
    }
    return parseRegexLiteral(leaf, value);
  }
  leaf.kind = ConditionKind::Compare;
  if (op.text == "<" || op.text == "<=" || op.text == ">" || op.text == ">=") {
    leaf.op = op.text == "<"    ? CompareOp::Lt
              : op.text == "<=" ? CompareOp::Le
              : op.text == ">"  ? CompareOp::Gt
                                : CompareOp::Ge;
    if (known && type != FieldType::Number) {
      error(op.column, "'" + op.text + "' compares numbers; " + leaf.field.display() + " is " +
                           std::string(fieldTypeName(type)));
    }
  }
  return parseCompareLiteral(leaf, value);
}

bool LineParser::parseRegexLiteral(Condition& leaf, const Token& value) {
  if (value.kind == TokenKind::ListRef) {
    leaf.listName = value.text;
    leaf.qualifier = value.flags;  // only to be refused: regex lists take none
    leaf.listWhere = at(value.column);
    return true;
  }
  if (value.kind != TokenKind::Regex) {
    error(value.column, "expected a regex /.../ or a regex list @name");
    failed_ = true;
    return false;
  }
  std::string message;
  auto pattern = regexWithFlags(value.text, value.flags, message);
  if (!pattern) {
    error(value.flagsColumn, message);
    return false;
  }
  std::string re2Error = checkRegex(*pattern);
  if (!re2Error.empty()) {
    error(value.column, "bad regex: " + re2Error);
    return false;
  }
  leaf.patterns.push_back({*pattern, at(value.column)});
  return true;
}

bool LineParser::parseCompareLiteral(Condition& leaf, const Token& value) {
  if (value.kind != TokenKind::Word && value.kind != TokenKind::String) {
    error(value.column, value.kind == TokenKind::End
                            ? "expected a value, found end of line"
                            : "expected a value, found '" + value.text + "'");
    failed_ = true;
    return false;
  }
  if (leaf.field.info == nullptr) {
    return true;
  }
  const FieldInfo& info = *leaf.field.info;
  switch (info.type) {
    case FieldType::Number: {
      auto n = parseNumber(value.text);
      if (!n) {
        error(value.column, leaf.field.display() + " is a number; '" + value.text + "' is not");
        return false;
      }
      leaf.literal = *n;
      return true;
    }
    case FieldType::Bool:
      if (value.text != "true" && value.text != "false") {
        error(value.column, leaf.field.display() + " is true or false, not '" + value.text + "'");
        return false;
      }
      leaf.literal = value.text == "true";
      return true;
    case FieldType::Ip: {
      auto ip = IpAddress::parse(value.text);
      if (!ip) {
        error(value.column,
              "'" + value.text + "' is not an IP address (for networks use a cidr list)");
        return false;
      }
      leaf.literal = *ip;
      return true;
    }
    case FieldType::AuthResult: {
      if (auto message = resultWordError(info, value.text)) {
        error(value.column, *message);
        return false;
      }
      leaf.literal = asciiLower(value.text);
      return true;
    }
    case FieldType::Text:
    case FieldType::TextList:
      leaf.literal = asciiLower(value.text);
      return true;
  }
  return true;
}

bool LineParser::parseSet(Condition& leaf) {
  take();  // {
  while (!failed_) {
    Token item = take();
    if (failed_) {
      return false;
    }
    if (item.kind == TokenKind::RBrace && leaf.set.empty()) {
      return true;
    }
    if (item.kind != TokenKind::Word && item.kind != TokenKind::String) {
      error(item.column, "expected a word or \"string\" in { ... }");
      failed_ = true;
      return false;
    }
    if (leaf.field.info != nullptr && leaf.field.info->type == FieldType::AuthResult) {
      if (auto message = resultWordError(*leaf.field.info, item.text)) {
        error(item.column, *message);  // a misspelt result would silently never match
      }
    }
    leaf.set.push_back(asciiLower(item.text));
    Token sep = take();
    if (sep.kind == TokenKind::RBrace) {
      return true;
    }
    if (!failed_ && sep.kind != TokenKind::Comma) {
      error(sep.column, "expected ',' or '}'");
      failed_ = true;
    }
  }
  return false;
}

}  // namespace smtpgate::rules
