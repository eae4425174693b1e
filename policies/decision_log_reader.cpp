#include "policies/decision_log_reader.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>

#include "policies/cidr_list.h"
#include "rules/stage.h"
#include "rules/value.h"

namespace smtpgate::policies {

namespace {

// ---------------------------------------------------------------------------
// The keys of a decision line (decision_log.h), in the order the writer puts
// them; bit i of LogFieldMask is kKeys[i].

enum class KeyKind { String, StringList, Number, Count };

struct KeySpec {
  std::string_view name;
  KeyKind kind;
};

constexpr std::array<KeySpec, 28> kKeys = {{
    {"time", KeyKind::String},
    {"session", KeyKind::String},
    {"client_ip", KeyKind::String},
    {"client_ptr", KeyKind::String},
    {"helo", KeyKind::String},
    {"sender", KeyKind::String},
    {"rcpts", KeyKind::StringList},
    {"stage", KeyKind::String},
    {"action", KeyKind::String},
    {"rule", KeyKind::String},
    {"rule_where", KeyKind::String},
    {"reply", KeyKind::String},
    {"score", KeyKind::Number},
    {"spf", KeyKind::String},
    {"dkim", KeyKind::String},
    {"dmarc", KeyKind::String},
    {"message_id", KeyKind::String},
    {"subject", KeyKind::String},
    {"queue_id", KeyKind::String},
    {"ruleset", KeyKind::String},
    {"frontend", KeyKind::String},
    {"score_rules", KeyKind::StringList},
    {"invalid_utf8", KeyKind::StringList},
    {"truncated", KeyKind::StringList},
    // Added later; the writer puts them after score_rules (findKey's hint misses
    // them once, then finds them by search).
    {"transaction", KeyKind::Count},
    {"rcpts_passed", KeyKind::StringList},
    {"rcpts_backend_refused", KeyKind::StringList},
    {"facts", KeyKind::StringList},
}};
static_assert(kAllLogFields == (1U << kKeys.size()) - 1);

/// Index of `key` in kKeys, or -1. `hint` is where the writer's order says
/// the key should be; it is tried first, so a well-formed line costs one
/// comparison per key.
int findKey(std::string_view key, std::size_t hint) {
  if (hint < kKeys.size() && kKeys[hint].name == key) {
    return static_cast<int>(hint);
  }
  for (std::size_t i = 0; i < kKeys.size(); ++i) {
    if (kKeys[i].name == key) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

std::string* stringSlot(LogEntry& e, std::size_t index) {
  DecisionRecord& r = e.record;
  std::string* slots[] = {
      &e.timeText, &r.session, &r.clientIp,  &r.clientPtr, &r.helo,    &r.sender,      nullptr,
      &r.stage,    &r.action,  &r.rule,      &r.ruleWhere, &r.reply,   nullptr,        &r.spf,
      &r.dkim,     &r.dmarc,   &r.messageId, &r.subject,   &r.queueId, &r.rulesetHash, &r.frontend,
      nullptr,     nullptr,    nullptr,      nullptr,      nullptr,    nullptr,        nullptr};
  static_assert(std::size(slots) == kKeys.size());
  return slots[index];
}

std::vector<std::string>* listSlot(LogEntry& e, std::size_t index) {
  switch (index) {
    case 6:
      return &e.record.rcpts;
    case 21:
      return &e.record.scoreRules;
    case 22:
      return &e.invalidUtf8;
    case 23:
      return &e.truncated;
    case 25:
      return &e.record.rcptsPassed;
    case 26:
      return &e.record.rcptsBackendRefused;
    case 27:
      return &e.record.facts;
    default:
      return nullptr;
  }
}

bool isJsonSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

void appendUtf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// ---------------------------------------------------------------------------
// LineScanner: one pass over one line. Every read checks p_ < end_; any
// surprise returns false and the caller hands the line to nlohmann::json.

class LineScanner {
 public:
  LineScanner(std::string_view line, LogEntry& entry, LogFieldMask fields)
      : p_(line.data()), end_(line.data() + line.size()), entry_(entry), fields_(fields) {}

  bool run() {
    skipSpace();
    if (!eat('{')) {
      return false;
    }
    skipSpace();
    if (eat('}')) {
      return atEnd();
    }
    std::size_t hint = 0;
    for (;;) {
      std::string_view key;
      if (!readKey(key)) {
        return false;
      }
      skipSpace();
      if (!eat(':')) {
        return false;
      }
      skipSpace();
      const int index = findKey(key, hint);
      hint = index < 0 ? hint : static_cast<std::size_t>(index) + 1;
      if (!(index < 0 ? skipValue() : readKnown(static_cast<std::size_t>(index)))) {
        return false;
      }
      skipSpace();
      if (eat('}')) {
        return atEnd();
      }
      if (!eat(',')) {
        return false;
      }
      skipSpace();
    }
  }

 private:
  void skipSpace() {
    while (p_ < end_ && isJsonSpace(*p_)) {
      ++p_;
    }
  }
  bool eat(char c) {
    if (p_ < end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  bool atEnd() {
    skipSpace();
    return p_ == end_;
  }

  // Keys with escapes or non-ASCII bytes are legal but never written by us:
  // leave them to the full parser rather than decode them here.
  bool readKey(std::string_view& key) {
    if (!eat('"')) {
      return false;
    }
    const char* start = p_;
    while (p_ < end_ && *p_ != '"') {
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '\\' || c < 0x20 || c >= 0x80) {
        return false;
      }
      ++p_;
    }
    if (p_ == end_) {
      return false;
    }
    key = std::string_view(start, static_cast<std::size_t>(p_ - start));
    ++p_;
    return true;
  }

  bool readKnown(std::size_t index) {
    const bool wanted = index == 0 || (fields_ & (1U << index)) != 0;
    switch (kKeys[index].kind) {
      case KeyKind::String:
        return p_ < end_ && *p_ == '"' && readString(wanted ? stringSlot(entry_, index) : nullptr);
      case KeyKind::StringList:
        return readStringList(wanted ? listSlot(entry_, index) : nullptr);
      case KeyKind::Number:
        return readScore(wanted);
      case KeyKind::Count:
        return readCount(wanted);
    }
    return false;
  }

  /// `transaction`: a whole number that fits. Anything else (a fraction, an
  /// exponent, a negative or huge number) goes to nlohmann, which refuses it too.
  bool readCount(bool wanted) {
    const char* start = p_;
    if (!skipDigits() || (p_ - start > 1 && *start == '0') ||
        (p_ < end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E'))) {
      return false;
    }
    std::uint32_t n = 0;
    const auto [ptr, ec] = std::from_chars(start, p_, n);
    if (ec != std::errc() || ptr != p_) {
      return false;
    }
    if (wanted) {
      entry_.record.transaction = n;
    }
    return true;
  }

  bool readScore(bool wanted) {
    if (p_ < end_ && *p_ == 'n') {
      if (!readLiteral("null")) {
        return false;
      }
      if (wanted) {
        entry_.record.score = std::numeric_limits<double>::quiet_NaN();
      }
      return true;
    }
    return readNumber(wanted ? &entry_.record.score : nullptr);
  }

  /// At '"'. Decodes into `dest` (replacing it) unless null.
  bool readString(std::string* dest) {
    ++p_;
    if (dest != nullptr) {
      dest->clear();
    }
    for (;;) {
      const char* segment = p_;
      bool nonAscii = false;
      while (p_ < end_) {
        const auto c = static_cast<unsigned char>(*p_);
        if (c == '"' || c == '\\' || c < 0x20) {
          break;
        }
        nonAscii |= c >= 0x80;
        ++p_;
      }
      if (p_ == end_) {
        return false;  // unterminated
      }
      const std::string_view run(segment, static_cast<std::size_t>(p_ - segment));
      // Escapes are ASCII, so a UTF-8 sequence never spans two runs.
      if (nonAscii && !isValidUtf8(run)) {
        return false;
      }
      if (dest != nullptr) {
        dest->append(run);
      }
      if (*p_ == '"') {
        ++p_;
        return true;
      }
      if (*p_ != '\\' || !readEscape(dest)) {
        return false;  // a raw control character, or a bad escape
      }
    }
  }

  /// At '\\'.
  bool readEscape(std::string* dest) {
    ++p_;
    if (p_ == end_) {
      return false;
    }
    const char c = *p_++;
    char plain = 0;
    switch (c) {
      case '"':
      case '\\':
      case '/':
        plain = c;
        break;
      case 'b':
        plain = '\b';
        break;
      case 'f':
        plain = '\f';
        break;
      case 'n':
        plain = '\n';
        break;
      case 'r':
        plain = '\r';
        break;
      case 't':
        plain = '\t';
        break;
      case 'u':
        return readUnicodeEscape(dest);
      default:
        return false;
    }
    if (dest != nullptr) {
      *dest += plain;
    }
    return true;
  }

  bool readHex4(std::uint32_t& out) {
    if (end_ - p_ < 4) {
      return false;
    }
    out = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = *p_++;
      std::uint32_t v = 0;
      if (isDigit(c)) {
        v = static_cast<std::uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v = static_cast<std::uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v = static_cast<std::uint32_t>(c - 'A' + 10);
      } else {
        return false;
      }
      out = out << 4 | v;
    }
    return true;
  }

  /// After "\u": one code point, or a surrogate pair written as two escapes.
  /// A lone surrogate is not a character (nlohmann::json refuses it too).
  bool readUnicodeEscape(std::string* dest) {
    std::uint32_t cp = 0;
    if (!readHex4(cp)) {
      return false;
    }
    if (cp >= 0xDC00 && cp <= 0xDFFF) {
      return false;
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      std::uint32_t low = 0;
      if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') {
        return false;
      }
      p_ += 2;
      if (!readHex4(low) || low < 0xDC00 || low > 0xDFFF) {
        return false;
      }
      cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    if (dest != nullptr) {
      appendUtf8(*dest, cp);
    }
    return true;
  }

  bool skipDigits() {
    const char* start = p_;
    while (p_ < end_ && isDigit(*p_)) {
      ++p_;
    }
    return p_ != start;
  }

  /// JSON's number grammar exactly; converted only if `dest` is set.
  bool readNumber(double* dest) {
    const char* start = p_;
    eat('-');
    if (eat('0')) {
      // a leading zero stands alone
    } else if (p_ == end_ || *p_ < '1' || *p_ > '9' || !skipDigits()) {
      return false;
    }
    if (eat('.') && !skipDigits()) {
      return false;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (!eat('+')) {
        eat('-');
      }
      if (!skipDigits()) {
        return false;
      }
    }
    if (dest == nullptr) {
      return true;
    }
    const auto [ptr, ec] = std::from_chars(start, p_, *dest);
    return ec == std::errc() && ptr == p_;  // out of range: let nlohmann decide
  }

  bool readLiteral(std::string_view word) {
    if (static_cast<std::size_t>(end_ - p_) < word.size() ||
        std::string_view(p_, word.size()) != word) {
      return false;
    }
    p_ += word.size();
    return true;
  }

  /// At '['. Replaces `dest` (unless null) with the strings of the array.
  bool readStringList(std::vector<std::string>* dest) {
    if (!eat('[')) {
      return false;
    }
    if (dest != nullptr) {
      dest->clear();
    }
    skipSpace();
    if (eat(']')) {
      return true;
    }
    for (;;) {
      if (p_ == end_ || *p_ != '"') {
        return false;
      }
      if (!readString(dest != nullptr ? &dest->emplace_back() : nullptr)) {
        return false;
      }
      skipSpace();
      if (eat(']')) {
        return true;
      }
      if (!eat(',')) {
        return false;
      }
      skipSpace();
    }
  }

  bool skipScalar() {
    if (p_ == end_) {
      return false;
    }
    switch (*p_) {
      case '"':
        return readString(nullptr);
      case 't':
        return readLiteral("true");
      case 'f':
        return readLiteral("false");
      case 'n':
        return readLiteral("null");
      default:
        return readNumber(nullptr);
    }
  }

  /// An unknown key's value: a scalar or a flat array of scalars. Deeper
  /// structure goes to the full parser.
  bool skipValue() {
    if (!eat('[')) {
      return skipScalar();
    }
    skipSpace();
    if (eat(']')) {
      return true;
    }
    for (;;) {
      if (!skipScalar()) {
        return false;
      }
      skipSpace();
      if (eat(']')) {
        return true;
      }
      if (!eat(',')) {
        return false;
      }
      skipSpace();
    }
  }

  const char* p_;
  const char* const end_;
  LogEntry& entry_;
  const LogFieldMask fields_;
};

// ---------------------------------------------------------------------------
// The nlohmann::json path: same keys, same type rules.

using Json = nlohmann::json;

bool assignKnown(std::size_t index, const Json& value, LogEntry& entry, bool wanted) {
  switch (kKeys[index].kind) {
    case KeyKind::String:
      if (!value.is_string()) {
        return false;
      }
      if (wanted) {
        *stringSlot(entry, index) = value.get_ref<const std::string&>();
      }
      return true;
    case KeyKind::StringList: {
      if (!value.is_array() ||
          !std::all_of(value.begin(), value.end(), [](const Json& v) { return v.is_string(); })) {
        return false;
      }
      if (wanted) {
        *listSlot(entry, index) = value.get<std::vector<std::string>>();
      }
      return true;
    }
    case KeyKind::Count:
      if (!value.is_number_unsigned() ||
          value.get<std::uint64_t>() > std::numeric_limits<std::uint32_t>::max()) {
        return false;
      }
      if (wanted) {
        entry.record.transaction = value.get<std::uint32_t>();
      }
      return true;
    case KeyKind::Number:
      if (!value.is_number() && !value.is_null()) {
        return false;
      }
      if (wanted) {
        entry.record.score =
            value.is_null() ? std::numeric_limits<double>::quiet_NaN() : value.get<double>();
      }
      return true;
  }
  return false;
}

bool isBlank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), isJsonSpace);
}

}  // namespace

void LogEntry::clear() {
  timeText.clear();
  DecisionRecord& r = record;
  r.time = {};
  for (std::string* s : {&r.session, &r.clientIp, &r.clientPtr, &r.helo, &r.sender, &r.stage,
                         &r.action, &r.rule, &r.ruleWhere, &r.reply, &r.spf, &r.dkim, &r.dmarc,
                         &r.messageId, &r.subject, &r.queueId, &r.rulesetHash, &r.frontend}) {
    s->clear();
  }
  r.rcpts.clear();
  r.scoreRules.clear();
  r.score = 0;
  r.transaction = 0;
  r.rcptsPassed.clear();
  r.rcptsBackendRefused.clear();
  r.facts.clear();
  invalidUtf8.clear();
  truncated.clear();
}

bool scanDecisionLine(std::string_view line, LogEntry& entry, LogFieldMask fields) {
  entry.clear();
  return LineScanner(line, entry, fields).run();
}

bool parseDecisionLineSlow(std::string_view line, LogEntry& entry, LogFieldMask fields) {
  entry.clear();
  const Json j = Json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return false;
  }
  for (const auto& [key, value] : j.items()) {
    const int index = findKey(key, kKeys.size());
    if (index < 0) {
      continue;
    }
    const auto i = static_cast<std::size_t>(index);
    if (!assignKnown(i, value, entry, i == 0 || (fields & (1U << i)) != 0)) {
      return false;
    }
  }
  return true;
}

