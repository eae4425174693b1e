// Reading the decision log back: the line scanner (against nlohmann::json as
// the reference), times, filters, the summary, rotated and gzip'd files, and
// following a file across rotation.
#include "policies/decision_log_reader.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "policies/decision_log_files.h"

namespace smtpgate::policies {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "decision_log_reader_test.XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

void appendFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::app) << text;
}

void writeGzip(const std::string& path, const std::string& text, const char* mode = "wb") {
  gzFile gz = gzopen(path.c_str(), mode);
  REQUIRE(gz != nullptr);
  REQUIRE(gzwrite(gz, text.data(), static_cast<unsigned>(text.size())) ==
          static_cast<int>(text.size()));
  REQUIRE(gzclose(gz) == Z_OK);
}

LogTime at(const char* rfc3339) {
  auto t = parseRfc3339(rfc3339);
  REQUIRE(t);
  return *t;
}

DecisionRecord record(const char* time, std::string session, std::string ip, std::string action,
                      std::string stage, std::string rule = "", std::string sender = "a@x.org") {
  DecisionRecord r;
  r.time = at(time);
  r.session = std::move(session);
  r.clientIp = std::move(ip);
  r.action = std::move(action);
  r.stage = std::move(stage);
  r.rule = std::move(rule);
  r.sender = std::move(sender);
  r.rcpts = {"bob@example.com"};
  r.reply = r.action == "reject" ? "550 5.7.1 no" : "";
  r.rulesetHash = "abc";
  r.frontend = "proxy";
  return r;
}

std::string lines(const std::vector<DecisionRecord>& records) {
  std::string out;
  for (const DecisionRecord& r : records) {
    out += toJsonLine(r) + "\n";
  }
  return out;
}

/// Every decoded field, for comparing the two parsers.
void requireSame(const LogEntry& a, const LogEntry& b) {
  const DecisionRecord& x = a.record;
  const DecisionRecord& y = b.record;
  CHECK(a.timeText == b.timeText);
  CHECK(x.session == y.session);
  CHECK(x.clientIp == y.clientIp);
  CHECK(x.clientPtr == y.clientPtr);
  CHECK(x.helo == y.helo);
  CHECK(x.sender == y.sender);
  CHECK(x.rcpts == y.rcpts);
  CHECK(x.stage == y.stage);
  CHECK(x.action == y.action);
  CHECK(x.rule == y.rule);
  CHECK(x.ruleWhere == y.ruleWhere);
  CHECK(x.reply == y.reply);
  CHECK((x.score == y.score || (std::isnan(x.score) && std::isnan(y.score))));
  CHECK(x.spf == y.spf);
  CHECK(x.dkim == y.dkim);
  CHECK(x.dmarc == y.dmarc);
  CHECK(x.messageId == y.messageId);
  CHECK(x.subject == y.subject);
  CHECK(x.queueId == y.queueId);
  CHECK(x.rulesetHash == y.rulesetHash);
  CHECK(x.frontend == y.frontend);
  CHECK(x.scoreRules == y.scoreRules);
  CHECK(a.invalidUtf8 == b.invalidUtf8);
  CHECK(a.truncated == b.truncated);
  CHECK(x.transaction == y.transaction);
  CHECK(x.rcptsPassed == y.rcptsPassed);
  CHECK(x.rcptsBackendRefused == y.rcptsBackendRefused);
  CHECK(x.facts == y.facts);
}

const std::string kT = R"("time":"2026-11-23T09:01:02.345Z")";

}  // namespace

TEST_CASE("log reader: a writer line reads back field for field", "[log_reader]") {
  DecisionRecord r =
      record("2026-11-23T09:01:02.345Z", "4F2A9C01", "203.0.113.5", "reject", "rcpt", "no-relay");
  r.clientPtr = "mail.example.net";
  r.helo = "mail.example.net";
  r.rcpts = {"bob@example.com", "carol@example.com"};
  r.ruleWhere = "/etc/smtpgate/rules/10-basic.rules:12";
  r.reply = "554 5.7.1 Relay access denied";
  r.score = 7.5;
  r.spf = "pass";
  r.dkim = "fail";
  r.dmarc = "none";
  r.messageId = "<id@x>";
  r.subject = "Caf\xC3\xA9 \"quoted\" \\ back\nslash \x01 \xF0\x9F\x98\x80 \xE2\x80\xA8";
  r.queueId = "4F2A9C";
  r.scoreRules = {"viagra", "words"};
  LogEntry e;
  REQUIRE(parseDecisionLine(toJsonLine(r), e) == LineParse::Ok);
  CHECK(e.record.time == r.time);
  CHECK(e.timeText == "2026-11-23T09:01:02.345Z");
  CHECK(e.record.session == r.session);
  CHECK(e.record.clientPtr == r.clientPtr);
  CHECK(e.record.rcpts == r.rcpts);
  CHECK(e.record.ruleWhere == r.ruleWhere);
  CHECK(e.record.score == 7.5);
  CHECK(e.record.subject == r.subject);  // every escape decoded back to the same bytes
  CHECK(e.record.scoreRules == r.scoreRules);
  CHECK(e.record.rulesetHash == "abc");
  CHECK(e.invalidUtf8.empty());
  CHECK(scanDecisionLine(toJsonLine(r), e, kAllLogFields));  // the fast path took it
}

