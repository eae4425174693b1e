// `smtpgate log` as an admin runs it: the real executable over generated
// decision logs (100,000 lines with hostile strings among them), its filters,
// --json, --summary, --explain, -f and its exit codes.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "policies/decision_log.h"
#include "tests/cli/run_command.h"
#include "tests/cli/temp_dir.h"

namespace fs = std::filesystem;
using smtpgate::policies::DecisionRecord;
using smtpgate::policies::toJsonLine;

namespace {

using Result = smtpgate::testing::CommandOutput;
using smtpgate::testing::shellQuote;

/// Runs `smtpgate log ARGS`; stderr is kept apart unless `withStderr`.
Result runLog(const std::string& args, bool withStderr = false) {
  return smtpgate::testing::runSmtpgate("log " + args, withStderr);
}

std::size_t countLines(const std::string& text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

using TempDir = smtpgate::testing::CliTempDir;

void writeFile(const std::string& path, const std::string& text, bool append = false) {
  std::ofstream(path, std::ios::binary | (append ? std::ios::app : std::ios::trunc)) << text;
}

std::chrono::system_clock::time_point at(int day, int hour, int minute, int second = 0) {
  using namespace std::chrono;
  return system_clock::time_point(sys_days{year{2026} / 11 / day}) + hours(hour) + minutes(minute) +
         seconds(second);
}

DecisionRecord decision(std::chrono::system_clock::time_point time, std::string session,
                        std::string ip, std::string stage, std::string action,
                        std::string rule = "") {
  DecisionRecord r;
  r.time = time;
  r.session = std::move(session);
  r.clientIp = std::move(ip);
  r.clientPtr = "mx.example.net";
  r.helo = "mx.example.net";
  r.sender = "alice@example.net";
  r.rcpts = {"bob@example.com"};
  r.stage = std::move(stage);
  r.action = std::move(action);
  r.rule = std::move(rule);
  r.reply = r.action == "reject" ? "550 5.7.1 Rejected by " + r.rule : "";
  r.rulesetHash = "3f9a1c0b7d2e";
  r.frontend = "proxy";
  return r;
}

/// 100,000 decisions with known counts; 1 in 20 carries hostile text.
struct BigLog {
  std::string text;
  std::map<std::string, std::size_t> byAction, byRule;
  std::size_t inNet = 0;         ///< client in 203.0.113.0/24
  std::size_t spamSender = 0;    ///< sender contains "spammer"
  std::size_t rejectsDay23 = 0;  ///< action reject on 2026-11-23
  std::size_t total = 0;
};

BigLog makeBigLog() {
  static const std::vector<std::string> kHostile = {
      "\x1b[2J\x1b[31mred", "quote \" back\\slash", std::string("nul\0x", 5),
      "bad \xC3\x28 utf8",  "sep\xE2\x80\xA8line",  "emoji \xF0\x9F\x98\x80\r\n"};
  static const char* kActions[] = {"reject", "accept", "tempfail", "deliver", "would-reject"};
  static const char* kStages[] = {"connect", "helo", "mail", "rcpt", "data"};
  std::mt19937 rng(7);
  BigLog log;
  for (int i = 0; i < 100000; ++i) {
    const auto time = at(22 + i / 50000, (i / 2100) % 24, i % 60);
    const std::string ip = i % 7 == 0 ? "203.0.113." + std::to_string(i % 250)
                                      : "198.51." + std::to_string(i % 200) + ".9";
    const std::string action = kActions[rng() % 5];
    const std::string rule = action == "accept" ? "" : "rule-" + std::to_string(rng() % 30);
    DecisionRecord r = decision(time, "S" + std::to_string(i), ip, kStages[i % 5], action, rule);
    if (i % 20 == 0) {
      r.helo = kHostile[rng() % kHostile.size()];
      r.subject = kHostile[rng() % kHostile.size()];
      r.sender = "spammer" + kHostile[rng() % kHostile.size()] + "@bad.example";
    }
    log.text += toJsonLine(r) + "\n";
    ++log.byAction[action];
    log.byRule[rule] += rule.empty() ? 0 : 1;
    log.inNet += i % 7 == 0 ? 1 : 0;
    log.spamSender += i % 20 == 0 ? 1 : 0;
    log.rejectsDay23 += action == "reject" && i >= 50000 ? 1 : 0;
    ++log.total;
  }
  return log;
}

std::uint64_t countOf(const nlohmann::json& rows, const std::string& value) {
  for (const auto& row : rows) {
    if (row["value"] == value) {
      return row["count"].get<std::uint64_t>();
    }
  }
  return 0;
}

}  // namespace

TEST_CASE("log: filters over 100,000 generated lines give the expected counts", "[cli]") {
  TempDir dir;
  const BigLog log = makeBigLog();
  const std::string file = dir.file("decisions.jsonl");
  writeFile(file, log.text);
  const std::string base = "--file " + shellQuote(file) + " --json ";

  CHECK(countLines(runLog(base).out) == log.total);
  CHECK(countLines(runLog(base + "--action reject").out) == log.byAction.at("reject"));
  CHECK(countLines(runLog(base + "--action reject,tempfail").out) ==
        log.byAction.at("reject") + log.byAction.at("tempfail"));
  CHECK(countLines(runLog(base + "--action reject --action tempfail").out) ==
        log.byAction.at("reject") + log.byAction.at("tempfail"));
  CHECK(countLines(runLog(base + "--rule rule-7").out) == log.byRule.at("rule-7"));
  CHECK(countLines(runLog(base + "--ip 203.0.113.0/24").out) == log.inNet);
  CHECK(countLines(runLog(base + "--sender SPAMMER").out) == log.spamSender);
  CHECK(countLines(runLog(base + "--since 2026-11-23 --action reject").out) == log.rejectsDay23);
  CHECK(countLines(runLog(base + "--stage data --session S4,S9,S10").out) == 2);

  Result summary = runLog("--file " + shellQuote(file) + " --summary --json");
  REQUIRE(summary.exitCode == 0);
  const auto j = nlohmann::json::parse(summary.out);
  CHECK(j["decisions"] == log.total);
  CHECK(j["unreadable_lines"] == 0);
  for (const auto& [action, count] : log.byAction) {
    CHECK(countOf(j["by_action"], action) == count);
  }
  CHECK(countOf(j["top_rules"], "rule-7") == log.byRule.at("rule-7"));
  CHECK(j["top_rules"].size() == 20);
  CHECK(j["top_client_ips"].size() == 10);
  CHECK(countOf(j["top_sender_domains"], "example.net") == log.total - log.spamSender);
  std::uint64_t histogramTotal = 0;
  for (const auto& b : j["histogram"]["buckets"]) {
    histogramTotal += b["total"].get<std::uint64_t>();
  }
  CHECK(histogramTotal == log.total);
  CHECK(j["histogram"]["width_hours"] == 1);
}

TEST_CASE("log: --json passes lines through byte for byte", "[cli]") {
  TempDir dir;
  std::string text;
  DecisionRecord hostile = decision(at(23, 9, 1), "H1", "203.0.113.5", "data", "reject", "spam");
  hostile.subject = "\x1b]0;owned\x07 \xF0\x9F\x98\x80 \"q\" \\ \xE2\x80\xA8";
  text += toJsonLine(hostile) + "\n";
  text += toJsonLine(decision(at(23, 9, 2), "H2", "203.0.113.6", "rcpt", "accept")) + "\n";
  writeFile(dir.file("d.jsonl"), text);
  Result r = runLog("--file " + shellQuote(dir.file("d.jsonl")) + " --json");
  CHECK(r.exitCode == 0);
  CHECK(r.out == text);
}

TEST_CASE("log: one readable line per decision, hostile text neutralised", "[cli]") {
  TempDir dir;
  DecisionRecord r =
      decision(at(23, 9, 1, 2), "4F2A9C01", "203.0.113.5", "mail", "reject", "spf-fail");
  r.reply = "550 5.7.23 SPF check failed for alice@example.net";
  r.rcpts = {"bob@example.com", "carol@example.com"};
  DecisionRecord evil = decision(at(23, 9, 2), "EVIL", "198.51.100.1", "helo", "reject", "bad");
  evil.sender = "x\x1b[2J\x1b]0;title\x07\xE2\x80\xAE@evil.example";
  writeFile(dir.file("d.jsonl"), toJsonLine(r) + "\n" + toJsonLine(evil) + "\n");
  Result out = runLog("--file " + shellQuote(dir.file("d.jsonl")));
  INFO(out.out);
  CHECK(out.exitCode == 0);
  REQUIRE(countLines(out.out) == 2);
  const std::string first = out.out.substr(0, out.out.find('\n'));
  CHECK(first.rfind("2026-11-23 09:01:02 4F2A9C01 203.0.113.5", 0) == 0);
  for (const char* part : {" reject ", " mail ", " spf-fail ", "550 5.7.23 SPF check failed",
                           "<alice@example.net> -> <bob@example.com> +1"}) {
    CHECK_THAT(first, Catch::Contains(part));
  }
  CHECK(out.out.find('\x1b') == std::string::npos);
  CHECK(out.out.find('\x07') == std::string::npos);
  CHECK(out.out.find("\xE2\x80\xAE") == std::string::npos);  // right-to-left override
  CHECK_THAT(out.out, Catch::Contains("@evil.example"));
}

TEST_CASE("log: --summary prints every section", "[cli]") {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 30; ++i) {
    text += toJsonLine(decision(at(23, 8 + i % 3, i), "S" + std::to_string(i),
                                "203.0.113." + std::to_string(i % 4), "rcpt",
                                i % 2 ? "reject" : "accept", i % 2 ? "no-relay" : "")) +
            "\n";
  }
  writeFile(dir.file("d.jsonl"), text + "garbage\n{\"time\":\"never\"}\n");
  Result r = runLog("--file " + shellQuote(dir.file("d.jsonl")) + " --summary", true);
  INFO(r.out);
  CHECK(r.exitCode == 0);
  for (const char* section :
       {"Decisions: 30", "By action", "By stage", "Top rules", "Top client IPs",
        "Top sender domains", "Decisions per hour", "2026-11-23 08:00", "2026-11-23 10:00",
        "no-relay", "█", "2 unreadable lines skipped"}) {
    CHECK_THAT(r.out, Catch::Contains(section));
  }
}

