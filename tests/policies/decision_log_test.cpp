#include "policies/decision_log.h"

#include <signal.h>
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace smtpgate::policies {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "decision_log_test.XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::vector<std::string> readLines(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }
  return lines;
}

DecisionRecord sampleRecord() {
  DecisionRecord r;
  r.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1795424462345));
  r.session = "4F2A9C01";
  r.clientIp = "203.0.113.5";
  r.helo = "mail.example.net";
  r.sender = "alice@example.net";
  r.rcpts = {"bob@example.com", "carol@example.com"};
  r.stage = "rcpt";
  r.action = "reject";
  r.rule = "no-relay";
  r.ruleWhere = "/etc/smtpgate/rules/10-basic.rules:12";
  r.reply = "554 5.7.1 Relay access denied";
  r.rulesetHash = "sha256:abcd";
  r.frontend = "proxy";
  return r;
}

TEST_CASE("decision log: record as one JSON line with stable keys", "[decision_log]") {
  const std::string line = toJsonLine(sampleRecord());
  CHECK(line.find('\n') == std::string::npos);
  const json j = json::parse(line);
  CHECK(j["time"] == "2026-11-23T09:01:02.345Z");
  CHECK(j["session"] == "4F2A9C01");
  CHECK(j["client_ip"] == "203.0.113.5");
  CHECK(j["rcpts"] == json::array({"bob@example.com", "carol@example.com"}));
  CHECK(j["stage"] == "rcpt");
  CHECK(j["action"] == "reject");
  CHECK(j["rule"] == "no-relay");
  CHECK(j["rule_where"] == "/etc/smtpgate/rules/10-basic.rules:12");
  CHECK(j["ruleset"] == "sha256:abcd");
  CHECK(j["score"] == 0.0);
  CHECK(j["score_rules"] == json::array());
  // Empty optional strings are left out; flags appear only when needed.
  for (const char* absent : {"client_ptr", "spf", "dkim", "dmarc", "message_id", "subject",
                             "queue_id", "invalid_utf8", "truncated"}) {
    CAPTURE(absent);
    CHECK_FALSE(j.contains(absent));
  }
  CHECK(line.rfind("{\"time\":", 0) == 0);  // documented key order, time first
}

TEST_CASE("decision log: time is RFC 3339 UTC with milliseconds", "[decision_log]") {
  using std::chrono::milliseconds;
  using TP = std::chrono::system_clock::time_point;
  CHECK(formatRfc3339Millis(TP(milliseconds(0))) == "1970-01-01T00:00:00.000Z");
  CHECK(formatRfc3339Millis(TP(milliseconds(1795424462345))) == "2026-11-23T09:01:02.345Z");
  CHECK(formatRfc3339Millis(TP(milliseconds(-1))) == "1969-12-31T23:59:59.999Z");
}

TEST_CASE("decision log: hostile bytes stay one valid line", "[decision_log]") {
  struct Row {
    const char* name;
    std::string bytes;
    bool invalid;
  };
  using namespace std::string_literals;
  const Row rows[] = {
      {"CR", "a\rb", false},
      {"LF", "a\nb", false},
      {"CRLF injection", "x\r\n{\"action\":\"accept\"}", false},
      {"NUL", "a\0b"s, false},
      {"ESC", "a\x1b[31mred", false},
      {"DEL",
       "a\x7f"
       "b",
       false},
      {"quote", "a\"b", false},
      {"backslash", "a\\b", false},
      {"U+2028",
       "a\xE2\x80\xA8"
       "b",
       false},
      {"U+2029",
       "a\xE2\x80\xA9"
       "b",
       false},
      {"valid UTF-8",
       "Gr\xC3\xBC\xC3\x9F"
       "e \xF0\x9F\x93\xA7",
       false},
      {"lone continuation 0x80",
       "a\x80"
       "b",
       true},
      {"overlong C0 AF",
       "a\xC0\xAF"
       "b",
       true},
      {"surrogate ED A0 80",
       "a\xED\xA0\x80"
       "b",
       true},
      {"above U+10FFFF F4 90 80 80",
       "a\xF4\x90\x80\x80"
       "b",
       true},
      {"truncated E2 82", "a\xE2\x82", true},
      {"truncated E2 82 then ASCII", "\xE2\x82z", true},
      {"F5 lead", "\xF5\x80\x80\x80", true},
  };
  for (const auto& row : rows) {
    CAPTURE(row.name);
    DecisionRecord r = sampleRecord();
    r.subject = row.bytes;
    r.sender = row.bytes;
    const std::string line = toJsonLine(r);
    CHECK(line.find('\n') == std::string::npos);
    CHECK(line.find('\r') == std::string::npos);
    CHECK(line.find("\xE2\x80\xA8") == std::string::npos);
    CHECK(line.find("\xE2\x80\xA9") == std::string::npos);
    CHECK(isValidUtf8(line));
    json j;
    REQUIRE_NOTHROW(j = json::parse(line));
    CHECK(isValidUtf8(row.bytes) == !row.invalid);
    if (row.invalid) {
      CHECK(j["invalid_utf8"] == json::array({"sender", "subject"}));
      CHECK(j["subject"].get<std::string>().find("\xEF\xBF\xBD") != std::string::npos);
    } else {
      CHECK_FALSE(j.contains("invalid_utf8"));
      CHECK(j["subject"] == row.bytes);  // round-trips exactly
    }
  }
}

