/// FileWatch: the changes an admin makes to config, rule and list files are
/// seen (written in place, renamed over as editors save, a new file that a
/// glob matches, a watched file deleted), and the watch follows `watch()`.

#include "policies/file_watch.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>

#include "tests/support/process.h"

namespace smtpgate::policies {
namespace {

using namespace std::chrono_literals;
using testing::deadlineIn;
using testing::TempDir;
using testing::waitFor;
using testing::writeFile;

constexpr auto kSettle = 50ms;
constexpr auto kTimeout = 10s;

struct Counter {
  std::atomic<int> calls{0};
  FileWatch watch{[this] { calls.fetch_add(1); }, kSettle};

  /// Waits until more than `before` calls happened.
  bool changedSince(int before) {
    return waitFor([&] { return calls.load() > before; }, deadlineIn(kTimeout));
  }
};

}  // namespace

TEST_CASE("file watch: edits, renames, deletions and new glob matches are changes",
          "[file_watch]") {
  TempDir dir;
  const std::string rules = dir.file("local.rules");
  writeFile(rules, "# v1\n");
  Counter counter;
  counter.watch.watch({rules}, {dir.file("*.list")});
  REQUIRE(counter.watch.directories() == std::vector<std::string>{dir.path()});

  int before = counter.calls.load();
  writeFile(rules, "# v2, written in place\n");
  CHECK(counter.changedSince(before));

  before = counter.calls.load();
  writeFile(dir.file(".local.rules.tmp"), "# v3\n");
  std::filesystem::rename(dir.file(".local.rules.tmp"), rules);  // how editors save
  CHECK(counter.changedSince(before));

  before = counter.calls.load();
  writeFile(dir.file("new.list"), "192.0.2.0/24\n");  // matches the pattern
  CHECK(counter.changedSince(before));

  before = counter.calls.load();
  std::filesystem::remove(rules);
  CHECK(counter.changedSince(before));
}

TEST_CASE("file watch: watch() replaces the watched set", "[file_watch]") {
  TempDir first;
  TempDir second;
  const std::string a = first.file("a.rules");
  const std::string b = second.file("b.rules");
  writeFile(a, "");
  writeFile(b, "");
  Counter counter;
  counter.watch.watch({a}, {});
  counter.watch.watch({b}, {});
  CHECK(counter.watch.directories() == std::vector<std::string>{second.path()});
  int before = counter.calls.load();
  writeFile(b, "# changed\n");
  CHECK(counter.changedSince(before));
}

TEST_CASE("file watch: a directory that doesn't exist is skipped", "[file_watch]") {
  Counter counter;
  counter.watch.watch({"/nonexistent-smtpgate-dir/x.rules"}, {"/nonexistent-smtpgate-dir/*.rules"});
  CHECK(counter.watch.directories().empty());
}

}  // namespace smtpgate::policies