TEST_CASE("log: --explain shows one session in time order", "[cli]") {
  TempDir dir;
  const std::string live = dir.file("decisions.jsonl");
  DecisionRecord rcpt =
      decision(at(23, 9, 0, 3), "S1", "203.0.113.5", "rcpt", "reject", "no-relay");
  rcpt.ruleWhere = "/etc/smtpgate/rules/10-basic.rules:7";
  DecisionRecord mail =
      decision(at(23, 9, 0, 2), "S1", "203.0.113.5", "mail", "would-reject", "spf-fail");
  mail.spf = "fail";
  DecisionRecord data = decision(at(23, 9, 0, 5), "S1", "203.0.113.5", "data", "deliver");
  data.score = 4.5;
  data.dkim = "pass";
  data.dmarc = "pass";
  data.queueId = "4QX1Z";
  data.transaction = 1;
  data.rcptsPassed = {"a@example.com"};
  data.rcptsBackendRefused = {"gone@example.com"};
  data.facts = {"client.port=40312", "tls=true", "spf.explanation=see  http://x.test/"};
  // The rotation holds the oldest line; in the live file two are out of order.
  writeFile(live + ".1", toJsonLine(mail) + "\n");
  writeFile(live,
            toJsonLine(data) + "\n" +
                toJsonLine(decision(at(23, 9, 0, 4), "S2", "192.0.2.1", "connect", "reject", "x")) +
                "\n" + toJsonLine(rcpt) + "\n");
  writeFile(dir.file("smtpgate.toml"), "[log]\ndecisions = \"decisions.jsonl\"\n");
  Result r = runLog("-c " + shellQuote(dir.file("smtpgate.toml")) + " --explain S1");
  INFO(r.out);
  CHECK(r.exitCode == 0);
  CHECK_THAT(r.out, Catch::Contains("Session S1: 3 decisions"));
  const std::size_t m = r.out.find("09:00:02.000  mail  would-reject");
  const std::size_t rc = r.out.find("09:00:03.000  rcpt  reject");
  const std::size_t d = r.out.find("09:00:05.000  data  deliver");
  CHECK(m != std::string::npos);
  CHECK(rc != std::string::npos);
  CHECK(d != std::string::npos);
  CHECK(m < rc);
  CHECK(rc < d);
  for (const char* part :
       {"spf=fail", "no-relay  at /etc/smtpgate/rules/10-basic.rules:7", "dkim=pass  dmarc=pass",
        "4.5", "4QX1Z", "550 5.7.1 Rejected by no-relay", "deliver  (transaction 1)",
        "passed      <a@example.com>", "backend no  <gone@example.com>",
        "facts       dkim=pass  dmarc=pass  client.port=40312  tls=true  "
        "spf.explanation=see  http://x.test/"}) {
    CHECK_THAT(r.out, Catch::Contains(part));
  }
  CHECK(r.out.find("S2") == std::string::npos);
  Result json = runLog("-c " + shellQuote(dir.file("smtpgate.toml")) + " --explain S1 --json");
  CHECK(countLines(json.out) == 3);
  Result none = runLog("-c " + shellQuote(dir.file("smtpgate.toml")) + " --explain NOPE", true);
  CHECK(none.exitCode == 0);
  CHECK_THAT(none.out, Catch::Contains("no decisions of session NOPE"));
}