TEST_CASE("log reader: scanner and nlohmann agree on tricky lines", "[log_reader]") {
  struct Case {
    std::string line;
    LineParse expect;
    bool scannerHandles;
  };
  const std::vector<Case> cases = {
      // escapes of every kind, surrogate pairs, U+0000
      {"{" + kT + R"(,"subject":"q\" b\\ s\/ \b\f\n\r\t \u0041\u00e9\u20AC \ud83d\ude00 \u0000")" +
           "}",
       LineParse::Ok, true},
      // raw UTF-8 (2, 3 and 4 bytes) next to escapes
      {"{" + kT + ",\"helo\":\"caf\xC3\xA9\\n\xE2\x82\xAC\xF0\x9F\x98\x80\"}", LineParse::Ok, true},
      // whitespace everywhere JSON allows it, CRLF ending
      {" { \"time\" : \"2026-11-23T09:01:02Z\" ,\t\"rcpts\" : [ \"a\" , \"b\" ] , \"score\" : "
       "-1.5e2 }\r",
       LineParse::Ok, true},
      // unknown keys of every scalar type, flat arrays
      {"{" + kT + R"(,"x":true,"y":false,"z":null,"n":-0.5E+3,"a":[1,"two",null,[]])" + "}",
       LineParse::Ok, false},
      {"{" + kT + R"(,"a":[1,"two",null])" + "}", LineParse::Ok, true},
      // nested structure in an unknown key: the full parser reads it
      {"{" + kT + R"(,"extra":{"deep":[[1,2],{"a":[]}]},"session":"S1"})", LineParse::Ok, false},
      // a key written with an escape is still the key
      {"{" + kT + R"(,"\u0073ession":"S2"})", LineParse::Ok, false},
      // missing keys are empty; the last of a duplicated key wins
      {"{" + kT + "}", LineParse::Ok, true},
      {"{" + kT + R"(,"session":"one","session":"two"})", LineParse::Ok, true},
      {"{" + kT + R"(,"score":null})", LineParse::Ok, true},
      // a UTF-8 byte order mark
      {"\xEF\xBB\xBF{" + kT + "}", LineParse::Ok, false},
      // not decision lines
      {"", LineParse::Blank, false},
      {" \t \r", LineParse::Blank, false},
      {"not json", LineParse::Unreadable, false},
      {"{", LineParse::Unreadable, false},
      {"{}", LineParse::Unreadable, true},  // no time
      {"[1,2]", LineParse::Unreadable, false},
      {"null", LineParse::Unreadable, false},
      {"{" + kT + "} trailing", LineParse::Unreadable, false},
      {"{" + kT + ",}", LineParse::Unreadable, false},
      {"{" + kT + R"(,"subject":"cut)", LineParse::Unreadable, false},
      {R"({"time":"yesterday"})", LineParse::Unreadable, true},
      {R"({"time":"2026-02-30T00:00:00Z"})", LineParse::Unreadable, true},
      {R"({"time":12})", LineParse::Unreadable, false},
      // strings that are not JSON strings
      {"{" + kT + ",\"helo\":\"raw\ttab\"}", LineParse::Unreadable, false},
      {"{" + kT + ",\"helo\":\"bad \xC3\x28 utf8\"}", LineParse::Unreadable, false},
      {"{" + kT + ",\"helo\":\"overlong \xC0\xAF\"}", LineParse::Unreadable, false},
      {"{" + kT + R"(,"helo":"\x41"})", LineParse::Unreadable, false},
      {"{" + kT + R"(,"helo":"\u12"})", LineParse::Unreadable, false},
      {"{" + kT + R"(,"helo":"lone \ud800"})", LineParse::Unreadable, false},
      {"{" + kT + R"(,"helo":"lone \udc00"})", LineParse::Unreadable, false},
      {"{" + kT + R"(,"helo":"\ud800\u0041"})", LineParse::Unreadable, false},
      // numbers outside JSON's grammar
      {"{" + kT + R"(,"score":01})", LineParse::Unreadable, false},
      {"{" + kT + R"(,"score":1.})", LineParse::Unreadable, false},
      {"{" + kT + R"(,"score":+1})", LineParse::Unreadable, false},
      {"{" + kT + R"(,"score":NaN})", LineParse::Unreadable, false},
      // known keys with the wrong type
      {"{" + kT + R"(,"session":5})", LineParse::Unreadable, false},
      {"{" + kT + R"(,"rcpts":"bob"})", LineParse::Unreadable, false},
      {"{" + kT + R"(,"rcpts":[1]})", LineParse::Unreadable, false},
      {"{" + kT + R"(,"score":"1"})", LineParse::Unreadable, false},
      {"{" + kT + R"(,"score_rules":[["a"]]})", LineParse::Unreadable, false},
      // the envelope keys: `transaction` is a whole number that fits 32 bits
      {"{" + kT + R"(,"transaction":2,"rcpts_passed":["a"],"facts":["tls=false"]})", LineParse::Ok,
       true},
      {"{" + kT + R"(,"transaction":0})", LineParse::Ok, true},
      {"{" + kT + R"(,"transaction":4294967295})", LineParse::Ok, true},
      {"{" + kT + R"(,"transaction":4294967296})", LineParse::Unreadable, false},
      {"{" + kT + R"(,"transaction":-1})", LineParse::Unreadable, false},
      {"{" + kT + R"(,"transaction":1.5})", LineParse::Unreadable, false},
      {"{" + kT + R"(,"transaction":1e2})", LineParse::Unreadable, false},
      {"{" + kT + R"(,"transaction":"1"})", LineParse::Unreadable, false},
      {"{" + kT + R"(,"transaction":null})", LineParse::Unreadable, false},
      {"{" + kT + R"(,"facts":"tls=false"})", LineParse::Unreadable, false},
      {"{" + kT + R"(,"rcpts_backend_refused":[2]})", LineParse::Unreadable, false},
  };
  for (const Case& c : cases) {
    INFO(c.line);
    LogEntry fast;
    LogEntry slow;
    LogEntry entry;
    CHECK(parseDecisionLine(c.line, entry) == c.expect);
    if (c.expect == LineParse::Blank) {
      continue;
    }
    const bool scanned = scanDecisionLine(c.line, fast, kAllLogFields);
    CHECK(scanned == c.scannerHandles);
    if (scanned) {  // whatever the scanner takes, nlohmann must read the same way
      REQUIRE(parseDecisionLineSlow(c.line, slow, kAllLogFields));
      requireSame(fast, slow);
    }
  }
}

