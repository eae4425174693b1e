// The smtpgate executable as an admin runs it: lint and check, their output
// and exit codes (0 accept, 1 reject, 2 tempfail, 64 usage, 66 no input,
// 78 config).
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>

#include "tests/cli/run_command.h"
#include "tests/cli/temp_dir.h"

namespace fs = std::filesystem;

using smtpgate::testing::shellQuote;

namespace {

using Result = smtpgate::testing::CommandOutput;

Result run(const std::string& args, bool withStderr = true) {
  return smtpgate::testing::runSmtpgate(args, withStderr);
}

using TempDir = smtpgate::testing::CliTempDir;

const std::string kSource = SMTPGATE_SOURCE_DIR;

/// A config with one rule file, written into `dir`.
fs::path writeConfig(const TempDir& dir, const std::string& rules) {
  dir.write("rules/main.rules", rules);
  return dir.write("smtpgate.toml", "[rules]\nfiles = [\"rules/*.rules\"]\n");
}

const char* kSpam =
    "From: Deals <deals@example.org>\nTo: user@example.com\nSubject: =?UTF-8?B?Q2hlYXAgVjFhZ3Jh?=\n"
    "Message-ID: <spam1@example.org>\n\nBuy now!\n";
const char* kHam =
    "From: Alice <alice@example.org>\nTo: user@example.com\nSubject: lunch\n\nSee you at noon.\n";

std::string envelope(const fs::path& config) {
  return "check -c " + shellQuote(config.string()) +
         " --ip 203.0.113.5 --helo mail.example.org --from alice@example.org --rcpt "
         "user@example.com";
}

}  // namespace

TEST_CASE("lint accepts the shipped contrib configuration", "[cli]") {
  Result r = run("lint -c " + shellQuote(kSource + "/contrib/smtpgate.toml"));
  INFO(r.out);
  CHECK(r.exitCode == 0);
  CHECK_THAT(r.out, Catch::Contains("OK"));
}

TEST_CASE("lint reports every mistake of a file with file:line:col and a caret", "[cli]") {
  std::string file = kSource + "/tests/rules/data/ten-mistakes.rules";
  Result r = run("lint " + shellQuote(file));
  INFO(r.out);
  CHECK(r.exitCode == 1);
  std::regex diag(R"(ten-mistakes\.rules:(\d+):(\d+): error: )");
  std::set<int> lines;
  int errors = 0;
  for (auto it = std::sregex_iterator(r.out.begin(), r.out.end(), diag);
       it != std::sregex_iterator(); ++it) {
    ++errors;
    lines.insert(std::stoi((*it)[1]));
  }
  CHECK(errors == 10);
  CHECK(lines.size() == 10);  // ten different lines, one mistake each
  CHECK_THAT(r.out, Catch::Contains("^"));
  CHECK_THAT(r.out, Catch::Contains("10 error(s)"));
}

TEST_CASE("lint of a broken config points into the TOML and exits 1", "[cli]") {
  TempDir dir;
  fs::path config = dir.write("bad.toml", "[proxy]\nlisten = [\"127.0.0.1:99999\"]\nlistn = 1\n");
  Result r = run("lint -c " + shellQuote(config.string()));
  INFO(r.out);
  CHECK(r.exitCode == 1);
  CHECK_THAT(r.out, Catch::Contains("bad.toml:2:"));
  CHECK_THAT(r.out, Catch::Contains("bad.toml:3:"));
}

TEST_CASE("check exit codes follow the verdict", "[cli]") {
  TempDir dir;
  fs::path config = writeConfig(
      dir,
      "rule spam on data when header.subject ~ /v[i1]agra/i then reject \"550 5.7.1 No spam "
      "($session)\"\n"
      "rule slow on data when body ~ /noon/ then tempfail\n");
  fs::path spam = dir.write("spam.eml", kSpam);
  fs::path ham = dir.write("ham.eml", kHam);
  fs::path plain = dir.write("plain.eml", "Subject: hi\n\nhello\n");

  Result rejected = run(envelope(config) + " " + shellQuote(spam.string()));
  INFO(rejected.out);
  CHECK(rejected.exitCode == 1);
  CHECK_THAT(rejected.out, Catch::Contains("rule spam"));
  CHECK_THAT(rejected.out, Catch::Contains("550 5.7.1 No spam"));
  CHECK_THAT(rejected.out, Catch::Contains("main.rules:1"));

  Result tempfailed = run(envelope(config) + " " + shellQuote(ham.string()));
  INFO(tempfailed.out);
  CHECK(tempfailed.exitCode == 2);
  CHECK_THAT(tempfailed.out, Catch::Contains("451 4.7.1"));

  CHECK(run(envelope(config) + " " + shellQuote(plain.string())).exitCode == 0);
}

TEST_CASE("check refuses at the stage the rule names", "[cli]") {
  TempDir dir;
  fs::path config = writeConfig(dir,
                                "list blocked cidr { 203.0.113.0/24, 2001:db8::/32 }\n"
                                "rule block on connect when client.ip in @blocked then reject\n");
  Result r = run("check -c " + shellQuote(config.string()) + " --ip 203.0.113.77");
  INFO(r.out);
  CHECK(r.exitCode == 1);
  CHECK_THAT(r.out, Catch::Contains("554 5.7.1"));
  CHECK(run("check -c " + shellQuote(config.string()) + " --ip 2001:db8::1").exitCode == 1);
  CHECK(run("check -c " + shellQuote(config.string()) + " --ip 198.51.100.1").exitCode == 0);
}