TEST_CASE("log: the config's log with its rotations, gzip'd ones too", "[cli]") {
  TempDir dir;
  const std::string live = dir.file("decisions.jsonl");
  const std::string old =
      toJsonLine(decision(at(21, 9, 0), "OLD", "192.0.2.1", "mail", "reject", "r")) + "\n";
  gzFile gz = gzopen((live + ".2.gz").c_str(), "wb");
  REQUIRE(gz != nullptr);
  gzwrite(gz, old.data(), static_cast<unsigned>(old.size()));
  gzclose(gz);
  writeFile(live + ".1",
            toJsonLine(decision(at(22, 9, 0), "MID", "192.0.2.1", "mail", "reject", "r")) + "\n");
  writeFile(live,
            toJsonLine(decision(at(23, 9, 0), "NEW", "192.0.2.1", "mail", "reject", "r")) + "\n");
  writeFile(dir.file("smtpgate.toml"), "[log]\ndecisions = \"decisions.jsonl\"\n");
  const std::string config = "-c " + shellQuote(dir.file("smtpgate.toml"));
  Result all = runLog(config + " --json");
  CHECK(all.exitCode == 0);
  REQUIRE(countLines(all.out) == 3);
  CHECK(all.out.find("OLD") < all.out.find("MID"));
  CHECK(all.out.find("MID") < all.out.find("NEW"));
  CHECK(countLines(runLog(config + " --json --since 2026-11-22 --until 2026-11-22").out) == 1);
  CHECK(countLines(runLog("--file " + shellQuote(live) + " --json").out) == 3);
  CHECK(countLines(runLog("--file " + shellQuote(live) + " --json --no-rotated").out) == 1);
  CHECK(countLines(runLog("--file " + shellQuote(live + ".2.gz") + " --json").out) == 1);
}