TEST_CASE("log reader: decoded values of the tricky lines", "[log_reader]") {
  LogEntry e;
  REQUIRE(parseDecisionLine("{" + kT + R"(,"subject":"\u00e9\u20ac\ud83d\ude00\u0000x"})", e) ==
          LineParse::Ok);
  CHECK(e.record.subject == std::string("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\0x", 11));
  REQUIRE(parseDecisionLine("{" + kT + R"(,"session":"one","session":"two"})", e) == LineParse::Ok);
  CHECK(e.record.session == "two");
  REQUIRE(parseDecisionLine("{" + kT + R"(,"\u0073ession":"S2","extra":{"a":[1]}})", e) ==
          LineParse::Ok);
  CHECK(e.record.session == "S2");
  REQUIRE(parseDecisionLine("{" + kT + R"(,"score":null})", e) == LineParse::Ok);
  CHECK(std::isnan(e.record.score));
  REQUIRE(parseDecisionLine(R"({"time":"2026-11-23T09:01:02Z","score":-1.5e2})", e) ==
          LineParse::Ok);
  CHECK(e.record.score == -150);
  CHECK(e.record.session.empty());  // missing = empty
  CHECK(e.record.rcpts.empty());
  CHECK(e.record.transaction == 0);  // a line from before the envelope keys
  CHECK(e.record.facts.empty());
  REQUIRE(parseDecisionLine("{" + kT +
                                R"(,"transaction":7,"rcpts_passed":["a@x","b@x"],)"
                                R"("rcpts_backend_refused":["b@x"],"facts":["mail.size=10"]})",
                            e) == LineParse::Ok);
  CHECK(e.record.transaction == 7);
  CHECK(e.record.rcptsPassed == std::vector<std::string>{"a@x", "b@x"});
  CHECK(e.record.rcptsBackendRefused == std::vector<std::string>{"b@x"});
  CHECK(e.record.facts == std::vector<std::string>{"mail.size=10"});
}

TEST_CASE("log reader: only the keys asked for are decoded", "[log_reader]") {
  const std::string line = toJsonLine(
      record("2026-11-23T09:01:02Z", "S", "192.0.2.1", "reject", "mail", "spf-fail", "a@b.c"));
  LogEntry e;
  REQUIRE(parseDecisionLine(line, e, kFieldAction | kFieldRule) == LineParse::Ok);
  CHECK(e.record.action == "reject");
  CHECK(e.record.rule == "spf-fail");
  CHECK(e.record.time == at("2026-11-23T09:01:02Z"));  // always
  CHECK(e.record.session.empty());
  CHECK(e.record.sender.empty());
  CHECK(e.record.rcpts.empty());
}

TEST_CASE("log reader: random hostile records round-trip through both parsers", "[log_reader]") {
  std::mt19937 rng(42);
  const auto randomText = [&](std::size_t maxLen) {
    std::string s(std::uniform_int_distribution<std::size_t>(0, maxLen)(rng), '\0');
    for (char& c : s) {
      c = static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng));
    }
    return s;
  };
  for (int i = 0; i < 2000; ++i) {
    DecisionRecord r = record("2026-11-23T09:01:02.345Z", randomText(12), randomText(8), "reject",
                              "data", randomText(10), randomText(30));
    r.subject = randomText(60);
    r.rcpts = {randomText(20), randomText(20)};
    r.scoreRules = {randomText(5)};
    r.transaction = static_cast<std::uint32_t>(rng());
    r.rcptsPassed = {randomText(20)};
    r.rcptsBackendRefused = {randomText(20)};
    r.facts = {randomText(20)};
    const std::string line = toJsonLine(r);
    INFO(line);
    LogEntry fast;
    LogEntry slow;
    REQUIRE(parseDecisionLineSlow(line, slow, kAllLogFields));
    REQUIRE(scanDecisionLine(line, fast, kAllLogFields));
    requireSame(fast, slow);
    if (isValidUtf8(r.subject)) {
      CHECK(fast.record.subject == r.subject);
    }
  }
}

