/// milter_test — `smtpgate milter` end to end: the real binary as the
/// smtpd_milters of a private Postfix (which relays to its smtp-sink), driven
/// by swaks. Proves the milter issue's "Done when" list: a refusal with the
/// configured reply at connect, helo, mail, rcpt and end of data; a reject at
/// rcpt refuses that recipient only; an accepted message reaches the sink and
/// the decision log has its "deliver" line with Postfix's queue id; dry-run
/// delivers and logs "would-reject"; with the milter down, Postfix's
/// milter_default_action (tempfail) applies; SIGHUP and SIGUSR2 reload the rules; a
/// message let through gets our Authentication-Results right below
/// Postfix's own Received header, and loses forged ones (issue 5).
///
/// Every case has its own TempDirs, Postfix and smtpgate milter, so `ctest -j`
/// runs them side by side; every wait has a deadline of at most 20 s.

#include <signal.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "tests/support/postfix_instance.h"
#include "tests/support/process.h"
#include "tests/support/smtp_client.h"

namespace smtpgate::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

constexpr auto kTimeout = 20s;

/// [auth] authserv_id of every milter here: the Authentication-Results it
/// adds start with it, and incoming ones claiming it are forged.
constexpr const char* kAuthservId = "mx.smtpgate.test";

/// The rules every case loads: one refusal per stage, each with its own
/// reply; the '%' in two of them checks smfi_setreply's escaping.
constexpr const char* kRules = R"(
list local cidr { 127.0.0.0/8 }
rule conn-local on connect when client.ip in @local and local.port == 2 then reject "554 5.7.1 No mail from $client_ip, 100% sure"
rule bad-helo   on helo when helo ~ /^bad\./ then reject "550 5.7.1 HELO $client_ip refused by smtpgate"
rule bad-sender on mail when sender ~ /^spammer@/ then reject "553 5.7.1 Sender <$sender> refused by smtpgate"
rule busy-rcpt  on rcpt when rcpt ~ /^blocked@/ then tempfail "450 4.2.1 Mailbox <$rcpt> busy, says smtpgate"
rule spam-subj  on data when header.subject ~ /v[i1]agra/i then reject "550 5.7.1 Spam (100% sure), says smtpgate"
)";

/// `smtpgate milter` as a child process with its own config, rules and
/// decision log in a TempDir, listening on inet:PORT@127.0.0.1.
class MilterProcess {
 public:
  explicit MilterProcess(std::string rules, std::string mode = "enforce")
      : rules_(std::move(rules)), mode_(std::move(mode)) {}

  /// The milter is given its port, so a freePort() is tried
  /// and, if another process took it in between, a new one (three
  /// attempts). With `port`, that one port only (a Postfix already points
  /// at it).
  void start(std::uint16_t port = 0) {
    writeFile(dir_.file("local.rules"), rules_);
    for (int attempt = 0; attempt < (port != 0 ? 1 : 3); ++attempt) {
      port_ = port != 0 ? port : freePort();
      writeFile(configPath(),
                "[milter]\nsocket = \"inet:" + std::to_string(port_) +
                    "@127.0.0.1\"\n[rules]\nfiles = [\"local.rules\"]\nwatch = false\nmode = \"" +
                    mode_ + "\"\n[log]\ndecisions = \"decisions.jsonl\"\n" +
                    "[auth]\nauthserv_id = \"" + kAuthservId + "\"\n");
      process_ = std::make_unique<ChildProcess>(
          std::vector<std::string>{SMTPGATE_BINARY, "milter", "-c", configPath()},
          dir_.file("smtpgate.log"));
      process_->start();
      bool listening = waitFor(
          [&] {
            auto ports = listeningTcpPorts(process_->pid());
            return std::find(ports.begin(), ports.end(), port_) != ports.end() ||
                   !process_->running();
          },
          deadlineIn(kTimeout));
      if (listening && process_->running()) {
        return;
      }
      process_->stop();
    }
    throw std::runtime_error("smtpgate milter did not start:\n" + log());
  }