LineParse parseDecisionLine(std::string_view line, LogEntry& entry, LogFieldMask fields) {
  if (isBlank(line)) {
    return LineParse::Blank;
  }
  if (!scanDecisionLine(line, entry, fields) && !parseDecisionLineSlow(line, entry, fields)) {
    return LineParse::Unreadable;
  }
  const std::optional<LogTime> time = parseRfc3339(entry.timeText);
  if (!time) {
    return LineParse::Unreadable;
  }
  entry.record.time = *time;
  return LineParse::Ok;
}

// ---------------------------------------------------------------------------
// Times

namespace {

using std::chrono::days;
using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::nanoseconds;
using std::chrono::seconds;

// system_clock counts nanoseconds in 64 bits (years 1677..2262): keep well
// inside that so no arithmetic on a hostile timestamp can overflow.
constexpr int kMinYear = 1900;
constexpr int kMaxYear = 2200;

/// Reads exactly `n` digits at `pos`.
bool readDigits(std::string_view text, std::size_t& pos, int n, int& out) {
  if (text.size() - pos < static_cast<std::size_t>(n)) {
    return false;
  }
  out = 0;
  for (int i = 0; i < n; ++i, ++pos) {
    if (!isDigit(text[pos])) {
      return false;
    }
    out = out * 10 + (text[pos] - '0');
  }
  return true;
}

bool readChar(std::string_view text, std::size_t& pos, char c) {
  if (pos < text.size() && text[pos] == c) {
    ++pos;
    return true;
  }
  return false;
}

/// Which parts of "YYYY-MM-DDTHH:MM:SS.fffZ" may be left out.
struct DateTimeSyntax {
  bool timeOptional = false;
  bool secondsOptional = false;
  bool offsetOptional = false;
};

struct DateTimeParts {
  std::chrono::sys_days day;
  nanoseconds sinceMidnight{0};
  minutes offset{0};
  bool hasTime = false;
};

bool readDate(std::string_view text, std::size_t& pos, std::chrono::sys_days& out) {
  int y = 0;
  int m = 0;
  int d = 0;
  if (!readDigits(text, pos, 4, y) || !readChar(text, pos, '-') || !readDigits(text, pos, 2, m) ||
      !readChar(text, pos, '-') || !readDigits(text, pos, 2, d) || y < kMinYear || y > kMaxYear) {
    return false;
  }
  const std::chrono::year_month_day ymd{std::chrono::year{y},
                                        std::chrono::month{static_cast<unsigned>(m)},
                                        std::chrono::day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) {
    return false;
  }
  out = std::chrono::sys_days{ymd};
  return true;
}

/// ".fff" (any number of digits; beyond nanoseconds they are ignored).
nanoseconds readFraction(std::string_view text, std::size_t& pos) {
  std::int64_t ns = 0;
  int digits = 0;
  while (pos < text.size() && isDigit(text[pos])) {
    if (digits++ < 9) {
      ns = ns * 10 + (text[pos] - '0');
    }
    ++pos;
  }
  for (; digits < 9; ++digits) {
    ns *= 10;
  }
  return nanoseconds(ns);
}

bool readTimeOfDay(std::string_view text, std::size_t& pos, const DateTimeSyntax& syntax,
                   nanoseconds& out) {
  int h = 0;
  int m = 0;
  int s = 0;
  if (!readDigits(text, pos, 2, h) || !readChar(text, pos, ':') || !readDigits(text, pos, 2, m) ||
      h > 23 || m > 59) {
    return false;
  }
  out = hours(h) + minutes(m);
  if (!readChar(text, pos, ':')) {
    return syntax.secondsOptional;
  }
  if (!readDigits(text, pos, 2, s) || s > 60) {  // 60: a leap second
    return false;
  }
  out += seconds(s);
  if (readChar(text, pos, '.')) {
    if (pos == text.size() || !isDigit(text[pos])) {
      return false;
    }
    out += readFraction(text, pos);
  }
  return true;
}

/// "Z", "z", "+HH:MM" or "-HH:MM"; nothing only if optional.
bool readOffset(std::string_view text, std::size_t& pos, bool optional, minutes& out) {
  if (pos == text.size()) {
    return optional;
  }
  if (text[pos] == 'Z' || text[pos] == 'z') {
    ++pos;
    return true;
  }
  const char sign = text[pos];
  int h = 0;
  int m = 0;
  if ((sign != '+' && sign != '-') || !readDigits(text, ++pos, 2, h) || !readChar(text, pos, ':') ||
      !readDigits(text, pos, 2, m) || h > 23 || m > 59) {
    return false;
  }
  out = minutes(h * 60 + m) * (sign == '-' ? -1 : 1);
  return true;
}

std::optional<DateTimeParts> parseDateTime(std::string_view text, const DateTimeSyntax& syntax) {
  DateTimeParts parts;
  std::size_t pos = 0;
  if (!readDate(text, pos, parts.day)) {
    return std::nullopt;
  }
  if (pos == text.size() && syntax.timeOptional) {
    return parts;
  }
  if (pos == text.size() || (text[pos] != 'T' && text[pos] != 't' && text[pos] != ' ')) {
    return std::nullopt;
  }
  ++pos;
  parts.hasTime = true;
  if (!readTimeOfDay(text, pos, syntax, parts.sinceMidnight) ||
      !readOffset(text, pos, syntax.offsetOptional, parts.offset) || pos != text.size()) {
    return std::nullopt;
  }
  return parts;
}

LogTime toLogTime(const DateTimeParts& parts) {
  return LogTime(std::chrono::duration_cast<LogTime::duration>(parts.day.time_since_epoch() +
                                                               parts.sinceMidnight - parts.offset));
}

/// "1h", "30m", "7d", "1h30m", ...: nullopt if `text` is not a duration.
std::optional<seconds> parseDuration(std::string_view text) {
  constexpr std::int64_t kMaxSeconds = std::int64_t{100} * 366 * 86400;  // a century
  std::int64_t total = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::int64_t n = 0;
    const std::size_t start = pos;
    while (pos < text.size() && isDigit(text[pos]) && pos - start < 9) {
      n = n * 10 + (text[pos++] - '0');
    }
    if (pos == start || pos == text.size()) {
      return std::nullopt;  // no number, or a number without a unit
    }
    static constexpr std::string_view kUnits = "smhdw";
    static constexpr std::int64_t kUnitSeconds[] = {1, 60, 3600, 86400, 7 * 86400};
    const std::size_t unit = kUnits.find(text[pos++]);
    if (unit == std::string_view::npos) {
      return std::nullopt;
    }
    total += n * kUnitSeconds[unit];
    if (total > kMaxSeconds) {
      return std::nullopt;
    }
  }
  return pos == 0 ? std::nullopt : std::optional<seconds>(seconds(total));
}