TEST_CASE("log: exit codes", "[cli]") {
  TempDir dir;
  writeFile(dir.file("d.jsonl"),
            toJsonLine(decision(at(23, 9, 0), "S", "192.0.2.1", "mail", "reject", "r")) + "\n");
  const std::string file = "--file " + shellQuote(dir.file("d.jsonl"));
  CHECK(runLog(file + " --action accept").exitCode == 0);  // nothing matched is fine
  Result missing = runLog("--file " + shellQuote(dir.file("nope.jsonl")), true);
  CHECK(missing.exitCode == 66);
  CHECK_THAT(missing.out, Catch::Contains("nope.jsonl"));
  writeFile(dir.file("smtpgate.toml"), "[log]\ndecisions = \"none-yet.jsonl\"\n");
  CHECK(runLog("-c " + shellQuote(dir.file("smtpgate.toml"))).exitCode == 66);
  CHECK(runLog("-c " + shellQuote(dir.file("missing.toml"))).exitCode == 78);
  for (const char* bad :
       {" --since yesterdayish", " --until 2026-13-01", " --action rejected", " --stage body",
        " --ip 10.0.0.0/99", " -f --summary", " --summary --explain S", " -c x.toml", " --bogus"}) {
    Result r = runLog(file + bad, true);
    INFO(bad << "\n" << r.out);
    CHECK(r.exitCode == 64);
  }
}

TEST_CASE("log -f follows the file across a rotation until SIGTERM", "[cli]") {
  TempDir dir;
  const std::string live = dir.file("decisions.jsonl");
  writeFile(live, toJsonLine(decision(at(23, 9, 0), "BEFORE", "192.0.2.1", "mail", "reject", "r")) +
                      "\n");
  int out[2];
  REQUIRE(::pipe(out) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    ::execl(SMTPGATE_BINARY, "smtpgate", "log", "-f", "--json", "--file", live.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  std::string seen;
  // Reads until `needle` shows up, or `patience` passes.
  const auto waitFor = [&](const std::string& needle,
                           std::chrono::milliseconds patience = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + patience;
    while (seen.find(needle) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      struct pollfd p {
        out[0], POLLIN, 0
      };
      if (::poll(&p, 1, 100) > 0) {
        char buf[4096];
        const ssize_t n = ::read(out[0], buf, sizeof buf);
        if (n <= 0) {
          break;
        }
        seen.append(buf, static_cast<std::size_t>(n));
      }
    }
    return seen.find(needle) != std::string::npos;
  };
  // The follower starts at the end (no --since): keep appending until it shows.
  bool started = false;
  for (int i = 0; i < 50 && !started; ++i) {
    writeFile(
        live,
        toJsonLine(decision(at(23, 9, 1), "FIRST", "192.0.2.1", "mail", "reject", "r")) + "\n",
        true);
    started = waitFor("FIRST", std::chrono::milliseconds(500));
  }
  CHECK(started);
  fs::rename(live, live + ".1");
  writeFile(live + ".1",
            toJsonLine(decision(at(23, 9, 2), "LATE", "192.0.2.1", "mail", "reject", "r")) + "\n",
            true);
  writeFile(
      live,
      toJsonLine(decision(at(23, 9, 3), "ROTATED", "192.0.2.1", "mail", "reject", "r")) + "\n");
  CHECK(waitFor("ROTATED"));
  CHECK(seen.find("LATE") != std::string::npos);
  CHECK(seen.find("BEFORE") == std::string::npos);
  ::kill(pid, SIGTERM);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  ::close(out[0]);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