  void stop() {
    if (process_) {
      process_->stop();
    }
  }
  ChildProcess& process() { return *process_; }

  /// Postfix's syntax for our socket.
  std::string postfixSocket() const { return "inet:127.0.0.1:" + std::to_string(port_); }
  std::string configPath() const { return dir_.file("smtpgate.toml"); }
  std::string rulesPath() const { return dir_.file("local.rules"); }
  std::string log() const { return readFile(dir_.file("smtpgate.log")); }

  /// The decision log's lines parsed, once at least `count` are there.
  std::vector<json> waitForDecisions(std::size_t count) const {
    std::vector<json> lines;
    waitFor(
        [&] {
          lines.clear();
          std::string text = readFile(dir_.file("decisions.jsonl"));
          std::size_t start = 0;
          for (std::size_t end; (end = text.find('\n', start)) != std::string::npos;
               start = end + 1) {
            lines.push_back(json::parse(text.substr(start, end - start)));
          }
          return lines.size() >= count;
        },
        deadlineIn(kTimeout));
    return lines;
  }

 private:
  std::string rules_;
  std::string mode_;
  TempDir dir_{"smtpgate-milter-test"};
  std::unique_ptr<ChildProcess> process_;
  std::uint16_t port_ = 0;
};

/// A private Postfix whose smtpd calls the milter at `milterSocket`.
PostfixOptions postfixWithMilter(const std::string& milterSocket) {
  PostfixOptions options;
  options.smtpdMilters = milterSocket;
  options.recipients = {"user@example.com", "postmaster@example.com", "blocked@example.com"};
  // No milter_connect_macros: smtpgate asks for {daemon_port} itself
  // (SMFIF_SETSYMLIST), which the reject-at-connect case relies on.
  options.mainCf = {{"milter_connect_timeout", "5s"},
                    {"milter_command_timeout", "10s"},
                    {"milter_content_timeout", "10s"}};
  return options;
}

/// One swaks run against `postfix` with the given extra arguments.
SwaksResult send(const PostfixInstance& postfix, std::vector<std::string> extra) {
  std::vector<std::string> args = {
      "--server", postfix.host() + ":" + std::to_string(postfix.port()),
      "--from",   "sender@example.org",
      "--to",     "user@example.com",
      "--helo",   "client.example.org",
      "--header", "Subject: hello"};
  args.insert(args.end(), extra.begin(), extra.end());
  return swaks(args);
}

/// Everything up to one case: the milter with kRules, then Postfix calling it.
struct Gate {
  explicit Gate(std::string rules = kRules, std::string mode = "enforce")
      : milter(std::move(rules), std::move(mode)) {
    milter.start();
    postfix = std::make_unique<PostfixInstance>(postfixWithMilter(milter.postfixSocket()));
    postfix->start();
  }
  MilterProcess milter;
  std::unique_ptr<PostfixInstance> postfix;
};

const json* findDecision(const std::vector<json>& lines, const std::string& stage,
                         const std::string& action) {
  for (const auto& line : lines) {
    if (line.value("stage", "") == stage && line.value("action", "") == action) {
      return &line;
    }
  }
  return nullptr;
}

/// The header fields of `data` (as SinkMessage::data: LF line ends), in
/// order, each with its continuation lines ("\n\t...") kept.
std::vector<std::string> headerFields(const std::string& data) {
  std::vector<std::string> fields;
  std::size_t pos = 0;
  while (pos < data.size()) {
    std::size_t end = data.find('\n', pos);
    std::string line = data.substr(pos, end == std::string::npos ? end : end - pos);
    pos = end == std::string::npos ? data.size() : end + 1;
    if (line.empty()) {
      break;  // the end of the header block
    }
    if ((line[0] == ' ' || line[0] == '\t') && !fields.empty()) {
      fields.back() += "\n" + line;
    } else {
      fields.push_back(line);
    }
  }
  return fields;
}

