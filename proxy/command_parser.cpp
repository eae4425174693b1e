#include "proxy/command_parser.h"

#include <algorithm>
#include <array>
#include <charconv>

#include "proxy/xtext.h"

namespace smtpgate::proxy {

namespace {

/// What a verb's argument may be.
enum class ArgRule { None, Optional, Required, Mail, Rcpt, Bdat };

struct VerbSpec {
  std::string_view name;
  Verb verb;
  ArgRule arg;
};

// In Verb order (checked below). QUIT ignores arguments, as Postfix does.
constexpr std::array kVerbs = {
    VerbSpec{"HELO", Verb::Helo, ArgRule::Required},
    VerbSpec{"EHLO", Verb::Ehlo, ArgRule::Required},
    VerbSpec{"MAIL", Verb::Mail, ArgRule::Mail},
    VerbSpec{"RCPT", Verb::Rcpt, ArgRule::Rcpt},
    VerbSpec{"DATA", Verb::Data, ArgRule::None},
    VerbSpec{"BDAT", Verb::Bdat, ArgRule::Bdat},
    VerbSpec{"RSET", Verb::Rset, ArgRule::None},
    VerbSpec{"NOOP", Verb::Noop, ArgRule::Optional},
    VerbSpec{"QUIT", Verb::Quit, ArgRule::Optional},
    VerbSpec{"HELP", Verb::Help, ArgRule::Optional},
    VerbSpec{"VRFY", Verb::Vrfy, ArgRule::Required},
    VerbSpec{"EXPN", Verb::Expn, ArgRule::Required},
    VerbSpec{"STARTTLS", Verb::StartTls, ArgRule::None},
    VerbSpec{"AUTH", Verb::Auth, ArgRule::Required},
    VerbSpec{"XCLIENT", Verb::Xclient, ArgRule::Required},
    VerbSpec{"XFORWARD", Verb::Xforward, ArgRule::Required},
};

constexpr bool verbsInEnumOrder() {
  for (std::size_t i = 0; i < kVerbs.size(); ++i) {
    if (static_cast<std::size_t>(kVerbs[i].verb) != i) {
      return false;
    }
  }
  return kVerbs.size() == static_cast<std::size_t>(Verb::Unknown);
}
static_assert(verbsInEnumOrder(), "kVerbs must list every Verb in enum order");

/// How a parameter's value is checked.
enum class ValueRule { NoValue, Size, Body, Ret, Notify, Orcpt, Xtext };

struct ParamSpec {
  std::string_view keyword;
  Verb verb;
  ValueRule rule;
};

// RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 3461 RET/ENVID/NOTIFY/
// ORCPT, RFC 4954 AUTH: what Postfix implements behind us.
constexpr std::array kParams = {
    ParamSpec{"SIZE", Verb::Mail, ValueRule::Size},
    ParamSpec{"BODY", Verb::Mail, ValueRule::Body},
    ParamSpec{"SMTPUTF8", Verb::Mail, ValueRule::NoValue},
    ParamSpec{"RET", Verb::Mail, ValueRule::Ret},
    ParamSpec{"ENVID", Verb::Mail, ValueRule::Xtext},
    ParamSpec{"AUTH", Verb::Mail, ValueRule::Xtext},
    ParamSpec{"NOTIFY", Verb::Rcpt, ValueRule::Notify},
    ParamSpec{"ORCPT", Verb::Rcpt, ValueRule::Orcpt},
};

struct ReplySpec {
  SyntaxError error;
  int code;
  rules::EnhancedStatus esc;
  std::string_view text;
};

// One table for every syntax reply (STYLE.md G11), in SyntaxError order.
// Wording follows Postfix where it has one, so admins find it in both logs.
constexpr std::array kReplies = {
    ReplySpec{SyntaxError::None, 250, {2, 0, 0}, "Ok"},
    ReplySpec{SyntaxError::EmptyCommand, 500, {5, 5, 2}, "Error: bad syntax"},
    // 500, not Postfix's 502: RFC 5321 4.2.4 has 500 for "command unrecognized"
    // and keeps 502 for a known command the server does not offer (EXPN here).
    ReplySpec{SyntaxError::UnknownCommand, 500, {5, 5, 2}, "Error: command not recognized"},
    ReplySpec{SyntaxError::BadCharacter, 500, {5, 5, 2}, "Error: control character in command"},
    ReplySpec{SyntaxError::MissingArgument, 501, {5, 5, 4}, "Syntax error: argument required"},
    ReplySpec{SyntaxError::UnexpectedArgument, 501, {5, 5, 4}, "Syntax error: no argument allowed"},
    ReplySpec{SyntaxError::MailSyntax, 501, {5, 5, 4}, "Syntax: MAIL FROM:<address>"},
    ReplySpec{SyntaxError::RcptSyntax, 501, {5, 5, 4}, "Syntax: RCPT TO:<address>"},
    ReplySpec{SyntaxError::BadSenderAddress, 501, {5, 1, 7}, "Bad sender address syntax"},
    ReplySpec{SyntaxError::SenderTooLong, 501, {5, 1, 7}, "Sender address too long"},
    ReplySpec{SyntaxError::BadRecipientAddress, 501, {5, 1, 3}, "Bad recipient address syntax"},
    ReplySpec{SyntaxError::RecipientTooLong, 501, {5, 1, 3}, "Recipient address too long"},
    ReplySpec{SyntaxError::SenderNeedsSmtputf8,
              553,
              {5, 6, 7},
              "Non-ASCII sender address requires SMTPUTF8"},
    ReplySpec{SyntaxError::RecipientNeedsSmtputf8,
              553,
              {5, 6, 7},
              "Non-ASCII recipient address requires SMTPUTF8"},
    ReplySpec{SyntaxError::ParameterSyntax, 501, {5, 5, 4}, "Syntax error in parameters"},
    ReplySpec{SyntaxError::DuplicateParameter, 501, {5, 5, 4}, "Duplicate parameter"},
    ReplySpec{SyntaxError::BadSizeValue, 501, {5, 5, 4}, "Bad message size syntax"},
    ReplySpec{SyntaxError::BadBodyValue, 501, {5, 5, 4}, "Bad BODY parameter"},
    ReplySpec{SyntaxError::UnsupportedParameter, 555, {5, 5, 4}, "Unsupported parameter"},
    ReplySpec{SyntaxError::BinaryMimeUnsupported,
              555,
              {5, 5, 4},
              "Unsupported parameter BODY=BINARYMIME"},
    // 521: the session ends after it (Postfix's reply and behaviour; 521 is the
    // code of a server that will not go on, RFC 7504): with the chunk's length
    // in doubt, so is where the next command starts.
    ReplySpec{SyntaxError::BdatSyntax, 521, {5, 5, 4}, "Syntax: BDAT count [LAST]"},
};

constexpr bool repliesInEnumOrder() {
  for (std::size_t i = 0; i < kReplies.size(); ++i) {
    if (static_cast<std::size_t>(kReplies[i].error) != i) {
      return false;
    }
  }
  return kReplies.size() == static_cast<std::size_t>(SyntaxError::BdatSyntax) + 1;
}
static_assert(repliesInEnumOrder(), "kReplies must list every SyntaxError in enum order");

bool isBlank(char c) {
  return c == ' ' || c == '\t';
}

char upper(char c) {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return upper(x) == upper(y); });
}

