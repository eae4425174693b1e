#pragma once
/// DecisionLogReader — the decision log read back: one line to a record, the
/// filters of `smtpgate log`, and the counts of `smtpgate log --summary`.
///
/// Pure: no files, no clock, no terminal. The caller passes `now` where a
/// relative time ("1h") needs one, and feeds lines it read itself (see
/// decision_log_files.h for the files, rotations and gzip).
///
/// Parsing: `parseDecisionLine` first runs a small, strict scanner over the
/// line: a JSON object whose values are strings, numbers, literals or arrays
/// of those. It decodes only the keys the caller asks for (a `LogFieldMask`)
/// and reuses the capacity of the entry's strings, so reading millions of
/// lines allocates almost nothing. Anything the scanner does not handle (a
/// nested object, a key with an escape, a number out of range, invalid
/// UTF-8, a syntax error) goes to nlohmann::json, which is the judge: if it
/// does not parse an object either, the line is `Unreadable`. Both paths apply
/// the same rules, so they agree on every line:
///  * `time` must be present and an RFC 3339 timestamp;
///  * a known key with the wrong type (`"session": 5`) makes the line
///    unreadable; string keys must be strings, `rcpts`, `score_rules`,
///    `invalid_utf8`, `truncated`, `rcpts_passed`, `rcpts_backend_refused`
///    and `facts` arrays of strings, `score` a number or null (null, the
///    writer's NaN, reads as NaN), `transaction` a whole number from 0 to
///    2^32-1;
///  * other keys are missing = empty; unknown keys are skipped, whatever
///    their value; for a key given twice, the last one wins.
///
/// Times: written and compared in UTC. `parseTimeBound` reads what an admin
/// types: a duration back from now (`90s`, `30m`, `1h`, `7d`, `2w`,
/// `1h30m`), `now`, `today`, `yesterday`, a date (`2026-11-23`), or a date and
/// time (`2026-11-23T08:00`, `2026-11-23 08:00:30`, `...Z`, `...+01:00`).
/// Without an offset a time is UTC. `--since` includes its instant; `--until`
/// excludes its instant, except that a bare date as `--until` includes that
/// whole day.
///
/// SECURITY: every value in a line is untrusted bytes from the network (the
/// writer escapes them, but anyone who can write the file can write anything).
/// The scanner is bounded by the line length, never reads past it, allocates
/// at most the decoded size of the keys asked for, and never throws; the
/// fallback parser is called with exceptions off. Decoded values may contain
/// any Unicode, including control characters: a caller printing them to a
/// terminal must neutralise them.

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policies/decision_log.h"

namespace smtpgate::policies {

class CidrList;

using LogTime = std::chrono::system_clock::time_point;

/// One line of the log, decoded. `record` holds the keys of
/// DecisionRecord (`ruleset` is `record.rulesetHash`).
struct LogEntry {
  std::string timeText;  ///< the `time` value as written; `record.time` is parsed from it
  DecisionRecord record;
  std::vector<std::string> invalidUtf8;  ///< the `invalid_utf8` key
  std::vector<std::string> truncated;    ///< the `truncated` key