/// The fields named Authentication-Results (in any case), in order.
std::vector<std::string> authenticationResults(const std::vector<std::string>& fields) {
  std::vector<std::string> out;
  for (const auto& f : fields) {
    static const std::regex kName("^authentication-results[ \t]*:", std::regex::icase);
    if (std::regex_search(f, kName)) {
      out.push_back(f);
    }
  }
  return out;
}

std::string queuedAs(const std::string& transcript) {
  std::smatch match;
  static const std::regex kQueued("250 2\\.0\\.0 Ok: queued as ([0-9A-Za-z]+)");
  return std::regex_search(transcript, match, kQueued) ? match[1].str() : std::string();
}

}  // namespace

TEST_CASE("milter: an accepted message reaches the sink and is logged with its queue id",
          "[milter]") {
  SKIP_WITHOUT_POSTFIX();
  Gate gate;
  SwaksResult run = send(*gate.postfix, {"--body", "just a normal message"});
  INFO(run.transcript << gate.milter.log());
  REQUIRE(run.exitCode == 0);
  REQUIRE(gate.postfix->sink().waitForMessages(1, deadlineIn(kTimeout)));
  auto messages = gate.postfix->sink().messages();
  CHECK(messages.at(0).recipients == std::vector<std::string>{"user@example.com"});
  CHECK_THAT(messages.at(0).data, Catch::Contains("just a normal message"));

  std::string queueId = queuedAs(run.transcript);
  REQUIRE_FALSE(queueId.empty());
  auto lines = gate.milter.waitForDecisions(1);
  const json* deliver = findDecision(lines, "data", "deliver");
  REQUIRE(deliver != nullptr);
  CHECK(deliver->value("queue_id", "") == queueId);
  CHECK(deliver->value("frontend", "") == "milter");
  CHECK(deliver->value("client_ip", "") == "127.0.0.1");
  CHECK(deliver->value("helo", "") == "client.example.org");
  CHECK(deliver->value("sender", "") == "sender@example.org");
  CHECK((*deliver)["rcpts"] == json::array({"user@example.com"}));
  CHECK(deliver->value("subject", "") == "hello");
}

TEST_CASE("milter: a reject at connect gives the configured reply", "[milter]") {
  SKIP_WITHOUT_POSTFIX();
  // The connect rule of kRules never fires (local.port is never 2). Here it
  // refuses clients of Postfix's smtpd port — which the milter learns from
  // the {daemon_port} macro — so Postfix starts first, while the milter is
  // still down (PostfixInstance::start() waits for a 220 greeting).
  std::uint16_t port = freePort();
  PostfixInstance postfix(postfixWithMilter("inet:127.0.0.1:" + std::to_string(port)));
  postfix.start();
  MilterProcess milter(std::regex_replace(kRules, std::regex("local.port == 2"),
                                          "local.port == " + std::to_string(postfix.port())));
  milter.start(port);
  SwaksResult run = send(postfix, {});
  INFO(run.transcript << milter.log() << postfix.maillog());
  CHECK(run.exitCode != 0);
  // Postfix answers a milter's refusal at connect with its own banner,
  // "554 HOST ESMTP not accepting connections", and logs the milter's reply.
  CHECK(std::regex_search(run.transcript, std::regex("<\\*\\* +554 ")));
  CHECK(postfix.waitForLog(std::regex("milter-reject: CONNECT from .*: 554 5\\.7\\.1 No mail "
                                      "from 127\\.0\\.0\\.1, 100% sure"),
                           deadlineIn(kTimeout)));
  CHECK(postfix.sink().messageCount() == 0);
  auto lines = milter.waitForDecisions(1);
  const json* d = findDecision(lines, "connect", "reject");
  REQUIRE(d != nullptr);
  CHECK(d->value("rule", "") == "conn-local");
  CHECK(d->value("reply", "") == "554 5.7.1 No mail from 127.0.0.1, 100% sure");
}