TEST_CASE("decision log: UTF-8 validity at the edges", "[decision_log]") {
  struct Row {
    std::string bytes;
    bool valid;
  };
  const Row rows[] = {
      {"", true},
      {"\x7f", true},
      {"\xC2\x80", true},           // U+0080, smallest 2-byte
      {"\xC1\xBF", false},          // overlong U+007F
      {"\xE0\xA0\x80", true},       // U+0800
      {"\xE0\x9F\xBF", false},      // overlong U+07FF
      {"\xED\x9F\xBF", true},       // U+D7FF
      {"\xED\xBF\xBF", false},      // surrogate U+DFFF
      {"\xEF\xBF\xBF", true},       // U+FFFF
      {"\xF0\x90\x80\x80", true},   // U+10000
      {"\xF0\x8F\xBF\xBF", false},  // overlong U+FFFF
      {"\xF4\x8F\xBF\xBF", true},   // U+10FFFF
      {"\xF4\x90\x80\x80", false},  // U+110000
      {"\xE2\x28\xA1", false},      // bad continuation
      {"\xF0\x90\x80", false},      // truncated
  };
  for (const auto& row : rows) {
    CAPTURE(row.bytes);
    CHECK(isValidUtf8(row.bytes) == row.valid);
  }
}

TEST_CASE("decision log: oversized values are cut and flagged", "[decision_log]") {
  DecisionRecord r = sampleRecord();
  // 3-byte characters, so the cut falls inside one and must back up.
  std::string longSubject;
  while (longSubject.size() < kMaxFieldBytes + 100) {
    longSubject += "\xE2\x82\xAC";
  }
  r.subject = longSubject;
  r.rcpts.assign(kMaxListItems + 5, "x@example.com");
  const json j = json::parse(toJsonLine(r));
  const auto subject = j["subject"].get<std::string>();
  CHECK(subject.size() <= kMaxFieldBytes);
  CHECK(isValidUtf8(subject));
  CHECK(j["rcpts"].size() == kMaxListItems);
  CHECK(j["truncated"] == json::array({"rcpts", "subject"}));
  CHECK_FALSE(j.contains("invalid_utf8"));
}

TEST_CASE("decision log: appending two records gives two lines", "[decision_log]") {
  TempDir dir;
  const fs::path file = dir.path / "decisions.jsonl";
  std::string error;
  auto log = DecisionLog::open(file.string(), error);
  REQUIRE(log != nullptr);
  CHECK(error.empty());
  DecisionRecord a = sampleRecord();
  DecisionRecord b = sampleRecord();
  b.session = "second";
  CHECK(log->write(a));
  CHECK(log->write(b));
  const auto lines = readLines(file);
  REQUIRE(lines.size() == 2);
  CHECK(json::parse(lines[0])["session"] == "4F2A9C01");
  CHECK(json::parse(lines[1])["session"] == "second");
  CHECK((fs::status(file).permissions() & fs::perms::all) ==
        (fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read));
}

TEST_CASE("decision log: concurrent writers never split a line", "[decision_log]") {
  TempDir dir;
  const fs::path file = dir.path / "decisions.jsonl";
  std::string error;
  auto log = DecisionLog::open(file.string(), error);
  REQUIRE(log != nullptr);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&log, t] {
      DecisionRecord r = sampleRecord();
      r.session = "t" + std::to_string(t);
      r.subject.assign(1000, static_cast<char>('a' + t));
      for (int i = 0; i < kPerThread; ++i) {
        log->write(r);
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  const auto lines = readLines(file);
  CHECK(lines.size() == kThreads * kPerThread);
  for (const auto& line : lines) {
    REQUIRE_NOTHROW(json::parse(line));
  }
}

TEST_CASE("decision log: open reports a missing directory", "[decision_log]") {
  TempDir dir;
  std::string error;
  auto log = DecisionLog::open((dir.path / "nope" / "decisions.jsonl").string(), error);
  CHECK(log == nullptr);
  CHECK_THAT(error, Catch::Contains("does not exist"));
  CHECK_FALSE(fs::exists(dir.path / "nope"));
}

TEST_CASE("decision log: SIGUSR1 reopens the path after rotation", "[decision_log]") {
  TempDir dir;
  const fs::path file = dir.path / "decisions.jsonl";
  const fs::path rotated = dir.path / "decisions.jsonl.1";
  std::string error;
  auto log = DecisionLog::open(file.string(), error);
  REQUIRE(log != nullptr);
  REQUIRE(DecisionLog::reopenOnSignal(log.get(), SIGUSR1));

  DecisionRecord first = sampleRecord();
  first.session = "before";
  DecisionRecord second = sampleRecord();
  second.session = "after";
  REQUIRE(log->write(first));
  fs::rename(file, rotated);
  REQUIRE(raise(SIGUSR1) == 0);
  REQUIRE(log->write(second));

  const auto oldLines = readLines(rotated);
  const auto newLines = readLines(file);
  REQUIRE(oldLines.size() == 1);
  REQUIRE(newLines.size() == 1);
  CHECK(json::parse(oldLines[0])["session"] == "before");
  CHECK(json::parse(newLines[0])["session"] == "after");
  CHECK(log->lastError().empty());

  DecisionLog::reopenOnSignal(nullptr, SIGUSR1);  // detach before the log goes away
}

TEST_CASE("decision log: a failed reopen keeps writing to the old file", "[decision_log]") {
  TempDir dir;
  const fs::path sub = dir.path / "logs";
  fs::create_directory(sub);
  const fs::path file = sub / "decisions.jsonl";
  std::string error;
  auto log = DecisionLog::open(file.string(), error);
  REQUIRE(log != nullptr);
  fs::rename(sub, dir.path / "moved");  // the path can no longer be created
  log->requestReopen();
  CHECK(log->write(sampleRecord()));
  CHECK_THAT(log->lastError(), Catch::Contains("cannot reopen"));
  CHECK(readLines(dir.path / "moved" / "decisions.jsonl").size() == 1);
}

}  // namespace
}  // namespace smtpgate::policies
