// `smtpgate report`: a decision log of 100,000 lines (hostile strings
// included) becomes one self-contained HTML page whose numbers are the log's
// counts; headless Chromium renders it (numbers checked in the rendered DOM,
// screenshot kept as a test artifact) when it is installed.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "policies/decision_log.h"
#include "tests/cli/run_command.h"

namespace fs = std::filesystem;
namespace policies = smtpgate::policies;

namespace {

/// Runs `cmd`; its output goes to `out` if given. Returns the exit status.
int runShell(const std::string& cmd, std::string* out = nullptr) {
  auto r = smtpgate::testing::runShell(cmd);
  if (out != nullptr) {
    *out = std::move(r.out);
  }
  return r.exitCode;
}

std::string grouped(std::uint64_t n) {
  std::string d = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < d.size(); ++i) {
    if (i > 0 && (d.size() - i) % 3 == 0) {
      out += ',';
    }
    out += d[i];
  }
  return out;
}

std::string readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Expected {
  std::uint64_t total = 0;
  std::map<std::string, std::uint64_t> actions, stages, rules;
};

/// 100,000 decisions over 7 days; every 50th carries hostile text.
Expected writeLog(const fs::path& path) {
  using namespace std::chrono;
  const std::vector<std::string> actions = {"deliver", "reject", "tempfail", "accept",
                                            "would-reject"};
  const std::vector<std::string> stages = {"connect", "helo", "mail", "rcpt", "data"};
  const std::vector<std::string> hostile = {
      "<script>alert(1)</script>", "\"><img src=x onerror=alert(2)>", "a\u202Eevil\u2028b",
      std::string("ctl\x01\x1b[31mred", 12), "&amp;<b>bold</b>"};
  Expected e;
  std::ofstream out(path, std::ios::binary);
  const auto start = sys_days{year{2026} / 11 / 16};
  for (int i = 0; i < 100000; ++i) {
    policies::DecisionRecord r;
    r.time = start + milliseconds(static_cast<std::int64_t>(i) * 6048);
    r.session = "S" + std::to_string(i / 3);
    r.clientIp = "192.0.2." + std::to_string(i % 7 == 0 ? 7 : i % 200);
    r.sender = i % 10 == 0 ? "" : "u@d" + std::to_string(i % 13) + ".example";
    r.action = actions[(i * 7) % 5 == 0 ? 1 : i % 5];
    r.stage = stages[i % 5];
    r.rule = i % 50 == 0 ? hostile[(i / 50) % hostile.size()] : "rule-" + std::to_string(i % 4);
    r.helo = hostile[i % hostile.size()];
    r.frontend = "proxy";
    out << policies::toJsonLine(r) << "\n";
    ++e.total;
    ++e.actions[r.action];
    ++e.stages[r.stage];
    ++e.rules[r.rule];
  }
  return e;
}

fs::path artifactDir() {
  const char* env = std::getenv("SMTPGATE_ARTIFACT_DIR");
  fs::path dir = env ? fs::path(env) : fs::current_path() / "artifacts";
  fs::create_directories(dir);
  return dir;
}

TEST_CASE("report: a self-contained page with the log's numbers, rendered by Chromium",
          "[report]") {
  fs::path dir = artifactDir();
  fs::path log = dir / "report-decisions.jsonl";
  fs::path html = dir / "report.html";
  Expected e = writeLog(log);
  std::string out;
  int rc = runShell(std::string("'") + SMTPGATE_BINARY + "' report --file '" + log.string() +
                        "' --since 2026-11-16 --until 2026-11-22 -o '" + html.string() + "' 2>&1",
                    &out);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK(out.find("100,000 decisions") != std::string::npos);
  const std::string page = readFile(html);

  SECTION("the HTML holds the counts and nothing that could leave the page") {
    CHECK(page.find("<div class=\"value\" id=\"total\">100,000</div>") != std::string::npos);
    for (const auto& [action, n] : e.actions) {
      CHECK(page.find(">" + action + "</text>") != std::string::npos);
      CHECK(page.find(">" + grouped(n) + " <tspan") != std::string::npos);
    }
    for (const auto& [stage, n] : e.stages) {
      CHECK(page.find(">" + grouped(n) + " <tspan") != std::string::npos);
    }
    CHECK(page.find(">" + grouped(e.rules["rule-1"]) + " <tspan") != std::string::npos);
    // Hostile values are escaped: no markup of theirs survives.
    CHECK(page.find("<script") == std::string::npos);
    CHECK(page.find("<img") == std::string::npos);
    CHECK(page.find("&lt;script&gt;alert(1)&lt;/script&gt;") != std::string::npos);
    CHECK(page.find("\u202E") == std::string::npos);
    CHECK(page.find('\x1b') == std::string::npos);
    // Self-contained: no URL to fetch.
    CHECK(page.find("http://") == std::string::npos);
    CHECK(page.find("https://") == std::string::npos);
    CHECK(page.find(" src=\"") == std::string::npos);
    CHECK(page.find(" href=") == std::string::npos);
  }

  SECTION("headless Chromium renders the numbers; a screenshot is kept") {
    if (runShell("command -v chromium >/dev/null 2>&1") != 0) {
      WARN(
          "chromium is not installed (scripts/setup-deps.sh installs it): rendering not "
          "checked, only the HTML text");
      return;
    }
    const std::string chromium =
        "chromium --headless --no-sandbox --disable-gpu --hide-scrollbars "
        "--user-data-dir='" +
        (dir / "chromium-profile").string() + "' ";
    std::string dom;
    REQUIRE(runShell(chromium + "--dump-dom 'file://" + html.string() + "' 2>/dev/null", &dom) ==
            0);
    CHECK(dom.find(">100,000</div>") != std::string::npos);
    for (const auto& [action, n] : e.actions) {
      CHECK(dom.find(">" + grouped(n) + " <tspan") != std::string::npos);
    }
    CHECK(dom.find("<script") == std::string::npos);
    fs::path png = dir / "report.png";
    fs::remove(png);
    REQUIRE(runShell(chromium + "--window-size=1100,2600 --screenshot='" + png.string() +
                     "' 'file://" + html.string() + "' >/dev/null 2>&1") == 0);
    REQUIRE(fs::exists(png));
    CHECK(fs::file_size(png) > 20000);
    WARN("report screenshot: " + png.string());
  }
}

TEST_CASE("report: usage errors and a missing log", "[report]") {
  std::string out;
  CHECK(runShell(std::string("'") + SMTPGATE_BINARY +
                     "' report --file /nonexistent/decisions.jsonl -o /tmp/x.html 2>&1",
                 &out) == 66);
  CHECK(runShell(std::string("'") + SMTPGATE_BINARY +
                     "' report --file /dev/null --since yesterdayish -o /tmp/x.html 2>&1",
                 &out) == 64);
  CHECK(runShell(std::string("'") + SMTPGATE_BINARY + "' report --file /dev/null 2>&1", &out) ==
        64);  // -o is required
}

}  // namespace