TEST_CASE("milter: a reject at helo gives the configured reply", "[milter]") {
  SKIP_WITHOUT_POSTFIX();
  Gate gate;
  SwaksResult run = send(*gate.postfix, {"--helo", "bad.example.net"});
  INFO(run.transcript << gate.milter.log());
  CHECK(run.exitCode != 0);
  CHECK_THAT(run.transcript, Catch::Contains("550 5.7.1 HELO 127.0.0.1 refused by smtpgate"));
  CHECK(gate.postfix->sink().messageCount() == 0);
  auto lines = gate.milter.waitForDecisions(1);
  const json* d = findDecision(lines, "helo", "reject");
  REQUIRE(d != nullptr);
  CHECK(d->value("rule", "") == "bad-helo");
  CHECK(d->value("helo", "") == "bad.example.net");
}

TEST_CASE("milter: a reject at mail gives the configured reply", "[milter]") {
  SKIP_WITHOUT_POSTFIX();
  Gate gate;
  SwaksResult run = send(*gate.postfix, {"--from", "spammer@example.org"});
  INFO(run.transcript << gate.milter.log());
  CHECK(run.exitCode != 0);
  CHECK_THAT(run.transcript,
             Catch::Contains("553 5.7.1 Sender <spammer@example.org> refused by smtpgate"));
  CHECK(gate.postfix->sink().messageCount() == 0);
  auto lines = gate.milter.waitForDecisions(1);
  const json* d = findDecision(lines, "mail", "reject");
  REQUIRE(d != nullptr);
  CHECK(d->value("sender", "") == "spammer@example.org");
}

TEST_CASE("milter: a refusal at rcpt refuses that recipient only", "[milter]") {
  SKIP_WITHOUT_POSTFIX();
  Gate gate;
  SwaksResult run = send(*gate.postfix, {"--to", "blocked@example.com,user@example.com"});
  INFO(run.transcript << gate.milter.log());
  CHECK_THAT(run.transcript,
             Catch::Contains("450 4.2.1 Mailbox <blocked@example.com> busy, says smtpgate"));
  // The other recipient got the message.
  REQUIRE(gate.postfix->sink().waitForMessages(1, deadlineIn(kTimeout)));
  CHECK(gate.postfix->sink().messages().at(0).recipients ==
        std::vector<std::string>{"user@example.com"});
  auto lines = gate.milter.waitForDecisions(2);
  const json* refused = findDecision(lines, "rcpt", "tempfail");
  REQUIRE(refused != nullptr);
  CHECK((*refused)["rcpts"] == json::array({"blocked@example.com"}));
  const json* deliver = findDecision(lines, "data", "deliver");
  REQUIRE(deliver != nullptr);
  CHECK((*deliver)["rcpts"] == json::array({"user@example.com"}));
  CHECK_FALSE(deliver->value("queue_id", "").empty());
}

TEST_CASE("milter: a reject at end of data gives the configured reply", "[milter]") {
  SKIP_WITHOUT_POSTFIX();
  Gate gate;
  SwaksResult run =
      send(*gate.postfix, {"--header", "Subject: cheap v1agra today", "--body", "buy"});
  INFO(run.transcript << gate.milter.log());
  CHECK(run.exitCode != 0);
  CHECK_THAT(run.transcript, Catch::Contains("550 5.7.1 Spam (100% sure), says smtpgate"));
  CHECK(gate.postfix->sink().messageCount() == 0);
  auto lines = gate.milter.waitForDecisions(1);
  const json* d = findDecision(lines, "data", "reject");
  REQUIRE(d != nullptr);
  CHECK(d->value("rule", "") == "spam-subj");
  CHECK(d->value("reply", "") == "550 5.7.1 Spam (100% sure), says smtpgate");
  CHECK_FALSE(d->value("queue_id", "").empty());  // so it can be found in Postfix's log
}