/// `now`, `today`, `yesterday`: nullopt for anything else.
std::optional<DateTimeParts> parseWord(std::string_view text, LogTime now) {
  const auto today = std::chrono::floor<days>(now);
  DateTimeParts parts;
  if (text == "today") {
    parts.day = today;
  } else if (text == "yesterday") {
    parts.day = today - days(1);
  } else if (text == "now") {
    parts.day = today;
    parts.sinceMidnight = std::chrono::duration_cast<nanoseconds>(now - today);
    parts.hasTime = true;
  } else {
    return std::nullopt;
  }
  return parts;
}

}  // namespace

std::optional<LogTime> parseRfc3339(std::string_view text) {
  const std::optional<DateTimeParts> parts = parseDateTime(text, DateTimeSyntax{});
  return parts ? std::optional<LogTime>(toLogTime(*parts)) : std::nullopt;
}

std::optional<LogTime> parseTimeBound(std::string_view text, TimeBound bound, LogTime now,
                                      std::string& error) {
  if (const std::optional<seconds> back = parseDuration(text)) {
    return now - *back;
  }
  std::optional<DateTimeParts> parts = parseWord(text, now);
  if (!parts) {
    parts = parseDateTime(text, DateTimeSyntax{true, true, true});
  }
  if (!parts) {
    error = "invalid time \"" + std::string(text) +
            "\": use a duration back from now (30m, 1h, 7d), a date (2026-11-23), a date and "
            "time (2026-11-23T08:00, UTC unless an offset such as +01:00 is given), now, today "
            "or yesterday";
    return std::nullopt;
  }
  LogTime time = toLogTime(*parts);
  if (!parts->hasTime && bound == TimeBound::Until) {
    time += days(1);  // "--until 2026-11-23" includes that whole day
  }
  return time;
}