TEST_CASE("log reader: mutated lines never make the scanner disagree with nlohmann",
          "[log_reader]") {
  // The scanner may hand a line on to nlohmann, but whatever it accepts must
  // be valid JSON that nlohmann decodes to the same fields.
  DecisionRecord r = record("2026-11-23T09:01:02.345Z", "S1", "203.0.113.5", "reject", "data",
                            "spam", "a\"b\\c@x\xC3\xA9.org");
  r.subject = "x\x01\xF0\x9F\x98\x80\xE2\x80\xA8";
  r.score = -12.5e3;
  r.scoreRules = {"a", "b"};
  r.transaction = 12;
  r.rcptsPassed = {"p@x"};
  r.facts = {"tls=false"};
  const std::string seed = toJsonLine(r);
  const std::string alphabet = "{}[]\":,\\u0123456789abcdefnrtlsE+-. \xC3\xA9\xED\xA0\x80\x01";
  std::mt19937 rng(1234);
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string line = seed;
    for (int edits = 1 + static_cast<int>(rng() % 3); edits > 0 && !line.empty(); --edits) {
      const std::size_t at = rng() % line.size();
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          line[at] = c;
          break;
        case 1:
          line.insert(line.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        default:
          line.erase(at, 1);
      }
    }
    INFO(line);
    LogEntry fast;
    LogEntry slow;
    LogEntry any;
    parseDecisionLine(line, any);  // never crashes, never throws
    if (scanDecisionLine(line, fast, kAllLogFields)) {
      ++accepted;
      REQUIRE(parseDecisionLineSlow(line, slow, kAllLogFields));
      requireSame(fast, slow);
    }
  }
  CHECK(accepted > 1000);  // the mutations reach the accepting paths too
}

TEST_CASE("log reader: RFC 3339 timestamps", "[log_reader]") {
  using std::chrono::milliseconds;
  const LogTime base = LogTime(std::chrono::sys_days{std::chrono::year{2026} / 11 / 23});
  struct Case {
    const char* text;
    std::optional<LogTime> expect;
  };
  const std::vector<Case> cases = {
      {"2026-11-23T00:00:00Z", base},
      {"2026-11-23T09:01:02.345Z", base + 9h + 1min + 2s + milliseconds(345)},
      {"2026-11-23t09:01:02.3z", base + 9h + 1min + 2s + milliseconds(300)},
      {"2026-11-23 09:01:02Z", base + 9h + 1min + 2s},
      {"2026-11-23T10:01:02+01:00", base + 9h + 1min + 2s},
      {"2026-11-23T08:31:02-00:30", base + 9h + 1min + 2s},
      {"2026-11-23T09:01:02.123456789123Z",
       base + 9h + 1min + 2s + std::chrono::nanoseconds(123456789)},
      {"2024-02-29T00:00:00Z", LogTime(std::chrono::sys_days{std::chrono::year{2024} / 2 / 29})},
      {"2026-11-23T09:01:02", std::nullopt},   // no offset
      {"2026-11-23T09:01Z", std::nullopt},     // no seconds
      {"2026-11-23", std::nullopt},            // no time
      {"2025-02-29T00:00:00Z", std::nullopt},  // not a leap year
      {"2026-13-01T00:00:00Z", std::nullopt},
      {"2026-11-23T24:00:00Z", std::nullopt},
      {"2026-11-23T09:01:02.Z", std::nullopt},
      {"9999-11-23T09:01:02Z", std::nullopt},  // beyond what the clock type holds
      {"2026-11-23T09:01:02Zjunk", std::nullopt},
      {"", std::nullopt},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    CHECK(parseRfc3339(c.text) == c.expect);
  }
  CHECK(formatLogTime(base + 9h + 1min + 2s + milliseconds(345)) == "2026-11-23 09:01:02");
  CHECK(formatLogTime(base + 9h + 1min + 2s + milliseconds(45), true) == "2026-11-23 09:01:02.045");
}