  /// Empties every field, keeping the strings' capacity for the next line.
  void clear();
};

/// The keys a caller wants decoded; `time` is always decoded.
enum LogField : std::uint32_t {
  kFieldTime = 1U << 0,
  kFieldSession = 1U << 1,
  kFieldClientIp = 1U << 2,
  kFieldClientPtr = 1U << 3,
  kFieldHelo = 1U << 4,
  kFieldSender = 1U << 5,
  kFieldRcpts = 1U << 6,
  kFieldStage = 1U << 7,
  kFieldAction = 1U << 8,
  kFieldRule = 1U << 9,
  kFieldRuleWhere = 1U << 10,
  kFieldReply = 1U << 11,
  kFieldScore = 1U << 12,
  kFieldSpf = 1U << 13,
  kFieldDkim = 1U << 14,
  kFieldDmarc = 1U << 15,
  kFieldMessageId = 1U << 16,
  kFieldSubject = 1U << 17,
  kFieldQueueId = 1U << 18,
  kFieldRuleset = 1U << 19,
  kFieldFrontend = 1U << 20,
  kFieldScoreRules = 1U << 21,
  kFieldInvalidUtf8 = 1U << 22,
  kFieldTruncated = 1U << 23,
  kFieldTransaction = 1U << 24,
  kFieldRcptsPassed = 1U << 25,
  kFieldRcptsBackendRefused = 1U << 26,
  kFieldFacts = 1U << 27,
};
using LogFieldMask = std::uint32_t;
inline constexpr LogFieldMask kAllLogFields = (1U << 28) - 1;
/// The envelope keys `smtpgate replay` reads (decision_log.h).
inline constexpr LogFieldMask kEnvelopeLogFields =
    kFieldTransaction | kFieldRcptsPassed | kFieldRcptsBackendRefused | kFieldFacts;

enum class LineParse {
  Ok,          ///< `entry` holds the line
  Blank,       ///< empty or only whitespace: not a decision, not an error
  Unreadable,  ///< not a JSON object, or not a decision line (see above)
};

/// Parses one line (without its newline) into `entry`, decoding the keys in
/// `fields`; the others are left empty. `entry` is cleared first.
LineParse parseDecisionLine(std::string_view line, LogEntry& entry,
                            LogFieldMask fields = kAllLogFields);

/// The fast scanner alone (for tests and benchmarks): true if it handled the
/// line, which is then in `entry`; false if the line needs the full parser.
/// It fills `entry.timeText` but neither parses nor requires it.
bool scanDecisionLine(std::string_view line, LogEntry& entry, LogFieldMask fields);

/// The nlohmann::json path alone: true if the line is an object whose known
/// keys have the right types. Like the scanner, leaves `time` to the caller.
bool parseDecisionLineSlow(std::string_view line, LogEntry& entry, LogFieldMask fields);

/// RFC 3339 (`2026-11-23T09:01:02.345Z`, any fraction, `Z` or `±HH:MM`).
std::optional<LogTime> parseRfc3339(std::string_view text);

enum class TimeBound { Since, Until };

/// A `--since`/`--until` value (see the header comment), or nullopt with a
/// one-line reason in `error`.
std::optional<LogTime> parseTimeBound(std::string_view text, TimeBound bound, LogTime now,
                                      std::string& error);

/// "2026-11-23 09:01:02" (UTC); with `millis`, ".345" is added.
std::string formatLogTime(LogTime time, bool millis = false);

/// Every action word the writers use, for checking `--action` (a typo would
/// otherwise silently match nothing).
inline constexpr std::array<std::string_view, 8> kLogActions = {
    "accept",  "continue",     "tempfail",       "reject",
    "deliver", "would-reject", "would-tempfail", "possible-duplicate"};

/// True for `reject` and `tempfail` (what the client was refused).
bool isRefusal(std::string_view action);

/// What `smtpgate log` was asked to match, as typed on the command line.
/// Within one list any entry may match (OR); all lists must match (AND);
/// an empty list matches everything.
struct LogFilterSpec {
  // The {} initializers let callers name only the fields they set
  // (`{.actions = {"reject"}}`) without -Wmissing-field-initializers.
  std::string since{};  ///< empty: open
  std::string until{};  ///< empty: open
  std::vector<std::string> actions{};
  std::vector<std::string> stages{};
  std::vector<std::string> rules{};
  std::vector<std::string> ips{};
  std::vector<std::string> senders{};
  std::vector<std::string> rcpts{};
  std::vector<std::string> sessions{};
};

/// A compiled LogFilterSpec. `--ip` takes addresses and CIDR networks (v4 and
/// v6; an IPv4 client logged as ::ffff:a.b.c.d matches IPv4 networks).
/// `--sender`/`--rcpt` match a case-insensitive substring of the address
/// (`--sender '<>'` matches only the null sender). `--action`, `--stage`,
/// `--rule` and `--session` match exactly.
class LogFilter {
 public:
  /// Nullopt with a one-line reason in `error` for a bad time, network,
  /// action or stage.
  static std::optional<LogFilter> compile(const LogFilterSpec& spec, LogTime now,
                                          std::string& error);