TEST_CASE("check --json prints one object with every stage", "[cli]") {
  TempDir dir;
  fs::path config = writeConfig(dir,
                                "rule s on data when body ~ /buy/i then score 3\n"
                                "threshold reject at 3\n");
  fs::path spam = dir.write("spam.eml", kSpam);
  Result r = run(envelope(config) + " --json " + shellQuote(spam.string()), false);
  INFO(r.out);
  CHECK(r.exitCode == 1);
  auto j = nlohmann::json::parse(r.out);
  CHECK(j["stages"].size() == 5);
  CHECK(j["stages"][4]["stage"] == "data");
  CHECK(j["verdict"]["action"] == "reject");
  CHECK(j["verdict"]["rule"] == "threshold-reject");
  CHECK(j["exit"] == 1);
  CHECK(j["ruleset"].get<std::string>().size() == 12);
}

TEST_CASE("check --log appends a valid decision line", "[cli]") {
  TempDir dir;
  fs::path config = writeConfig(dir, "rule r on rcpt when rcpt == user@example.com then reject\n");
  fs::path log = fs::path(dir.path()) / "decisions.jsonl";
  for (int i = 0; i < 2; ++i) {
    CHECK(run(envelope(config) + " --log " + shellQuote(log.string())).exitCode == 1);
  }
  std::ifstream in(log);
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    auto j = nlohmann::json::parse(line);
    CHECK(j["stage"] == "rcpt");
    CHECK(j["action"] == "reject");
    CHECK(j["rule"] == "r");
    CHECK_THAT(j["rule_where"].get<std::string>(), Catch::EndsWith("main.rules:1"));
    CHECK(j["rcpts"][0] == "user@example.com");
  }
  CHECK(lines == 2);
}

TEST_CASE("proxy does not start with a backend CA file it cannot read, and says why", "[cli]") {
  TempDir dir;
  fs::path config = dir.write("smtpgate.toml",
                              "[proxy]\nlisten = [\"127.0.0.1:1\"]\nbackend_tls = \"verify\"\n"
                              "backend_tls_ca_file = \"missing-ca.pem\"\n[rules]\nfiles = []\n");
  Result r = run("proxy -c " + shellQuote(config.string()));
  INFO(r.out);
  CHECK(r.exitCode == 78);
  CHECK_THAT(r.out, Catch::Contains("backend TLS: " + dir.file("missing-ca.pem") +
                                    ": No such file or directory"));
}

TEST_CASE("lint loads the TLS certificate, key and CA file as the proxy would", "[cli]") {
  TempDir dir;
  const std::string tls =
      "tls_certificate = \"cert.pem\"\ntls_key = \"key.pem\"\n"
      "backend_tls = \"verify\"\nbackend_tls_ca_file = \"ca.pem\"\n";
  fs::path config = dir.write("smtpgate.toml", "[proxy]\n" + tls + "[rules]\nfiles = []\n");
  Result missing = run("lint -c " + shellQuote(config.string()));
  INFO(missing.out);
  CHECK(missing.exitCode == 1);
  CHECK_THAT(missing.out, Catch::Contains("TLS certificate " + dir.file("cert.pem")) &&
                              Catch::Contains("backend TLS: " + dir.file("ca.pem")) &&
                              Catch::Contains("2 error(s)"));

  const std::string openssl =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=lint.test"
      " -keyout " +
      shellQuote(dir.file("key.pem")) + " -out " + shellQuote(dir.file("cert.pem")) +
      " 2>/dev/null";
  REQUIRE(std::system(openssl.c_str()) == 0);
  fs::copy_file(dir.file("cert.pem"), dir.file("ca.pem"));
  Result present = run("lint -c " + shellQuote(config.string()));
  INFO(present.out);
  CHECK(present.exitCode == 0);
}

TEST_CASE("check reports usage, input and config errors with distinct exit codes", "[cli]") {
  TempDir dir;
  fs::path good = writeConfig(dir, "rule r on mail when sender == x@y.z then reject\n");
  fs::path broken = dir.write("broken/smtpgate.toml", "[rules]\nfiles = [\"x.rules\"]\n");
  dir.write("broken/x.rules", "rule r on mail when dkim == pass then accept\n");
  CHECK(run("check -c " + shellQuote(good.string()) + " --ip not-an-ip").exitCode == 64);
  CHECK(run("check -c " + shellQuote(good.string())).exitCode == 64);  // --ip is required
  CHECK(run("check -c " + shellQuote(good.string()) + " --ip 192.0.2.1 --rcpt a@b.c").exitCode ==
        64);
  CHECK(run(envelope(good) + " " + shellQuote(dir.file("missing.eml"))).exitCode == 66);
  Result r = run("check -c " + shellQuote(broken.string()) + " --ip 192.0.2.1");
  CHECK(r.exitCode == 78);
  CHECK_THAT(r.out, Catch::Contains("x.rules:1:"));
  CHECK(run("no-such-command").exitCode == 64);
}