TEST_CASE("log reader: --since and --until values", "[log_reader]") {
  const LogTime day = LogTime(std::chrono::sys_days{std::chrono::year{2026} / 11 / 23});
  const LogTime now = day + 12h + 30min;
  struct Case {
    const char* text;
    TimeBound bound;
    std::optional<LogTime> expect;
  };
  const std::vector<Case> cases = {
      {"30m", TimeBound::Since, now - 30min},
      {"1h", TimeBound::Since, now - 1h},
      {"90s", TimeBound::Since, now - 90s},
      {"7d", TimeBound::Since, now - std::chrono::days(7)},
      {"2w", TimeBound::Since, now - std::chrono::days(14)},
      {"1h30m", TimeBound::Since, now - 90min},
      {"now", TimeBound::Until, now},
      {"today", TimeBound::Since, day},
      {"today", TimeBound::Until, day + 24h},
      {"yesterday", TimeBound::Since, day - 24h},
      {"2026-11-23", TimeBound::Since, day},
      {"2026-11-23", TimeBound::Until, day + 24h},  // the whole day
      {"2026-11-23T08:00", TimeBound::Since, day + 8h},
      {"2026-11-23T08:00", TimeBound::Until, day + 8h},
      {"2026-11-23 08:00:30", TimeBound::Since, day + 8h + 30s},
      {"2026-11-23T08:00+01:00", TimeBound::Since, day + 7h},
      {"2026-11-23T08:00:00.5Z", TimeBound::Since, day + 8h + 500ms},
      {"1", TimeBound::Since, std::nullopt},
      {"1x", TimeBound::Since, std::nullopt},
      {"h", TimeBound::Since, std::nullopt},
      {"-1h", TimeBound::Since, std::nullopt},
      {"99999999999d", TimeBound::Since, std::nullopt},
      {"2026-11-23T8:00", TimeBound::Since, std::nullopt},
      {"23/11/2026", TimeBound::Since, std::nullopt},
      {"", TimeBound::Since, std::nullopt},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    std::string error;
    CHECK(parseTimeBound(c.text, c.bound, now, error) == c.expect);
    CHECK(error.empty() == c.expect.has_value());
  }
}

TEST_CASE("log reader: every filter, as a table", "[log_reader]") {
  std::vector<DecisionRecord> records = {
      record("2026-11-23T08:00:00Z", "S1", "203.0.113.5", "reject", "mail", "spf-fail",
             "Alice@Example.NET"),
      record("2026-11-23T09:30:00Z", "S2", "2001:db8::7", "tempfail", "connect", "dnsbl", ""),
      record("2026-11-23T10:00:00Z", "S3", "198.51.100.9", "accept", "rcpt", "postmaster",
             "bob@example.org"),
      record("2026-11-23T11:00:00Z", "S3", "198.51.100.9", "deliver", "data", "",
             "bob@example.org"),
      record("2026-11-24T00:00:00Z", "S4", "::ffff:203.0.113.77", "would-reject", "data", "viagra",
             "spam@spam.example"),
  };
  records[2].rcpts = {"Postmaster@OurDomain.example"};
  std::vector<LogEntry> entries(records.size());
  for (std::size_t i = 0; i < records.size(); ++i) {
    REQUIRE(parseDecisionLine(toJsonLine(records[i]), entries[i]) == LineParse::Ok);
  }
  const LogTime now = at("2026-11-24T01:00:00Z");
  struct Case {
    const char* name;
    LogFilterSpec spec;
    std::vector<std::size_t> expect;
  };
  const std::vector<Case> cases = {
      {"nothing", {}, {0, 1, 2, 3, 4}},
      {"since", {.since = "2026-11-23T09:30"}, {1, 2, 3, 4}},
      {"until (exclusive)", {.until = "2026-11-23T10:00"}, {0, 1}},
      {"until a date = that day", {.until = "2026-11-23"}, {0, 1, 2, 3}},
      {"since a duration", {.since = "2h"}, {4}},
      {"window", {.since = "2026-11-23T09:00", .until = "2026-11-23T10:30"}, {1, 2}},
      {"action", {.actions = {"reject"}}, {0}},
      {"actions OR", {.actions = {"reject", "tempfail"}}, {0, 1}},
      {"stage", {.stages = {"data"}}, {3, 4}},
      {"rule", {.rules = {"dnsbl", "viagra"}}, {1, 4}},
      {"ip exact", {.ips = {"203.0.113.5"}}, {0}},
      {"ip v4 CIDR matches mapped v6 too", {.ips = {"203.0.113.0/24"}}, {0, 4}},
      {"ip v6 CIDR", {.ips = {"2001:db8::/32"}}, {1}},
      {"ips OR", {.ips = {"2001:db8::/32", "198.51.100.0/24"}}, {1, 2, 3}},
      {"sender substring, any case", {.senders = {"example.net"}}, {0}},
      {"sender, upper case needle", {.senders = {"BOB@"}}, {2, 3}},
      {"null sender", {.senders = {"<>"}}, {1}},
      {"null sender or spam", {.senders = {"<>", "spam"}}, {1, 4}},
      {"rcpt substring, any case", {.rcpts = {"postmaster@ourdomain"}}, {2}},
      {"rcpt", {.rcpts = {"bob@"}}, {0, 1, 3, 4}},
      {"session", {.sessions = {"S3"}}, {2, 3}},
      {"AND across filters", {.actions = {"deliver", "accept"}, .stages = {"data"}}, {3}},
      {"no match", {.actions = {"reject"}, .stages = {"data"}}, {}},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    std::string error;
    std::optional<LogFilter> filter = LogFilter::compile(c.spec, now, error);
    REQUIRE(filter);
    std::vector<std::size_t> got;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      if (filter->matches(entries[i])) {
        got.push_back(i);
      }
    }
    CHECK(got == c.expect);
    // The filter reads nothing it did not ask the parser for.
    std::vector<std::size_t> narrow;
    for (std::size_t i = 0; i < records.size(); ++i) {
      LogEntry e;
      REQUIRE(parseDecisionLine(toJsonLine(records[i]), e, filter->fieldsNeeded()) ==
              LineParse::Ok);
      if (filter->matches(e)) {
        narrow.push_back(i);
      }
    }
    CHECK(narrow == c.expect);
  }
}