std::string formatLogTime(LogTime time, bool millis) {
  const auto day = std::chrono::floor<days>(time);
  const std::chrono::year_month_day ymd{day};
  const std::chrono::hh_mm_ss hms{std::chrono::floor<std::chrono::milliseconds>(time - day)};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u %02d:%02d:%02d", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<int>(hms.seconds().count()));
  std::string out = buf;
  if (millis) {
    std::snprintf(buf, sizeof buf, ".%03d", static_cast<int>(hms.subseconds().count()));
    out += buf;
  }
  return out;
}

bool isRefusal(std::string_view action) {
  return action == "reject" || action == "tempfail";
}

// ---------------------------------------------------------------------------
// The filter

namespace {

std::string lowerAscii(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

char foldAscii(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

/// Case-insensitive (ASCII) substring search; `needle` is already lowercase.
bool containsFolded(std::string_view haystack, std::string_view needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end(),
                     [](char h, char n) { return foldAscii(h) == n; }) != haystack.end();
}

bool anyEqual(const std::vector<std::string>& wanted, const std::string& value) {
  return wanted.empty() || std::find(wanted.begin(), wanted.end(), value) != wanted.end();
}

bool anyContained(const std::vector<std::string>& needles, std::string_view value) {
  return std::any_of(needles.begin(), needles.end(),
                     [&](const std::string& n) { return containsFolded(value, n); });
}

bool checkNames(const std::vector<std::string>& values, std::string_view what, const auto& known,
                std::string& error) {
  for (const std::string& v : values) {
    if (std::find(known.begin(), known.end(), v) == known.end()) {
      error = "unknown ";
      error.append(what).append(" \"").append(v).append("\" (one of:");
      for (std::string_view k : known) {
        error.append(" ").append(k);  // not " " + string: GCC 12 -O3 -Wrestrict false alarm
      }
      error += ")";
      return false;
    }
  }
  return true;
}

std::shared_ptr<const CidrList> compileNetworks(const std::vector<std::string>& ips,
                                                std::string& error) {
  auto list = std::make_shared<CidrList>();
  for (const std::string& ip : ips) {
    rules::Diagnostics diags;
    if (!list->add(rules::ListEntry{ip, rules::SourceLocation{"--ip", 0, 0}, ip}, diags)) {
      error = "invalid --ip \"" + ip + "\"" +
              (diags.items().empty() ? "" : ": " + diags.items().front().message);
      return nullptr;
    }
  }
  return list;
}

}  // namespace

std::optional<LogFilter> LogFilter::compile(const LogFilterSpec& spec, LogTime now,
                                            std::string& error) {
  LogFilter f;
  if (!spec.since.empty() &&
      !(f.since_ = parseTimeBound(spec.since, TimeBound::Since, now, error))) {
    return std::nullopt;
  }
  if (!spec.until.empty() &&
      !(f.until_ = parseTimeBound(spec.until, TimeBound::Until, now, error))) {
    return std::nullopt;
  }
  if (f.since_ && f.until_ && *f.since_ >= *f.until_) {
    error = "--since " + spec.since + " is not before --until " + spec.until;
    return std::nullopt;
  }
  if (!checkNames(spec.actions, "action", kLogActions, error) ||
      !checkNames(spec.stages, "stage", rules::kStageNames, error)) {
    return std::nullopt;
  }
  if (!spec.ips.empty() && !(f.networks_ = compileNetworks(spec.ips, error))) {
    return std::nullopt;
  }
  f.actions_ = spec.actions;
  f.stages_ = spec.stages;
  f.rules_ = spec.rules;
  f.sessions_ = spec.sessions;
  for (const std::string& s : spec.senders) {
    if (s == "<>") {
      f.nullSender_ = true;
    } else {
      f.senders_.push_back(lowerAscii(s));
    }
  }
  for (const std::string& r : spec.rcpts) {
    f.rcpts_.push_back(lowerAscii(r));
  }
  return f;
}

bool LogFilter::matches(const LogEntry& entry) const {
  const DecisionRecord& r = entry.record;
  if ((since_ && r.time < *since_) || (until_ && r.time >= *until_)) {
    return false;
  }
  if (!anyEqual(actions_, r.action) || !anyEqual(stages_, r.stage) || !anyEqual(rules_, r.rule) ||
      !anyEqual(sessions_, r.session)) {
    return false;
  }
  if (networks_) {
    const std::optional<rules::IpAddress> ip = rules::IpAddress::parse(r.clientIp);
    if (!ip || !networks_->longestMatch(*ip)) {
      return false;
    }
  }
  if ((nullSender_ || !senders_.empty()) &&
      !((nullSender_ && r.sender.empty()) || anyContained(senders_, r.sender))) {
    return false;
  }
  return rcpts_.empty() || std::any_of(r.rcpts.begin(), r.rcpts.end(), [&](const std::string& rc) {
           return anyContained(rcpts_, rc);
         });
}

LogFieldMask LogFilter::fieldsNeeded() const {
  const auto when = [](bool used, LogFieldMask field) { return used ? field : LogFieldMask{0}; };
  return kFieldTime | when(!actions_.empty(), kFieldAction) | when(!stages_.empty(), kFieldStage) |
         when(!rules_.empty(), kFieldRule) | when(!sessions_.empty(), kFieldSession) |
         when(networks_ != nullptr, kFieldClientIp) |
         when(nullSender_ || !senders_.empty(), kFieldSender) | when(!rcpts_.empty(), kFieldRcpts);
}

// ---------------------------------------------------------------------------
// The summary

std::string senderDomain(std::string_view sender) {
  if (sender.empty()) {
    return "<>";
  }
  const std::size_t at = sender.rfind('@');
  return lowerAscii(at == std::string_view::npos ? sender : sender.substr(at + 1));
}

void LogSummary::bump(Counter& counter, std::string_view key) {
  const auto it = counter.find(key);
  if (it != counter.end()) {
    ++it->second;
  } else {
    counter.emplace(std::string(key), 1);
  }
}

const LogSummary::Counter& LogSummary::counter(Dimension d) const {
  return counters_[static_cast<std::size_t>(d)];
}

void LogSummary::add(const LogEntry& entry) {
  const DecisionRecord& r = entry.record;
  auto& c = counters_;
  ++total_;
  first_ = first_ ? std::min(*first_, r.time) : r.time;
  last_ = last_ ? std::max(*last_, r.time) : r.time;
  bump(c[static_cast<std::size_t>(Dimension::Action)], r.action);
  bump(c[static_cast<std::size_t>(Dimension::Stage)], r.stage);
  if (!r.rule.empty()) {
    bump(c[static_cast<std::size_t>(Dimension::Rule)], r.rule);
  }
  for (const std::string& id : r.scoreRules) {
    bump(c[static_cast<std::size_t>(Dimension::ScoreRule)], id);
  }
  bump(c[static_cast<std::size_t>(Dimension::ClientIp)], r.clientIp);
  bump(c[static_cast<std::size_t>(Dimension::SenderDomain)], senderDomain(r.sender));
  const std::int64_t hour = std::chrono::floor<hours>(r.time).time_since_epoch().count();
  if (lastHourCount_ == nullptr || hour != lastHour_) {
    lastHourCount_ = &hours_[hour];  // node-based map: the pointer stays valid
    lastHour_ = hour;
  }
  ++lastHourCount_->total;
  lastHourCount_->refused += isRefusal(r.action) ? 1 : 0;
}

std::vector<LogCount> LogSummary::top(Dimension d, std::size_t n) const {
  using Item = const Counter::value_type*;
  std::vector<Item> items;
  const Counter& c = counter(d);
  items.reserve(c.size());
  for (const auto& kv : c) {
    items.push_back(&kv);
  }
  const std::size_t keep = std::min(n, items.size());
  std::partial_sort(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(keep), items.end(),
                    [](Item a, Item b) {
                      return a->second != b->second ? a->second > b->second : a->first < b->first;
                    });
  std::vector<LogCount> out;
  out.reserve(keep);
  for (std::size_t i = 0; i < keep; ++i) {
    out.push_back({items[i]->first, items[i]->second});
  }
  return out;
}

Histogram LogSummary::histogram(LogTime start, LogTime end, std::size_t maxBuckets) const {
  Histogram h;
  if (end <= start || maxBuckets == 0) {
    return h;
  }
  const std::int64_t first = std::chrono::floor<hours>(start).time_since_epoch().count();
  const std::int64_t last = std::chrono::ceil<hours>(end).time_since_epoch().count();  // exclusive
  const std::int64_t span = std::max<std::int64_t>(1, last - first);
  // Widths that divide a day evenly, then whole days.
  std::int64_t width = 1;
  for (std::int64_t w : {1, 2, 3, 4, 6, 12, 24}) {
    width = w;
    if ((span + w - 1) / w <= static_cast<std::int64_t>(maxBuckets)) {
      break;
    }
  }
  while ((span + width - 1) / width > static_cast<std::int64_t>(maxBuckets)) {
    width += 24;
  }
  const std::int64_t origin = first - ((first % width) + width) % width;  // floor to the width
  const std::int64_t count = (last - origin + width - 1) / width;
  h.width = hours(width);
  h.buckets.resize(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) {
    h.buckets[static_cast<std::size_t>(i)].start = LogTime(hours(origin + i * width));
  }
  for (const auto& [hour, counts] : hours_) {
    if (hour < origin || hour >= origin + count * width) {
      continue;
    }
    HistogramBucket& b = h.buckets[static_cast<std::size_t>((hour - origin) / width)];
    b.total += counts.total;
    b.refused += counts.refused;
  }
  for (const HistogramBucket& b : h.buckets) {
    h.maxTotal = std::max(h.maxTotal, b.total);
  }
  return h;
}

}  // namespace smtpgate::policies
