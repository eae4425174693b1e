// ReplyTemplate: parsing and validation of "CODE X.Y.Z text", expansion of
// the reply variables, and that network-supplied values cannot break the
// reply line.

#include "rules/reply_template.h"

#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace smtpgate::rules {
namespace {

TEST_CASE("reply templates parse and validate", "[reply]") {
  struct Case {
    std::string text;
    std::optional<int> code;      // nullopt: expect an error
    std::string escOrError;       // the enhanced code, or a fragment of the error
    std::string body;             // the text after the enhanced code (ok cases)
    std::size_t errorOffset = 0;  // error cases
  };
  const std::vector<Case> cases = {
      {"550 5.7.1 text", 550, "5.7.1", "text"},
      {"451 4.4.3 SPF lookup failed, try again", 451, "4.4.3", "SPF lookup failed, try again"},
      {"554 5.7.1", 554, "5.7.1", ""},
      {"554 5.7.1 ", 554, "5.7.1", ""},
      {"550 5.7.23 SPF check failed for $sender", 550, "5.7.23", "SPF check failed for $sender"},
      {"550 5.123.456 x", 550, "5.123.456", "x"},
      {"421 4.3.2 Closing", 421, "4.3.2", "Closing"},
      {"250 2.0.0 ok", 250, "2.0.0", "ok"},  // the class check against the action is the parser's
      {"550 5.7.1  two spaces", 550, "5.7.1", " two spaces"},
      {"550 5.7.1 $client_ip $sender $rcpt $rule $score $session", 550, "5.7.1",
       "$client_ip $sender $rcpt $rule $score $session"},
      {"550 5.7.1 100% sure: {x} [y] \"z\"", 550, "5.7.1", "100% sure: {x} [y] \"z\""},
      {"550 5.7.1 caf\xc3\xa9", 550, "5.7.1", "caf\xc3\xa9"},
      // Errors in the code.
      {"", std::nullopt, "three-digit SMTP code", "", 0},
      {"55", std::nullopt, "three-digit SMTP code", "", 0},
      {"5500 5.7.1 x", std::nullopt, "three-digit SMTP code", "", 0},
      {"abc 5.7.1 x", std::nullopt, "three-digit SMTP code", "", 0},
      {"150 1.0.0 x", std::nullopt, "three-digit SMTP code", "", 0},
      {"600 6.0.0 x", std::nullopt, "three-digit SMTP code", "", 0},
      {"-50 5.7.1 x", std::nullopt, "three-digit SMTP code", "", 0},
      {"+50 5.7.1 x", std::nullopt, "three-digit SMTP code", "", 0},
      {"550-5.7.1 x", std::nullopt, "three-digit SMTP code", "", 0},
      // Errors in the enhanced status code.
      {"550", std::nullopt, "RFC 3463 enhanced status code", "", 3},
      {"550 go away", std::nullopt, "e.g. \"550 5.7.1 text\"", "", 4},
      {"451 try later", std::nullopt, "e.g. \"451 4.7.1 text\"", "", 4},
      {"550 5.7 x", std::nullopt, "RFC 3463 enhanced status code", "", 4},
      {"550 5.7.1.2 x", std::nullopt, "RFC 3463 enhanced status code", "", 4},
      {"550 5..1 x", std::nullopt, "RFC 3463 enhanced status code", "", 4},
      {"550 x.7.1 x", std::nullopt, "RFC 3463 enhanced status code", "", 4},
      {"550 55.7.1 x", std::nullopt, "RFC 3463 enhanced status code", "", 4},
      {"550 5.1000.1 x", std::nullopt, "RFC 3463 enhanced status code", "", 4},
      {"550 3.7.1 x", std::nullopt, "RFC 3463 enhanced status code", "", 4},
      {"550 5.-7.1 x", std::nullopt, "RFC 3463 enhanced status code", "", 4},
      {"550 5.7.+1 x", std::nullopt, "RFC 3463 enhanced status code", "", 4},
      {"550 4.7.1 x", std::nullopt, "enhanced status code 4.7.1 does not match reply code 550", "",
       4},
      {"451 5.7.1 x", std::nullopt, "(its class must be 4)", "", 4},
      {"250 5.0.0 x", std::nullopt, "does not match reply code 250", "", 4},
      // Errors in the text.
      {"550 5.7.1 a\tb", std::nullopt, "control character in reply text", "", 11},
      {"550 5.7.1 a\x7f", std::nullopt, "control character in reply text", "", 11},
      {"550 5.7.1 hi $foo", std::nullopt,
       "unknown variable $foo in reply; known: $client_ip $sender $rcpt $rule $score $session", "",
       13},
      {"550 5.7.1 $sender_x", std::nullopt, "unknown variable $sender_x", "", 10},
      {"550 5.7.1 $Sender", std::nullopt, "unknown variable $Sender", "", 10},
      {"550 5.7.1 costs 5$", std::nullopt, "unknown variable $ ", "", 17},
  };
  for (const auto& c : cases) {
    INFO("reply: " << c.text);
    std::string error;
    std::size_t offset = 999;
    auto reply = ReplyTemplate::parse(c.text, error, offset);
    if (c.code) {
      CHECK(reply.has_value());
      if (!reply) {
        continue;
      }
      CHECK(reply->code() == *c.code);
      CHECK(reply->enhanced().toString() == c.escOrError);
      CHECK(reply->text() == c.body);
    } else {
      CHECK_FALSE(reply.has_value());
      CHECK_THAT(error, Catch::Contains(c.escOrError));
      CHECK(offset == c.errorOffset);
    }
  }
}

TEST_CASE("all six reply variables expand", "[reply]") {
  std::string error;
  std::size_t offset = 0;
  auto reply = ReplyTemplate::parse(
      "550 5.7.1 ip=$client_ip from=<$sender> to=<$rcpt> rule=$rule score=$score id=$session.",
      error, offset);
  REQUIRE(reply);
  ReplyVariables vars{"192.0.2.1", "a@example.com", "b@example.org", "spf-fail", "7.5", "S1"};
  CHECK(reply->expandText(vars) ==
        "ip=192.0.2.1 from=<a@example.com> to=<b@example.org> rule=spf-fail score=7.5 id=S1.");
  CHECK(reply->render(vars) ==
        "550 5.7.1 ip=192.0.2.1 from=<a@example.com> to=<b@example.org> rule=spf-fail "
        "score=7.5 id=S1.");
}

TEST_CASE("expansion handles adjacent, repeated and empty variables", "[reply]") {
  struct Case {
    std::string text;
    std::string expanded;
  };
  const ReplyVariables vars{"192.0.2.1", "s@x", "r@y", "rule1", "3", ""};
  const std::vector<Case> cases = {
      {"$sender$rcpt", "s@xr@y"},
      {"$sender $sender", "s@x s@x"},
      {"<$sender>", "<s@x>"},
      {"$rule.", "rule1."},
      {"[$session]", "[]"},
      {"no variables", "no variables"},
      {"", ""},
      // Built with make(), not parse(): text parse() would refuse keeps as written.
      {"$ and $foo and $$sender", "$ and $foo and $s@x"},
  };
  for (const auto& c : cases) {
    INFO("text: " << c.text);
    auto reply = ReplyTemplate::make(550, {5, 7, 1}, c.text);
    CHECK(reply.expandText(vars) == c.expanded);
  }
}

TEST_CASE("control characters in variable values are dropped, never sent", "[reply][security]") {
  struct Case {
    std::string value;
    std::string kept;
  };
  const std::vector<Case> cases = {
      {"evil\r\n250 OK", "evil250 OK"},
      {"a\rb", "ab"},
      {"a\nb", "ab"},
      {std::string("a\0b", 3), "ab"},
      {"a\tb\x1b[31m\x7f", "ab[31m"},
      {"caf\xc3\xa9", "caf\xc3\xa9"},  // UTF-8 stays
      {"\r\n.\r\nQUIT\r\n", ".QUIT"},
  };
  for (const auto& c : cases) {
    INFO("value: " << c.value);
    const std::string variables[] = {"client_ip", "sender", "rcpt", "rule", "score", "session"};
    for (const auto& name : variables) {
      INFO("variable $" << name);
      std::string error;
      std::size_t offset = 0;
      auto reply = ReplyTemplate::parse("550 5.7.1 [$" + name + "]", error, offset);
      REQUIRE(reply);
      ReplyVariables vars;
      if (name == "client_ip")
        vars.clientIp = c.value;
      if (name == "sender")
        vars.sender = c.value;
      if (name == "rcpt")
        vars.rcpt = c.value;
      if (name == "rule")
        vars.rule = c.value;
      if (name == "score")
        vars.score = c.value;
      if (name == "session")
        vars.session = c.value;
      std::string line = reply->render(vars);
      CHECK(line == "550 5.7.1 [" + c.kept + "]");
      CHECK(line.find_first_of(std::string("\r\n\0", 3)) == std::string::npos);
    }
  }
}

TEST_CASE("render joins code, enhanced code and text with single spaces", "[reply]") {
  CHECK(ReplyTemplate::make(550, {5, 7, 1}, "go away").render({}) == "550 5.7.1 go away");
  CHECK(ReplyTemplate::make(451, {4, 7, 1}, "").render({}) == "451 4.7.1");
  CHECK(ReplyTemplate::make(550, {5, 7, 1}, "$sender").render({}) == "550 5.7.1");
}

TEST_CASE("enhanced status codes parse and print", "[reply]") {
  struct Case {
    std::string text;
    std::optional<EnhancedStatus> parsed;
  };
  const std::vector<Case> cases = {
      {"5.7.1", EnhancedStatus{5, 7, 1}},
      {"4.4.3", EnhancedStatus{4, 4, 3}},
      {"2.0.0", EnhancedStatus{2, 0, 0}},
      {"5.7.23", EnhancedStatus{5, 7, 23}},
      {"5.999.999", EnhancedStatus{5, 999, 999}},
      {"3.0.0", std::nullopt},
      {"1.0.0", std::nullopt},
      {"5.7", std::nullopt},
      {"5", std::nullopt},
      {"", std::nullopt},
      {"5.7.1.", std::nullopt},
      {".7.1", std::nullopt},
      {"5.7.", std::nullopt},
      {"5.1000.1", std::nullopt},
      {"5.7.1000", std::nullopt},
      {"5.-7.1", std::nullopt},
      {"5.7.-1", std::nullopt},
      {"-5.7.1", std::nullopt},
      {"5. 7.1", std::nullopt},
  };
  for (const auto& c : cases) {
    INFO("esc: " << c.text);
    auto parsed = EnhancedStatus::parse(c.text);
    CHECK(parsed == c.parsed);
    if (parsed) {
      CHECK(parsed->toString() == c.text);
    }
  }
}

TEST_CASE("isReplyVariable knows exactly the six names", "[reply]") {
  for (std::string name : {"client_ip", "sender", "rcpt", "rule", "score", "session"}) {
    CHECK(isReplyVariable(name));
  }
  for (std::string name : {"", "ip", "client", "Sender", "sender_", "$sender", "helo"}) {
    INFO(name);
    CHECK_FALSE(isReplyVariable(name));
  }
}

}  // namespace
}  // namespace smtpgate::rules
