/// replay_test — `smtpgate replay` over a decision log that a live proxy
/// wrote. The real `smtpgate proxy` (base rules) relays to smtp-sink; swaks
/// sends eight sessions from different 127.0.0.x addresses, some refused by
/// the base rules at connect, HELO and RCPT, some delivered. Then a candidate
/// config, the base rules plus one rule refusing senders @bulk.example, is
/// replayed: the issue's "Done when" is that replay lists exactly the
/// sessions that rule changes (by the session ids the log gave them) and
/// nothing else, with the right counts.
///
/// The log is waited for with a deadline: the proxy writes a delivery's line
/// after the client has its 250, so swaks may exit first.

#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "tests/support/process.h"
#include "tests/support/smtp_client.h"
#include "tests/support/smtp_sink.h"
#include "tests/support/smtpgate_process.h"

namespace smtpgate::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr auto kTimeout = 20s;

constexpr const char* kBaseRules = R"(
rule blocked   on connect when client.ip == 127.0.0.66          then reject "554 5.7.1 $client_ip is not welcome here"
rule bad-helo  on helo    when helo == "spammer.test"           then reject "550 5.7.1 That HELO name is refused"
rule no-relay  on rcpt    when rcpt.domain != "our.test"        then reject "554 5.7.1 Relay access denied"
)";

constexpr const char* kAddedRule =
    R"(rule bulk on mail when sender ~ /@bulk\.example$/i then reject "550 5.7.1 Bulk mail refused")"
    "\n";

struct Session {
  const char* ip;
  const char* helo;
  const char* from;
  const char* to;  ///< swaks --to: comma-separated
  bool delivered;
};

// 8 sessions, 10 log lines: #4's client tries EHLO, then HELO (both refused);
// #5 has a refused recipient and a delivery.
const Session kSessions[] = {
    {"127.0.0.11", "a.test", "alice@fine.example", "u@our.test", true},
    {"127.0.0.12", "b.test", "news@bulk.example", "u@our.test", true},      // changes
    {"127.0.0.66", "c.test", "x@bulk.example", "u@our.test", false},        // refused at connect
    {"127.0.0.14", "spammer.test", "y@bulk.example", "u@our.test", false},  // refused at HELO
    {"127.0.0.15", "d.test", "promo@BULK.example", "v@other.test,u@our.test", true},  // changes
    {"127.0.0.16", "e.test", "bob@fine.example", "v@other.test", false},  // refused at RCPT
    {"127.0.0.17", "f.test", "info@notbulk.example", "u@our.test", true},
    {"127.0.0.18", "g.test", "deals@bulk.example.net", "u@our.test", true},
};
constexpr std::size_t kLogLines = 10;

std::vector<json> decisions(const SmtpgateProcess& proxy) {
  std::vector<json> out;
  for (const std::string& line : proxy.decisionLines()) {
    out.push_back(json::parse(line));
  }
  return out;
}

/// The session id the log gave the client at `ip`.
std::string sessionOf(const std::vector<json>& lines, const std::string& ip) {
  std::set<std::string> ids;
  for (const json& line : lines) {
    if (line.value("client_ip", "") == ip) {
      ids.insert(line.value("session", ""));
    }
  }
  REQUIRE(ids.size() == 1);
  return *ids.begin();
}

CommandResult replay(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {SMTPGATE_BINARY, "replay"};
  argv.insert(argv.end(), args.begin(), args.end());
  return runCommand(argv, kTimeout);
}

/// The JSON object of `smtpgate replay --json` (stdout and stderr are one
/// stream here; the object is the line that starts with '{').
json replayJson(const std::vector<std::string>& args, int expectExit) {
  std::vector<std::string> all = args;
  all.push_back("--json");
  const CommandResult r = replay(all);
  INFO(r.output);
  CHECK(r.exitCode == expectExit);
  const auto start = r.output.find("{\"candidate\"");
  REQUIRE(start != std::string::npos);
  return json::parse(r.output.substr(start, r.output.find('\n', start) - start));
}

}  // namespace