std::string toUpper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), upper);
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && isBlank(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && isBlank(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

std::string_view skipBlanks(std::string_view s) {
  while (!s.empty() && isBlank(s.front())) {
    s.remove_prefix(1);
  }
  return s;
}

/// Splits off the first blank-separated word.
std::string_view nextWord(std::string_view& s) {
  s = skipBlanks(s);
  std::size_t end = 0;
  while (end < s.size() && !isBlank(s[end])) {
    ++end;
  }
  std::string_view word = s.substr(0, end);
  s.remove_prefix(end);
  return word;
}

bool hasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return (c < 0x20 && c != '\t') || c == 0x7f;
  });
}

std::optional<std::uint64_t> parseDigits(std::string_view s) {
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

const VerbSpec* findVerb(std::string_view word) {
  for (const auto& spec : kVerbs) {
    if (iequals(spec.name, word)) {
      return &spec;
    }
  }
  return nullptr;
}

const ParamSpec* findParam(std::string_view keyword, Verb verb) {
  for (const auto& spec : kParams) {
    if (spec.verb == verb && spec.keyword == keyword) {
      return &spec;
    }
  }
  return nullptr;
}

/// esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
bool isKeyword(std::string_view s) {
  auto alnum = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
  };
  return !s.empty() && alnum(s[0]) &&
         std::all_of(s.begin(), s.end(), [&](char c) { return alnum(c) || c == '-'; });
}

/// esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 (RFC 6531).
bool isValue(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      std::size_t n = utf8SequenceLength(s, i);
      if (n == 0) {
        return false;
      }
      i += n;
    } else if (c >= 33 && c <= 126 && c != '=') {
      ++i;
    } else {
      return false;
    }
  }
  return !s.empty();
}

/// NOTIFY = "NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" )  (RFC 3461 4.1)
bool isNotifyValue(std::string_view v) {
  if (iequals(v, "NEVER")) {
    return true;
  }
  while (true) {
    std::size_t comma = std::min(v.find(','), v.size());
    std::string_view item = v.substr(0, comma);
    if (!iequals(item, "SUCCESS") && !iequals(item, "FAILURE") && !iequals(item, "DELAY")) {
      return false;
    }
    if (comma == v.size()) {
      return true;
    }
    v.remove_prefix(comma + 1);
  }
}

/// ORCPT = addr-type ";" xtext  (RFC 3461 4.2)
bool isOrcptValue(std::string_view v) {
  std::size_t semi = v.find(';');
  return semi != std::string_view::npos && isKeyword(v.substr(0, semi)) &&
         xtextDecode(v.substr(semi + 1)).has_value();
}

SyntaxError checkValue(const ParamSpec& spec, const std::optional<std::string>& value,
                       ParsedCommand& cmd, const CommandOptions& options) {
  if (spec.rule == ValueRule::NoValue) {
    if (value) {
      return SyntaxError::ParameterSyntax;
    }
    cmd.smtputf8 = true;  // SMTPUTF8 is the only value-less parameter
    return SyntaxError::None;
  }
  if (!value) {
    return spec.rule == ValueRule::Size   ? SyntaxError::BadSizeValue
           : spec.rule == ValueRule::Body ? SyntaxError::BadBodyValue
                                          : SyntaxError::ParameterSyntax;
  }
  const std::string& v = *value;
  switch (spec.rule) {
    case ValueRule::Size:
      cmd.size = parseDigits(v);
      return cmd.size ? SyntaxError::None : SyntaxError::BadSizeValue;
    case ValueRule::Body:
      if (iequals(v, "7BIT") || iequals(v, "8BITMIME")) {
        cmd.body = iequals(v, "7BIT") ? BodyType::SevenBit : BodyType::EightBitMime;
        return SyntaxError::None;
      }
      if (iequals(v, "BINARYMIME")) {
        cmd.body = BodyType::BinaryMime;
        return options.chunking ? SyntaxError::None : SyntaxError::BinaryMimeUnsupported;
      }
      return SyntaxError::BadBodyValue;
    case ValueRule::Ret:
      return iequals(v, "FULL") || iequals(v, "HDRS") ? SyntaxError::None
                                                      : SyntaxError::ParameterSyntax;
    case ValueRule::Notify:
      return isNotifyValue(v) ? SyntaxError::None : SyntaxError::ParameterSyntax;
    case ValueRule::Orcpt:
      return isOrcptValue(v) ? SyntaxError::None : SyntaxError::ParameterSyntax;
    case ValueRule::Xtext:
      return xtextDecode(v) ? SyntaxError::None : SyntaxError::ParameterSyntax;
    case ValueRule::NoValue:
      break;
  }
  return SyntaxError::None;
}

/// One "keyword[=value]" token of MAIL or RCPT.
SyntaxError parseParam(std::string_view token, ParsedCommand& cmd, const CommandOptions& options) {
  std::size_t eq = token.find('=');
  std::string_view keyword = token.substr(0, eq);
  std::optional<std::string> value;
  if (eq != std::string_view::npos) {
    value = std::string(token.substr(eq + 1));
  }
  if (!isKeyword(keyword) || (value && !isValue(*value))) {
    return SyntaxError::ParameterSyntax;
  }
  std::string upperKeyword = toUpper(keyword);
  for (const auto& p : cmd.params) {
    if (p.keyword == upperKeyword) {
      return SyntaxError::DuplicateParameter;
    }
  }
  const ParamSpec* spec = findParam(upperKeyword, cmd.verb);
  if (spec == nullptr) {
    return SyntaxError::UnsupportedParameter;
  }
  if (SyntaxError e = checkValue(*spec, value, cmd, options); e != SyntaxError::None) {
    return e;
  }
  cmd.params.push_back({std::move(upperKeyword), std::move(value)});
  return SyntaxError::None;
}

