// `smtpgate lint --strict`: each strict warning on a small rule set, at its
// file:line:col, and silence where nothing can be proved.

#include "rules/strict_lint.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "test_lists.h"

namespace smtpgate::rules {
namespace {

using testing::FakeListBuilder;
using testing::TempDir;

/// The fake builder reads CIDR entries as single addresses; strict lint reads
/// the recorded entries itself, so CIDR lists are built empty here.
class CidrTolerantBuilder : public ListBuilder {
 public:
  ListPtr build(ListKind kind, std::string_view name, const std::vector<ListEntry>& entries,
                Diagnostics& diags) override {
    return fake_.build(kind, name, kind == ListKind::Cidr ? std::vector<ListEntry>{} : entries,
                       diags);
  }

 private:
  FakeListBuilder fake_;
};

/// "file:line:col: warning: message" lines of the strict warnings of `text`.
std::vector<std::string> strictWarnings(const TempDir& dir, const std::string& text) {
  auto file = dir.write("strict.rules", text);
  CidrTolerantBuilder inner;
  ListRecorder recorder(inner);
  Diagnostics load;
  auto set = RuleSet::load({file}, recorder, load);
  INFO(format(load));
  REQUIRE(set);
  Diagnostics strict;
  checkStrict(*set, recorder, strict);
  std::vector<std::string> out;
  for (const auto& d : strict.items()) {
    CHECK(d.severity == Severity::Warning);
    std::string first = format(d);
    out.push_back(first.substr(0, first.find('\n')));
  }
  return out;
}

bool has(const std::vector<std::string>& ws, const std::string& prefix, const std::string& text) {
  for (const auto& w : ws) {
    if (w.rfind(prefix, 0) == 0 && w.find(text) != std::string::npos) {
      return true;
    }
  }
  return false;
}

TEST_CASE("strict lint warns at file:line:col, in file order", "[strict]") {
  TempDir dir;
  dir.write("nets.cidr", "10.0.0.0/8\n10.1.0.0/16\n192.0.2.0/24\n192.0.2.0/24\n");
  std::string text =
      "list nets cidr \"nets.cidr\"\n"                                               // 1
      "list free domain { gmail.com, mail.gmail.com }\n"                             // 2
      "list bad string { a@example.com, <b@example.com> }\n"                         // 3
      "rule office on connect when client.ip in @nets then accept\n"                 // 4
      "rule office2 on connect when client.ip in @nets and pregreet then reject\n"   // 5
      "rule r1 on rcpt when rcpt.count > 10 then reject\n"                           // 6
      "rule r2 on rcpt when rcpt.count >= 20 then score 3\n"                         // 7
      "rule r3 on rcpt when rcpt.count > 5 then score 3\n"                           // 8
      "rule s1 on mail when sender ~ /spammer@example\\.com/ then reject\n"          // 9
      "rule s2 on mail when sender ~ /^spammer@example\\.com$/ then reject\n"        // 10
      "rule s3 on mail when sender in @bad or sender.domain in @free then reject\n"  // 11
      "rule big on data when body ~ /\\pL{60}/ then score 1\n"                       // 12
      "rule h1 on helo when helo in { localhost, foo } then reject\n"                // 13
      "rule h2 on helo when helo in { localhost } then reject\n";                    // 14
  auto ws = strictWarnings(dir, text);
  std::string f = (dir.path() / "strict.rules").string();
  std::string n = (dir.path() / "nets.cidr").string();
  INFO([&] {
    std::string all;
    for (const auto& w : ws) {
      all += w + "\n";
    }
    return all;
  }());
  CHECK(has(ws, n + ":2:1: warning:", "'10.1.0.0/16' is inside '10.0.0.0/8' (line 1)"));
  CHECK(has(ws, n + ":4:1: warning:", "duplicate of the entry at line 3"));
  CHECK(has(ws, f + ":2:31: warning:", "'mail.gmail.com' is a subdomain of 'gmail.com'"));
  CHECK(has(ws, f + ":3:34: warning:", "'<b@example.com>' can never match"));
  CHECK(has(ws, f + ":5:6: warning:", "rule 'office2' can never fire: rule 'office' (line 4)"));
  CHECK(has(ws, f + ":7:6: warning:", "rule 'r2' can never fire: rule 'r1' (line 6)"));
  CHECK(has(ws, f + ":9:31: warning:", "/spammer@example\\.com/ on sender is not anchored"));
  CHECK(has(ws, f + ":12:30: warning:", "exceeds RE2's memory budget"));
  CHECK(has(ws, f + ":14:6: warning:", "rule 'h2' can never fire: rule 'h1' (line 13)"));
  CHECK(ws.size() == 9);  // r3 (wider than r1), s2 (anchored): nothing to say
}

TEST_CASE("strict lint proves nothing it cannot", "[strict]") {
  TempDir dir;
  struct Case {
    std::string what;
    std::string text;
  };
  const std::vector<Case> quiet = {
      {"monitor rules do not end the stage",
       "rule a on mail when spf == fail then monitor reject\n"
       "rule b on mail when spf == fail then reject\n"},
      {"score rules do not end the stage",
       "rule a on mail when spf == fail then score 1\nrule b on mail when spf == fail then "
       "reject\n"},
      {"other stage",
       "rule a on mail when helo ~ /x/ then reject\nrule b on rcpt when helo ~ /x/ then reject\n"},
      {"a narrower earlier rule",
       "rule a on rcpt when rcpt.count > 10 then reject\n"
       "rule b on rcpt when rcpt.count > 5 then reject\n"},
      {"score may change between them",
       "rule a on data when score > 5 then reject\nrule s on data when body ~ /x/ then score 9\n"
       "rule b on data when score > 5 then reject\n"},
      {"not is not looked into",
       "rule a on helo when not helo ~ /a/ then reject\n"
       "rule b on helo when not helo ~ /ab/ then reject\n"},
      {"anchored regexes",
       "rule a on mail when sender ~ /@example\\.com$/ then reject\n"
       "rule b on mail when sender ~ /(?i)^(postmaster|abuse)@/ then accept\n"
       "rule c on mail when client.ptr ~ /(^|\\.)dsl\\.example\\.net$/ then score 1\n"},
      {"contains-tests without a domain part",
       "rule a on helo when helo !~ /[.\\[]/ then score 1\n"
       "rule b on mail when client.ptr ~ /(^|[.-])(dyn|dsl)[0-9.-]/i then score 1\n"},
      {"regexes on content fields",
       "rule a on data when header.from ~ /paypal\\.com/ then score 1\n"},
  };
  for (const auto& c : quiet) {
    SECTION(c.what) {
      CHECK(strictWarnings(dir, c.text).empty());
    }
  }
}

TEST_CASE("an alternation is anchored only if every branch is", "[strict]") {
  TempDir dir;
  auto ws =
      strictWarnings(dir, "rule a on mail when sender ~ /^a@x\\.org|b@y\\.org/ then reject\n");
  REQUIRE(ws.size() == 1);
  CHECK(ws[0].find(":1:30: warning: regex /^a@x\\.org|b@y\\.org/ on sender is not anchored") !=
        std::string::npos);
}

}  // namespace
}  // namespace smtpgate::rules