TEST_CASE("log reader: bad filters are refused with a reason", "[log_reader]") {
  const std::vector<LogFilterSpec> bad = {
      {.since = "soon"},
      {.until = "2026-11-32"},
      {.since = "2026-11-23T10:00", .until = "2026-11-23T09:00"},
      {.actions = {"rejected"}},
      {.stages = {"body"}},
      {.ips = {"203.0.113.0/33"}},
      {.ips = {"not-an-ip"}},
  };
  for (const LogFilterSpec& spec : bad) {
    std::string error;
    CHECK_FALSE(LogFilter::compile(spec, LogTime{}, error));
    CHECK_FALSE(error.empty());
  }
  std::string error;
  LogFilter::compile({.actions = {"rejected"}}, LogTime{}, error);
  CHECK_THAT(error, Catch::Contains("would-reject"));  // the valid words are listed
}

TEST_CASE("log reader: summary counts, rankings and the histogram", "[log_reader]") {
  LogSummary s;
  const auto add = [&](DecisionRecord r) {
    LogEntry e;
    REQUIRE(parseDecisionLine(toJsonLine(r), e, LogSummary::kFields) == LineParse::Ok);
    s.add(e);
  };
  for (int i = 0; i < 5; ++i) {
    add(record("2026-11-23T08:10:00Z", "A", "192.0.2.1", "reject", "mail", "spf-fail",
               "x@Example.COM"));
  }
  for (int i = 0; i < 3; ++i) {
    add(record("2026-11-23T08:50:00Z", "B", "192.0.2.2", "tempfail", "connect", "dnsbl", ""));
  }
  DecisionRecord scored =
      record("2026-11-23T10:20:00Z", "C", "192.0.2.2", "accept", "data", "", "y@other.org");
  scored.scoreRules = {"viagra", "words"};
  add(scored);
  add(record("2026-11-23T10:40:00Z", "D", "192.0.2.3", "reject", "rcpt", "dnsbl", "z@example.com"));

  CHECK(s.total() == 10);
  CHECK(s.first() == at("2026-11-23T08:10:00Z"));
  CHECK(s.last() == at("2026-11-23T10:40:00Z"));
  using D = LogSummary::Dimension;
  CHECK(s.top(D::Action, 10) ==
        std::vector<LogCount>{{"reject", 6}, {"tempfail", 3}, {"accept", 1}});
  CHECK(s.top(D::Stage, 10) ==
        std::vector<LogCount>{{"mail", 5}, {"connect", 3}, {"data", 1}, {"rcpt", 1}});
  CHECK(s.top(D::Rule, 10) == std::vector<LogCount>{{"spf-fail", 5}, {"dnsbl", 4}});
  CHECK(s.top(D::Rule, 1) == std::vector<LogCount>{{"spf-fail", 5}});
  CHECK(s.top(D::ScoreRule, 10) == std::vector<LogCount>{{"viagra", 1}, {"words", 1}});
  CHECK(s.top(D::ClientIp, 2) == std::vector<LogCount>{{"192.0.2.1", 5}, {"192.0.2.2", 4}});
  CHECK(s.top(D::SenderDomain, 10) ==
        std::vector<LogCount>{{"example.com", 6}, {"<>", 3}, {"other.org", 1}});

  Histogram h = s.histogram(at("2026-11-23T08:10:00Z"), at("2026-11-23T10:40:00.001Z"), 100);
  CHECK(h.width == 1h);
  REQUIRE(h.buckets.size() == 3);  // 08:00, 09:00 (empty), 10:00
  CHECK(h.buckets[0].start == at("2026-11-23T08:00:00Z"));
  CHECK(h.buckets[0].total == 8);
  CHECK(h.buckets[0].refused == 8);
  CHECK(h.buckets[1].total == 0);
  CHECK(h.buckets[2].total == 2);
  CHECK(h.buckets[2].refused == 1);
  CHECK(h.maxTotal == 8);

  // A week in at most 24 rows: the widths divide a day, so 12 h (7 h would do, but no).
  Histogram wide = s.histogram(at("2026-11-20T00:00:00Z"), at("2026-11-27T00:00:00Z"), 24);
  CHECK(wide.width == 12h);
  CHECK(wide.buckets.size() == 14);
  std::uint64_t sum = 0;
  for (const HistogramBucket& b : wide.buckets) {
    sum += b.total;
  }
  CHECK(sum == 10);
  CHECK(s.histogram(at("2026-11-23T10:00:00Z"), at("2026-11-23T09:00:00Z"), 24).buckets.empty());
  CHECK(senderDomain("") == "<>");
  CHECK(senderDomain("a@b@Sub.Example.ORG") == "sub.example.org");
  CHECK(senderDomain("postmaster") == "postmaster");
}