TEST_CASE("replay: a candidate with one more rule lists exactly the sessions it changes",
          "[proxy][replay]") {
  SKIP_WITHOUT_SMTP_SINK();
  SmtpSink sink;
  sink.start();
  SmtpgateOptions options;
  options.binary = SMTPGATE_BINARY;
  options.backend = sink.host() + ":" + std::to_string(sink.port());
  options.rules = kBaseRules;
  SmtpgateProcess proxy(options);
  proxy.start();

  for (const Session& s : kSessions) {
    SwaksResult run = swaks({"--server", proxy.server(), "--local-interface", s.ip, "--helo",
                             s.helo, "--from", s.from, "--to", s.to});
    INFO(s.ip << "\n" << run.transcript);
    if (s.delivered) {
      CHECK(run.exitCode == 0);
    } else {
      CHECK(run.exitCode != 0);
    }
  }
  REQUIRE(sink.waitForMessages(4, deadlineIn(kTimeout)));
  REQUIRE(waitFor([&] { return proxy.decisionLines().size() >= kLogLines; }, deadlineIn(kTimeout)));
  const std::vector<json> lines = decisions(proxy);
  REQUIRE(lines.size() == kLogLines);
  // The live proxy wrote the envelope replay needs.
  for (const json& line : lines) {
    INFO(line.dump());
    CHECK(line.contains("facts"));
  }
  const std::string changedA = sessionOf(lines, "127.0.0.12");
  const std::string changedB = sessionOf(lines, "127.0.0.15");

  TempDir candidateDir("smtpgate-replay");
  writeFile(candidateDir.file("candidate.rules"), std::string(kBaseRules) + kAddedRule);
  writeFile(candidateDir.file("candidate.toml"), "[rules]\nfiles = [\"candidate.rules\"]\n");
  const std::vector<std::string> base = {"-c", proxy.configPath()};

  SECTION("the added rule's sessions and nothing else") {
    std::vector<std::string> args = base;
    args.insert(args.end(), {"--rules", candidateDir.file("candidate.toml")});
    const json j = replayJson(args, 1);
    INFO(j.dump(2));
    CHECK(j["sessions"] == 8);
    CHECK(j["unchanged"] == 6);
    CHECK(j["newly_refused"] == 2);
    CHECK(j["newly_accepted"] == 0);
    CHECK(j["changed"] == 0);
    CHECK(j["undecidable"] == 0);
    CHECK(j["not_replayable"] == 0);
    CHECK(j["newly_refused_by_rule"] == json::parse(R"([{"rule":"bulk","sessions":2}])"));
    std::set<std::string> listed;
    for (const json& s : j["sessions_listed"]) {
      listed.insert(s["session"].get<std::string>());
      CHECK(s["kind"] == "newly-refused");
      REQUIRE(s["changes"].size() == 1);
      const json& c = s["changes"][0];
      CHECK(c["stage"] == "mail");
      CHECK(c["before"]["action"] == "passed");
      CHECK(c["after"]["action"] == "reject");
      CHECK(c["after"]["rule"] == "bulk");
      CHECK(c["after"]["reply"] == "550 5.7.1 Bulk mail refused");
    }
    CHECK(listed == std::set<std::string>{changedA, changedB});

    // The text report names the same two sessions, with their client and sender.
    args = base;
    args.insert(args.end(), {"--rules", candidateDir.file("candidate.toml")});
    const CommandResult text = replay(args);
    INFO(text.output);
    CHECK(text.exitCode == 1);
    CHECK(std::regex_search(text.output, std::regex(R"(\n  newly refused +2\n)")));
    CHECK(std::regex_search(text.output, std::regex(R"(\n  unchanged +6\n)")));
    for (const json& line : lines) {
      const std::string id = line.value("session", "");
      if (id == changedA || id == changedB) {
        CHECK_THAT(text.output, Catch::Contains(id));
      } else {
        CHECK_THAT(text.output, !Catch::Contains(id));
      }
    }
    CHECK_THAT(text.output,
               Catch::Contains("127.0.0.12") && Catch::Contains("<news@bulk.example>") &&
                   Catch::Contains("passed -> reject by bulk: 550 5.7.1 Bulk mail refused"));
  }
  SECTION("the live rules as the candidate change nothing") {
    writeFile(candidateDir.file("same.rules"), kBaseRules);
    std::vector<std::string> args = base;
    args.insert(args.end(), {"--rules", candidateDir.file("same.rules")});
    const json j = replayJson(args, 0);
    CHECK(j["sessions"] == 8);
    CHECK(j["unchanged"] == 8);
    CHECK(j["sessions_listed"].empty());
  }
  SECTION("a rule on a fact the log does not have is undecidable, not guessed") {
    writeFile(candidateDir.file("ptr.rules"),
              std::string(kBaseRules) + "rule no-ptr on mail when not client.ptr then reject\n");
    std::vector<std::string> args = base;
    args.insert(args.end(), {"--rules", candidateDir.file("ptr.rules")});
    const json j = replayJson(args, 0);
    INFO(j.dump(2));
    CHECK(j["undecidable"] == 6);  // every session that reached MAIL
    CHECK(j["unchanged"] == 2);    // refused at connect and HELO, before the rule's stage
    CHECK(j["undecidable_by_fact"] == json::parse(R"([{"fact":"client.ptr","sessions":6}])"));
  }
}

}  // namespace smtpgate::testing