TEST_CASE("milter: dry-run delivers and logs would-reject", "[milter]") {
  SKIP_WITHOUT_POSTFIX();
  Gate gate(kRules, "dry-run");
  SwaksResult run = send(*gate.postfix, {"--from", "spammer@example.org"});
  INFO(run.transcript << gate.milter.log());
  REQUIRE(run.exitCode == 0);
  REQUIRE(gate.postfix->sink().waitForMessages(1, deadlineIn(kTimeout)));
  auto lines = gate.milter.waitForDecisions(2);
  CHECK(findDecision(lines, "mail", "would-reject") != nullptr);
  CHECK(findDecision(lines, "data", "deliver") != nullptr);
  // A would-be refusal is let through like an accepted message: with ours.
  auto fields = headerFields(gate.postfix->sink().messages().at(0).data);
  INFO(gate.postfix->sink().messages().at(0).data);
  REQUIRE(fields.size() >= 2);
  CHECK_THAT(fields[0], Catch::StartsWith("Received: from client.example.org "));
  CHECK(fields[1] == std::string("Authentication-Results: ") + kAuthservId + "; none");
}

TEST_CASE("milter: forged Authentication-Results are removed and ours goes below Received",
          "[milter]") {
  SKIP_WITHOUT_POSTFIX();
  // Once with a rule reading the message (kRules), once with none: then the
  // milter asks for the header fields only to find forged ones.
  const std::string rules =
      GENERATE(std::string(kRules),
               std::string("rule bad-sender on mail when sender ~ /^spammer@/ then reject\n"));
  Gate gate(rules);
  // Authentication-Results #1 and #3 claim our authserv-id (the second in
  // another case, with a comment and a final dot); #2 is another host's and
  // stays. Deleting front to back (#1, then #3 — by then only two are left)
  // would let the second forged one through.
  const std::string message = std::string("Authentication-Results: ") + kAuthservId +
                              "; spf=pass smtp.mailfrom=forged-one@example.org\r\n"
                              "From: <sender@example.org>\r\n"
                              "Authentication-Results: other.example;\r\n"
                              "\tdkim=pass header.d=example.org\r\n"
                              "To: <user@example.com>\r\n"
                              "Subject: forged results\r\n"
                              "Authentication-Results: (forged) MX.SMTPGATE.TEST.; dkim=pass "
                              "header.d=forged-two.example\r\n"
                              "Message-ID: <forged-results@example.org>\r\n"
                              "Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
                              "\r\n"
                              "the body\r\n";
  SmtpClient client;
  auto deadline = deadlineIn(kTimeout);
  client.connect(gate.postfix->host(), gate.postfix->port(), deadline);
  REQUIRE(client.readBanner(deadline).code == 220);
  REQUIRE(client.command("EHLO client.example.org", deadline).code == 250);
  REQUIRE(client.command("MAIL FROM:<sender@example.org>", deadline).code == 250);
  REQUIRE(client.command("RCPT TO:<user@example.com>", deadline).code == 250);
  REQUIRE(client.command("DATA", deadline).code == 354);
  client.send(message + ".\r\n");
  SmtpReply queued = client.readReply(deadline);
  INFO(queued.raw << gate.milter.log());
  REQUIRE(queued.code == 250);
  client.command("QUIT", deadline);

  REQUIRE(gate.postfix->sink().waitForMessages(1, deadlineIn(kTimeout)));
  const std::string data = gate.postfix->sink().messages().at(0).data;
  INFO(data);
  auto fields = headerFields(data);
  // Postfix's own Received header stays on top (Postfix hides it from
  // milters); ours comes right below it, and is the first
  // Authentication-Results. Of the incoming ones only the foreign one is
  // left, unchanged and after ours.
  REQUIRE(fields.size() >= 2);
  CHECK(std::regex_search(fields[0], std::regex("^Received: from client\\.example\\.org "
                                                "\\([^)]*\\[127\\.0\\.0\\.1\\]\\)\\n\\tby "
                                                "backend\\.test \\(Postfix\\)")));
  CHECK(fields[1] == std::string("Authentication-Results: ") + kAuthservId + "; none");
  CHECK(authenticationResults(fields) ==
        std::vector<std::string>{fields[1],
                                 "Authentication-Results: other.example;\n\tdkim=pass "
                                 "header.d=example.org"});
  CHECK(data.find("forged-one") == std::string::npos);
  CHECK(data.find("forged-two") == std::string::npos);
  CHECK_THAT(data, Catch::EndsWith("\n\nthe body\n"));
  auto lines = gate.milter.waitForDecisions(1);
  CHECK(findDecision(lines, "data", "deliver") != nullptr);
}