TEST_CASE("log reader: rotations are found oldest first", "[log_reader]") {
  TempDir dir;
  const std::string live = dir.file("decisions.jsonl");
  for (const char* name :
       {"decisions.jsonl", "decisions.jsonl.1", "decisions.jsonl.2.gz", "decisions.jsonl.10.gz",
        "decisions.jsonl-20261120.gz", "decisions.jsonl-20261121", "decisions.jsonl.bak",
        "decisions.jsonl.1.xz", "decisions.jsonlx.1", "other.jsonl.1"}) {
    writeFile(dir.file(name), "");
  }
  fs::create_directory(dir.file("decisions.jsonl.3"));  // not a file
  CHECK(logFilesWithRotations(live) ==
        std::vector<std::string>{
            dir.file("decisions.jsonl-20261120.gz"), dir.file("decisions.jsonl-20261121"),
            dir.file("decisions.jsonl.10.gz"), dir.file("decisions.jsonl.2.gz"),
            dir.file("decisions.jsonl.1"), live});
  CHECK(logFilesWithRotations(dir.file("missing.jsonl")).empty());
}

TEST_CASE("log reader: rotated and gzip'd files read in order, with filters", "[log_reader]") {
  TempDir dir;
  const std::string live = dir.file("decisions.jsonl");
  // Oldest in .2.gz (two gzip members, as `cat a.gz b.gz` makes), then .1, then the live file.
  writeGzip(live + ".2.gz",
            lines({record("2026-11-21T10:00:00Z", "G1", "192.0.2.1", "reject", "mail", "r1")}));
  writeGzip(live + ".2.gz",
            lines({record("2026-11-21T11:00:00Z", "G2", "192.0.2.1", "accept", "mail")}), "ab");
  writeFile(live + ".1",
            lines({record("2026-11-22T10:00:00Z", "P1", "192.0.2.2", "reject", "rcpt", "r2")}) +
                "garbage line\n\n");
  writeFile(live,
            lines({record("2026-11-23T10:00:00Z", "L1", "192.0.2.3", "reject", "data", "r3"),
                   record("2026-11-23T11:00:00Z", "L2", "192.0.2.3", "tempfail", "data", "r3")}) +
                "{\"time\":\"2026-11-23T12:00:00Z\",\"session\":\"L3\"}");  // no newline
  std::string error;
  auto collect = [&](const LogFilterSpec& spec) {
    std::optional<LogFilter> filter = LogFilter::compile(spec, at("2026-11-24T00:00:00Z"), error);
    REQUIRE(filter);
    std::vector<std::string> sessions;
    LogScanStats stats;
    scanLogFiles(
        logFilesWithRotations(live), *filter, kFieldSession,
        [&](const LogEntry& e, std::string_view) { sessions.push_back(e.record.session); }, stats);
    return std::make_pair(sessions, stats);
  };
  auto [all, stats] = collect({});
  CHECK(all == std::vector<std::string>{"G1", "G2", "P1", "L1", "L2", "L3"});
  CHECK(stats.lines == 6);
  CHECK(stats.unreadable == 1);
  CHECK(stats.firstUnreadable == live + ".1:2");
  CHECK(stats.fileErrors.empty());
  CHECK(collect({.actions = {"reject"}}).first == std::vector<std::string>{"G1", "P1", "L1"});
  CHECK(collect({.since = "2026-11-21T10:30"}).first ==
        std::vector<std::string>{"G2", "P1", "L1", "L2", "L3"});
}

TEST_CASE("log reader: files older than --since are not opened", "[log_reader]") {
  TempDir dir;
  const std::string live = dir.file("decisions.jsonl");
  writeFile(live + ".1",
            lines({record("2026-11-01T10:00:00Z", "OLD", "192.0.2.1", "reject", "mail")}));
  writeFile(live, lines({record("2026-11-23T10:00:00Z", "NEW", "192.0.2.1", "reject", "mail")}));
  const struct timespec old[2] = {{1762000000, 0}, {1762000000, 0}};  // 2025-11-01
  REQUIRE(utimensat(AT_FDCWD, (live + ".1").c_str(), old, 0) == 0);
  std::string error;
  std::optional<LogFilter> filter =
      LogFilter::compile({.since = "2026-11-20"}, at("2026-11-24T00:00:00Z"), error);
  REQUIRE(filter);
  LogScanStats stats;
  std::vector<std::string> sessions;
  scanLogFiles(
      logFilesWithRotations(live), *filter, kFieldSession,
      [&](const LogEntry& e, std::string_view) { sessions.push_back(e.record.session); }, stats);
  CHECK(sessions == std::vector<std::string>{"NEW"});
  CHECK(stats.filesSkipped == 1);
}

