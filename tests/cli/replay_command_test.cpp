// `smtpgate replay` as an admin runs it: the real executable over decision
// logs written here (with the envelope keys the proxy writes), its output,
// --json, --since, rule files versus a candidate config, and its exit codes
// (0 nothing changes, 1 changes, 64 usage, 66 no log, 78 broken config or
// candidate). The live-proxy test is tests/integration/replay_test.cpp.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "policies/decision_log.h"
#include "policies/decision_log_reader.h"
#include "tests/cli/run_command.h"
#include "tests/cli/temp_dir.h"

namespace fs = std::filesystem;
using smtpgate::policies::DecisionRecord;
using smtpgate::policies::toJsonLine;

namespace {

using Result = smtpgate::testing::CommandOutput;
using smtpgate::testing::shellQuote;

Result runReplay(const std::string& args, bool withStderr = true) {
  return smtpgate::testing::runSmtpgate("replay " + args, withStderr);
}

using TempDir = smtpgate::testing::CliTempDir;

const char* kLive = "rule no-relay on rcpt when rcpt.domain != \"our.test\" then reject\n";
const char* kBulk = "rule bulk on mail when sender ~ /@bulk\\.example$/ then reject\n";

/// A delivery line as the proxy writes it (one transaction, one recipient).
DecisionRecord delivery(const std::string& session, const std::string& ip,
                        const std::string& sender, const char* time) {
  DecisionRecord r;
  r.time = *smtpgate::policies::parseRfc3339(time);
  r.session = session;
  r.clientIp = ip;
  r.helo = "client.test";
  r.sender = sender;
  r.rcpts = {"u@our.test"};
  r.stage = "data";
  r.action = "deliver";
  r.rulesetHash = "abc";
  r.frontend = "proxy";
  r.transaction = 1;
  r.rcptsPassed = {"u@our.test"};
  r.facts = {"client.port=40000", "local.port=25", "pregreet=false", "tls=false", "mail.size=0"};
  return r;
}

/// A config whose decision log is `log` and whose rules are `rules`.
std::string writeConfig(const TempDir& dir, const std::string& log, const std::string& rules) {
  dir.write("live.rules", rules);
  return dir.write("smtpgate.toml",
                   "[rules]\nfiles = [\"live.rules\"]\n[log]\ndecisions = \"" + log + "\"\n");
}

std::string writeLog(const TempDir& dir, const std::vector<DecisionRecord>& records) {
  std::string text;
  for (const DecisionRecord& r : records) {
    text += toJsonLine(r) + "\n";
  }
  return dir.write("decisions.jsonl", text);
}

}  // namespace

TEST_CASE("replay: rule files against the configured log, text and JSON", "[cli][replay]") {
  TempDir dir;
  DecisionRecord hostile =
      delivery("S3", "192.0.2.3", "evil\x1b[2J@bulk.example", "2026-11-23T09:02:00Z");
  DecisionRecord old = delivery("S4", "192.0.2.4", "a@bulk.example", "2026-11-23T09:03:00Z");
  old.facts.clear();  // written by an smtpgate without the envelope keys
  old.transaction = 0;
  old.rcptsPassed.clear();
  const std::string log =
      writeLog(dir, {delivery("S1", "192.0.2.1", "news@bulk.example", "2026-11-23T09:00:00Z"),
                     delivery("S2", "192.0.2.2", "alice@fine.example", "2026-11-23T09:01:00Z"),
                     hostile, old});
  const std::string config = writeConfig(dir, log, kLive);
  const std::string candidate = dir.write("candidate/all.rules", std::string(kLive) + kBulk);

  Result r = runReplay("-c " + shellQuote(config) + " --rules " + shellQuote(candidate));
  INFO(r.out);
  CHECK(r.exitCode == 1);
  CHECK(std::regex_search(r.out, std::regex(R"(\nSessions read +4\n)")));
  CHECK_THAT(r.out, Catch::Contains("newly refused   S1") &&
                        Catch::Contains("newly refused   S3") && !Catch::Contains("S2 ") &&
                        Catch::Contains("not replayable  S4"));
  CHECK_THAT(r.out, Catch::Contains("<evil?[2J@bulk.example>"));  // no escape reaches the terminal
  CHECK_THAT(r.out, !Catch::Contains("\x1b"));

  Result j = runReplay("-c " + shellQuote(config) + " --rules " + shellQuote(candidate) + " --json",
                       false);
  REQUIRE(j.exitCode == 1);
  const auto out = nlohmann::json::parse(j.out);
  CHECK(out["sessions"] == 4);
  CHECK(out["newly_refused"] == 2);
  CHECK(out["unchanged"] == 1);
  CHECK(out["not_replayable"] == 1);
  CHECK(out["exit"] == 1);
  CHECK(out["sessions_listed"].size() == 3);  // the two changed and the old one
  CHECK(out["sessions_listed"][0]["session"] == "S1");
  CHECK(out["sessions_listed"][0]["changes"][0]["after"]["rule"] == "bulk");

  SECTION("--since leaves earlier sessions out") {
    Result since = runReplay("-c " + shellQuote(config) + " --rules " + shellQuote(candidate) +
                                 " --since 2026-11-23T09:00:30 --json",
                             false);
    REQUIRE(since.exitCode == 1);
    CHECK(nlohmann::json::parse(since.out)["sessions"] == 3);
  }
  SECTION("--file instead of the config's log; no change is exit 0") {
    Result same = runReplay("-c " + shellQuote(config) + " --file " + shellQuote(log) +
                            " --rules " + shellQuote(dir.file("live.rules")));
    INFO(same.out);
    CHECK(same.exitCode == 0);
    CHECK(std::regex_search(same.out, std::regex(R"(\n  newly refused +0\n)")));
  }
  SECTION("a candidate config (.toml) brings its own rules") {
    const std::string toml =
        dir.write("candidate/smtpgate.toml", "[rules]\nfiles = [\"all.rules\"]\n");
    Result c = runReplay("-c " + shellQuote(config) + " --rules " + shellQuote(toml));
    INFO(c.out);
    CHECK(c.exitCode == 1);
    CHECK_THAT(c.out, Catch::Contains("Candidate: " + toml));
  }
}