  [[nodiscard]] bool matches(const LogEntry& entry) const;
  /// The keys `matches` reads.
  [[nodiscard]] LogFieldMask fieldsNeeded() const;
  [[nodiscard]] const std::optional<LogTime>& since() const { return since_; }
  [[nodiscard]] const std::optional<LogTime>& until() const { return until_; }

 private:
  std::optional<LogTime> since_, until_;
  std::vector<std::string> actions_, stages_, rules_, sessions_;
  std::vector<std::string> senders_, rcpts_;  ///< lowercased
  bool nullSender_ = false;                   ///< `--sender '<>'` was given
  std::shared_ptr<const CidrList> networks_;  ///< null: any address
};

/// One row of a ranking: a value and how many decisions had it.
struct LogCount {
  std::string value;
  std::uint64_t count = 0;
  friend bool operator==(const LogCount&, const LogCount&) = default;
};

/// One bar of the histogram: decisions in [start, start + width).
struct HistogramBucket {
  LogTime start;
  std::uint64_t total = 0;
  std::uint64_t refused = 0;  ///< reject + tempfail
};

struct Histogram {
  std::chrono::hours width{1};
  std::vector<HistogramBucket> buckets;
  std::uint64_t maxTotal = 0;
};

/// The counts behind `smtpgate log --summary`, added one decision at a time.
/// Memory grows with the distinct rules, IPs and sender domains (one map
/// entry each), not with the number of lines.
class LogSummary {
 public:
  enum class Dimension { Action, Stage, Rule, ScoreRule, ClientIp, SenderDomain };

  LogSummary() = default;
  LogSummary(const LogSummary&) = delete;  // lastHourCount_ points into hours_
  LogSummary& operator=(const LogSummary&) = delete;
  LogSummary(LogSummary&&) = default;  // moving the map keeps its nodes
  LogSummary& operator=(LogSummary&&) = default;

  /// The keys `add` reads.
  static constexpr LogFieldMask kFields = kFieldTime | kFieldAction | kFieldStage | kFieldRule |
                                          kFieldScoreRules | kFieldClientIp | kFieldSender;

  void add(const LogEntry& entry);

  [[nodiscard]] std::uint64_t total() const { return total_; }
  [[nodiscard]] std::optional<LogTime> first() const { return first_; }
  [[nodiscard]] std::optional<LogTime> last() const { return last_; }

  /// The `n` most frequent values of `d`, by count, ties by value. Rule and
  /// score-rule rankings leave out decisions without a rule. Sender domains
  /// are lowercased; the null sender counts as "<>".
  [[nodiscard]] std::vector<LogCount> top(Dimension d, std::size_t n) const;

  /// Buckets covering [start, end), hourly, or of whole hours wide enough
  /// that there are at most `maxBuckets`; the first starts at `start`
  /// rounded down to its bucket width (UTC). Empty if end <= start.
  [[nodiscard]] Histogram histogram(LogTime start, LogTime end, std::size_t maxBuckets) const;

 private:
  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Counter = std::unordered_map<std::string, std::uint64_t, StringHash, std::equal_to<>>;
  struct HourCount {
    std::uint64_t total = 0, refused = 0;
  };

  static void bump(Counter& counter, std::string_view key);
  [[nodiscard]] const Counter& counter(Dimension d) const;

  std::array<Counter, 6> counters_;
  std::unordered_map<std::int64_t, HourCount> hours_;  ///< by hours since the epoch
  std::int64_t lastHour_ = 0;
  HourCount* lastHourCount_ = nullptr;  ///< lines come in time order: skip the lookup
  std::uint64_t total_ = 0;
  std::optional<LogTime> first_, last_;
};

/// The sender's domain as the summary counts it: lowercased text after the
/// last '@', "<>" for the null sender, the whole address if it has no '@'.
std::string senderDomain(std::string_view sender);

}  // namespace smtpgate::policies