TEST_CASE("log reader: broken gzip and missing files are reported, not fatal", "[log_reader]") {
  TempDir dir;
  std::string good = lines({record("2026-11-23T10:00:00Z", "Z1", "192.0.2.1", "reject", "mail")});
  for (int i = 0; i < 200; ++i) {  // distinct lines, so half the bytes hold some of them
    good += lines({record("2026-11-23T10:00:01Z", "Z" + std::to_string(i * 7919), "192.0.2.1",
                          "reject", "mail")});
  }
  writeGzip(dir.file("whole.gz"), good);
  std::ifstream in(dir.file("whole.gz"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  writeFile(dir.file("cut.gz"), bytes.substr(0, bytes.size() / 2));
  std::string error;
  std::optional<LogFilter> filter = LogFilter::compile({}, LogTime{}, error);
  LogScanStats stats;
  scanLogFiles(
      {dir.file("cut.gz"), dir.file("missing"), dir.file("whole.gz")}, *filter, 0,
      [](const LogEntry&, std::string_view) {}, stats);
  REQUIRE(stats.fileErrors.size() == 2);
  CHECK_THAT(stats.fileErrors[0], Catch::Contains("cut.gz: gzip"));
  CHECK_THAT(stats.fileErrors[1], Catch::Contains("missing"));
  CHECK(stats.lines > 201);  // whole.gz, and what was readable of cut.gz
}

TEST_CASE("log reader: lines longer than any buffer, and partial last lines", "[log_reader]") {
  TempDir dir;
  const std::string path = dir.file("long.jsonl");
  DecisionRecord big = record("2026-11-23T10:00:00Z", "BIG", "192.0.2.1", "reject", "mail");
  big.rcpts.assign(1000, std::string(4000, 'r'));  // ~8 MB: more than one read block
  big.scoreRules.assign(1000, std::string(4000, 's'));
  writeFile(path, toJsonLine(big) + "\n" + "{\"time\":\"2026-11-23T10:00:00Z\"}");
  std::string error;
  std::unique_ptr<LogLineReader> reader = LogLineReader::open(path, error);
  REQUIRE(reader);
  std::string_view line;
  REQUIRE(reader->next(line) == LogLineReader::Next::Line);
  LogEntry e;
  REQUIRE(parseDecisionLine(line, e) == LineParse::Ok);
  CHECK(e.record.rcpts.size() == 1000);
  CHECK(line.size() > (4U << 20));
  // Following: the unfinished last line waits for its newline.
  CHECK(reader->next(line, false) == LogLineReader::Next::End);
  appendFile(path, "\n");
  REQUIRE(reader->next(line, false) == LogLineReader::Next::Line);
  CHECK(line == "{\"time\":\"2026-11-23T10:00:00Z\"}");
  CHECK(reader->lineNumber() == 2);
  CHECK(reader->next(line) == LogLineReader::Next::End);
}

TEST_CASE("log reader: following a file across rotation and truncation", "[log_reader]") {
  TempDir dir;
  const std::string live = dir.file("decisions.jsonl");
  writeFile(live, lines({record("2026-11-23T10:00:00Z", "OLD", "192.0.2.1", "reject", "mail")}));
  std::string error;
  std::optional<LogFilter> filter = LogFilter::compile({}, LogTime{}, error);
  std::vector<std::string> seen;
  LogScanStats stats;
  const LogLineSink sink = [&](const LogEntry& e, std::string_view) {
    seen.push_back(e.record.session);
  };
  LogFollower follower(live, /*startAtEnd=*/true);
  follower.poll(*filter, kFieldSession, sink, stats);
  CHECK(seen.empty());  // what was there before is skipped

  appendFile(live, lines({record("2026-11-23T10:00:01Z", "A", "192.0.2.1", "reject", "mail")}));
  appendFile(live, "{\"time\":\"2026-11-23T10:00:02Z\",\"session\":\"B\"");  // half written
  follower.poll(*filter, kFieldSession, sink, stats);
  CHECK(seen == std::vector<std::string>{"A"});

  // logrotate: the writer finishes its line in the renamed file, reopens the path.
  appendFile(live, "}\n");
  fs::rename(live, live + ".1");
  writeFile(live, lines({record("2026-11-23T10:00:03Z", "C", "192.0.2.1", "reject", "mail")}));
  follower.poll(*filter, kFieldSession, sink, stats);
  CHECK(seen == std::vector<std::string>{"A", "B", "C"});

  // copytruncate: the same file is emptied, then written from the start.
  fs::resize_file(live, 0);
  follower.poll(*filter, kFieldSession, sink, stats);
  appendFile(live, lines({record("2026-11-23T10:00:04Z", "D", "192.0.2.1", "reject", "mail")}));
  follower.poll(*filter, kFieldSession, sink, stats);
  CHECK(seen == std::vector<std::string>{"A", "B", "C", "D"});

  // Gone (between rename and reopen) and back: waits, then reads the new file whole.
  fs::remove(live);
  follower.poll(*filter, kFieldSession, sink, stats);
  writeFile(live, lines({record("2026-11-23T10:00:05Z", "E", "192.0.2.1", "reject", "mail")}));
  follower.poll(*filter, kFieldSession, sink, stats);
  CHECK(seen == std::vector<std::string>{"A", "B", "C", "D", "E"});
  CHECK(stats.fileErrors.empty());
}

}  // namespace smtpgate::policies