TEST_CASE("replay: errors and their exit codes", "[cli][replay]") {
  TempDir dir;
  const std::string config = writeConfig(dir, dir.file("nothing-yet.jsonl"), kLive);
  const std::string good = dir.write("good.rules", kLive);

  SECTION("no log yet: 66") {
    Result r = runReplay("-c " + shellQuote(config) + " --rules " + shellQuote(good));
    CHECK(r.exitCode == 66);
    CHECK_THAT(r.out, Catch::Contains("nothing-yet.jsonl does not exist"));
  }
  SECTION("a --file that does not exist: 66") {
    Result r = runReplay("-c " + shellQuote(config) + " --file " +
                         shellQuote(dir.file("missing.jsonl")) + " --rules " + shellQuote(good));
    CHECK(r.exitCode == 66);
    CHECK_THAT(r.out, Catch::Contains("missing.jsonl: no such file"));
  }
  const std::string log =
      writeLog(dir, {delivery("S1", "192.0.2.1", "a@bulk.example", "2026-11-23T09:00:00Z")});
  SECTION("broken candidate rules: file:line:col, 78") {
    const std::string broken =
        dir.write("broken.rules", std::string(kLive) + "rule bad on mail when sender ~ /open\n");
    Result r = runReplay("-c " + shellQuote(config) + " --file " + shellQuote(log) + " --rules " +
                         shellQuote(broken));
    INFO(r.out);
    CHECK(r.exitCode == 78);
    CHECK_THAT(r.out, Catch::Contains(broken + ":2:"));
    CHECK_THAT(r.out, Catch::Contains("the candidate rules have errors"));
  }
  SECTION("a broken candidate config: 78") {
    const std::string toml = dir.write("bad.toml", "[rules\nfiles = 3\n");
    Result r = runReplay("-c " + shellQuote(config) + " --file " + shellQuote(log) + " --rules " +
                         shellQuote(toml));
    INFO(r.out);
    CHECK(r.exitCode == 78);
    CHECK_THAT(r.out, Catch::Contains(toml + ":1:"));
  }
  SECTION("a --rules file that does not exist: 66") {
    Result r =
        runReplay("-c " + shellQuote(config) + " --rules " + shellQuote(dir.file("no.rules")));
    CHECK(r.exitCode == 66);
  }
  SECTION("usage: 64") {
    CHECK(runReplay("-c " + shellQuote(config)).exitCode == 64);  // --rules is required
    CHECK(runReplay("-c " + shellQuote(config) + " --rules " + shellQuote(good) + " --since soon")
              .exitCode == 64);
    CHECK(runReplay("-c " + shellQuote(config) + " --rules " + shellQuote(good) + " " +
                    shellQuote(config))
              .exitCode == 64);  // a .toml next to rule files
  }
}