SyntaxError pathError(AddressError e, bool mail) {
  bool tooLong = e == AddressError::PathTooLong || e == AddressError::LocalPartTooLong ||
                 e == AddressError::DomainTooLong;
  if (mail) {
    return tooLong ? SyntaxError::SenderTooLong : SyntaxError::BadSenderAddress;
  }
  return tooLong ? SyntaxError::RecipientTooLong : SyntaxError::BadRecipientAddress;
}

/// "FROM:<path> params" or "TO:<path> params".
SyntaxError parseMailRcpt(std::string_view arg, ParsedCommand& cmd, const CommandOptions& options) {
  bool mail = cmd.verb == Verb::Mail;
  SyntaxError shape = mail ? SyntaxError::MailSyntax : SyntaxError::RcptSyntax;
  std::string_view prefix = mail ? "FROM:" : "TO:";
  if (arg.size() < prefix.size() || !iequals(arg.substr(0, prefix.size()), prefix)) {
    return shape;
  }
  // Postfix accepts "MAIL FROM: <a@b>"; a path without "<>" it does not.
  std::string_view rest = skipBlanks(arg.substr(prefix.size()));
  if (rest.empty() || rest.front() != '<') {
    return shape;
  }
  PathOptions pathOptions{mail, !mail, options.addressLimits};
  PathParse parsed = parsePath(rest, pathOptions);
  if (!parsed.ok()) {
    return pathError(parsed.error, mail);
  }
  cmd.path = std::move(parsed.path);
  rest.remove_prefix(parsed.consumed);
  if (!rest.empty() && !isBlank(rest.front())) {
    return shape;
  }
  for (std::string_view token = nextWord(rest); !token.empty(); token = nextWord(rest)) {
    if (SyntaxError e = parseParam(token, cmd, options); e != SyntaxError::None) {
      return e;
    }
  }
  if (mail && cmd.path.needsSmtputf8 && !cmd.smtputf8) {
    return SyntaxError::SenderNeedsSmtputf8;
  }
  return SyntaxError::None;
}

/// "size [LAST]" (RFC 3030).
SyntaxError parseBdat(std::string_view arg, ParsedCommand& cmd) {
  std::string_view size = nextWord(arg);
  std::string_view last = nextWord(arg);
  std::optional<std::uint64_t> n = parseDigits(size);
  if (!n || (!last.empty() && !iequals(last, "LAST")) || !skipBlanks(arg).empty()) {
    return SyntaxError::BdatSyntax;
  }
  cmd.chunkSize = *n;
  cmd.lastChunk = !last.empty();
  return SyntaxError::None;
}

SyntaxError checkArgument(const VerbSpec& spec, std::string_view arg, ParsedCommand& cmd,
                          const CommandOptions& options) {
  switch (spec.arg) {
    case ArgRule::None:
      return arg.empty() ? SyntaxError::None : SyntaxError::UnexpectedArgument;
    case ArgRule::Optional:
      return SyntaxError::None;
    case ArgRule::Required:
      return arg.empty() ? SyntaxError::MissingArgument : SyntaxError::None;
    case ArgRule::Mail:
    case ArgRule::Rcpt:
      return parseMailRcpt(arg, cmd, options);
    case ArgRule::Bdat:
      return parseBdat(arg, cmd);
  }
  return SyntaxError::None;
}

}  // namespace

std::string_view toString(Verb verb) {
  auto i = static_cast<std::size_t>(verb);
  return i < kVerbs.size() ? kVerbs[i].name : std::string_view("UNKNOWN");
}

ParsedCommand parseCommand(std::string_view line, const CommandOptions& options) {
  ParsedCommand cmd;
  std::string_view rest = trim(line);
  std::string_view word = nextWord(rest);
  const VerbSpec* spec = findVerb(word);
  cmd.verb = spec != nullptr ? spec->verb : Verb::Unknown;
  if (hasControl(line)) {
    cmd.error = SyntaxError::BadCharacter;
    return cmd;
  }
  if (word.empty()) {
    cmd.error = SyntaxError::EmptyCommand;
    return cmd;
  }
  if (spec == nullptr) {
    cmd.argument = std::string(trim(line));
    cmd.error = SyntaxError::UnknownCommand;
    return cmd;
  }
  rest = skipBlanks(rest);
  cmd.argument = std::string(rest);
  cmd.error = checkArgument(*spec, rest, cmd, options);
  return cmd;
}

policies::Reply replyFor(SyntaxError error) {
  const ReplySpec& spec = kReplies[static_cast<std::size_t>(error)];
  return {spec.code, spec.esc, std::string(spec.text)};
}

}  // namespace smtpgate::proxy