TEST_CASE("milter: SIGHUP and SIGUSR2 reload the rules and the mode", "[milter]") {
  SKIP_WITHOUT_POSTFIX();
  // The config has `watch = false`: only the signal can reload.
  const int signo = GENERATE(SIGHUP, SIGUSR2);
  INFO("signal " << signo);
  Gate gate;
  SwaksResult before = send(*gate.postfix, {"--from", "newspam@example.org"});
  INFO(before.transcript << gate.milter.log());
  REQUIRE(before.exitCode == 0);
  writeFile(gate.milter.rulesPath(),
            std::string(kRules) +
                "rule new-rule on mail when sender ~ /^newspam@/ then reject \"550 5.7.1 New "
                "rule\"\n");
  REQUIRE(::kill(gate.milter.process().pid(), signo) == 0);
  REQUIRE(waitFor([&] { return gate.milter.log().find("reloaded rules") != std::string::npos; },
                  deadlineIn(kTimeout)));
  CHECK(gate.milter.process().running());
  SwaksResult after = send(*gate.postfix, {"--from", "newspam@example.org"});
  INFO(after.transcript);
  CHECK_THAT(after.transcript, Catch::Contains("550 5.7.1 New rule"));

  // The config is read again too: in dry-run the same mail goes through.
  std::string config = readFile(gate.milter.configPath());
  const std::string enforce = "mode = \"enforce\"";
  REQUIRE(config.find(enforce) != std::string::npos);
  config.replace(config.find(enforce), enforce.size(), "mode = \"dry-run\"");
  writeFile(gate.milter.configPath(), config);
  REQUIRE(::kill(gate.milter.process().pid(), signo) == 0);
  auto reloads = [&] {
    const std::string log = gate.milter.log();
    std::size_t count = 0;
    for (std::size_t at = log.find("reloaded rules"); at != std::string::npos;
         at = log.find("reloaded rules", at + 1)) {
      ++count;
    }
    return count;
  };
  REQUIRE(waitFor([&] { return reloads() == 2; }, deadlineIn(kTimeout)));
  SwaksResult dry = send(*gate.postfix, {"--from", "newspam@example.org"});
  INFO(dry.transcript);
  CHECK(dry.exitCode == 0);
  CHECK_THAT(dry.transcript, !Catch::Contains("550 5.7.1 New rule"));
}

TEST_CASE("milter: with the milter down, Postfix's milter_default_action applies", "[milter]") {
  SKIP_WITHOUT_POSTFIX();
  MilterProcess milter(kRules);
  milter.start();
  PostfixInstance postfix(postfixWithMilter(milter.postfixSocket()));
  postfix.start();
  milter.stop();  // nobody listens on the milter socket any more

  SwaksResult run = send(postfix, {});
  INFO(run.transcript << postfix.maillog());
  CHECK(run.exitCode != 0);
  // milter_default_action = tempfail: Postfix answers 4xx, nothing is queued.
  CHECK(std::regex_search(run.transcript, std::regex("<\\*\\* +4[0-9][0-9] ")));
  CHECK(postfix.sink().messageCount() == 0);
  CHECK(postfix.waitForLog(
      std::regex("connect to Milter service inet:127\\.0\\.0\\.1:[0-9]+: Connection refused"),
      deadlineIn(kTimeout)));
  CHECK(postfix.waitForLog(std::regex("milter-reject: MAIL from .*: 451 4\\.7\\.1 "),
                           deadlineIn(kTimeout)));
}

}  // namespace smtpgate::testing
