// `smtpgate lint --strict` as an admin runs it: the real list types, the
// warnings with file:line:col and a caret, and the exit code (1 on any warning).
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/cli/run_command.h"

namespace fs = std::filesystem;

using smtpgate::testing::runSmtpgate;
using Result = smtpgate::testing::CommandOutput;

namespace {

struct StrictDir {
  StrictDir() {
    std::string tmpl = (fs::temp_directory_path() / "smtpgate-strict-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~StrictDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  void write(const std::string& name, const std::string& text) const {
    fs::create_directories((path / name).parent_path());
    std::ofstream(path / name, std::ios::binary) << text;
  }
  fs::path path;
};

TEST_CASE("lint --strict: shadowed rule, unanchored regex, overlapping CIDRs", "[lint][strict]") {
  StrictDir dir;
  dir.write("lists/nets.cidr", "# our networks\n10.0.0.0/8\n10.20.0.0/16\n2001:db8::/32\n");
  dir.write("rules/main.rules",
            "list nets cidr \"../lists/nets.cidr\"\n"
            "rule office on connect when client.ip in @nets then accept\n"
            "rule office-pregreet on connect when client.ip in @nets and pregreet then reject\n"
            "rule spammer on mail when sender ~ /spammer@example\\.com/ then reject\n");
  dir.write("smtpgate.toml", "[rules]\nfiles = [\"rules/*.rules\"]\n");
  std::string config = (dir.path / "smtpgate.toml").string();

  Result plain = runSmtpgate("lint -c '" + config + "'");
  INFO(plain.out);
  CHECK(plain.exitCode == 0);
  CHECK(plain.out.find("warning") == std::string::npos);

  Result strict = runSmtpgate("lint --strict -c '" + config + "'");
  INFO(strict.out);
  CHECK(strict.exitCode == 1);
  std::string rules = (dir.path / "rules/main.rules").string();
  std::string nets = (dir.path / "rules/../lists/nets.cidr").string();
  CHECK(strict.out.find(rules + ":3:6: warning: rule 'office-pregreet' can never fire: rule "
                                "'office' (line 2)") != std::string::npos);
  CHECK(strict.out.find(rules + ":4:36: warning: regex /spammer@example\\.com/ on sender is not "
                                "anchored") != std::string::npos);
  CHECK(strict.out.find(nets + ":3:1: warning: list @nets: '10.20.0.0/16' is inside "
                               "'10.0.0.0/8' (line 2)") != std::string::npos);
  // The source line and a caret under the column.
  CHECK(
      strict.out.find("  rule spammer on mail when sender ~ /spammer@example\\.com/ then reject\n" +
                      std::string(2 + 35, ' ') + "^\n") != std::string::npos);
  CHECK(strict.out.find("3 warning(s) (--strict: warnings fail the lint)") != std::string::npos);
}

TEST_CASE("lint --strict passes the shipped example config", "[lint][strict]") {
  Result r = runSmtpgate(std::string("lint --strict -c '") + SMTPGATE_SOURCE_DIR +
                         "/contrib/smtpgate.toml'");
  INFO(r.out);
  CHECK(r.exitCode == 0);
  CHECK(r.out.find("strict checks passed") != std::string::npos);
}

}  // namespace
