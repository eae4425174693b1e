/// support_test — proves the integration harness (tests/support) against the
/// real programs: swaks -> smtp-sink, swaks -> private Postfix -> smtp-sink,
/// XCLIENT through Postfix, relay refusal, and two Postfix instances at once.
/// Every wait has a deadline of at most 20 s; nothing sleeps. Cleanup is the
/// fixtures' destructors (processes stopped, TempDirs removed).

#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <regex>
#include <string>

#include "tests/support/postfix_instance.h"
#include "tests/support/process.h"
#include "tests/support/smtp_client.h"
#include "tests/support/smtp_sink.h"

namespace smtpgate::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kTimeout = 20s;

std::string server(const std::string& host, std::uint16_t port) {
  return host + ":" + std::to_string(port);
}

/// The queue id from Postfix's "250 2.0.0 Ok: queued as 4F1A2B3C4D".
std::string queuedAs(const std::string& transcript) {
  std::smatch match;
  static const std::regex kQueued("250 2\\.0\\.0 Ok: queued as ([0-9A-Za-z]+)");
  return std::regex_search(transcript, match, kQueued) ? match[1].str() : std::string();
}

bool hasLine(const SmtpReply& reply, const std::string& keyword) {
  for (const auto& line : reply.lines) {
    if (line.rfind(keyword, 0) == 0) {
      return true;
    }
  }
  return false;
}

/// One whole transaction over a raw SmtpClient; returns the reply to the final dot.
SmtpReply sendMessage(SmtpClient& client, const std::string& rcpt, const std::string& data) {
  auto deadline = deadlineIn(kTimeout);
  REQUIRE(client.command("MAIL FROM:<sender@example.org>", deadline).code == 250);
  REQUIRE(client.command("RCPT TO:<" + rcpt + ">", deadline).code == 250);
  REQUIRE(client.command("DATA", deadline).code == 354);
  client.send(data);
  return client.readReply(deadline);
}

}  // namespace

TEST_CASE("harness: ChildProcess", "[support]") {
  SECTION("stop() ends the whole process group within the grace period") {
    TempDir dir;
    ChildProcess child({"sh", "-c", "sleep 60 & echo $! > " + dir.file("grandchild") + "; wait"},
                       dir.file("log"));
    child.start();
    REQUIRE(
        waitFor([&] { return !readFile(dir.file("grandchild")).empty(); }, deadlineIn(kTimeout)));
    pid_t grandchild = std::stoi(readFile(dir.file("grandchild")));
    auto started = Clock::now();
    REQUIRE(child.stop(5s).has_value());
    CHECK(Clock::now() - started < 5s);
    CHECK_FALSE(child.running());
    CHECK(waitFor([&] { return !processAlive(grandchild); }, deadlineIn(kTimeout)));
  }
  SECTION("a missing program fails at start(), not later") {
    TempDir dir;
    ChildProcess child({"/nonexistent/program"}, dir.file("log"));
    CHECK_THROWS_WITH(child.start(), Catch::Contains("cannot execute /nonexistent/program"));
  }
}

TEST_CASE("harness: runCommand, TempDir, ports", "[support]") {
  SECTION("runCommand captures output and exit code, and enforces its timeout") {
    CommandResult ok = runCommand({"sh", "-c", "cat; echo err >&2; exit 3"}, kTimeout, "in\n");
    CHECK(ok.exitCode == 3);
    CHECK(ok.output == "in\nerr\n");
    auto started = Clock::now();
    CommandResult slow = runCommand({"sleep", "30"}, 200ms);
    CHECK(slow.timedOut);
    CHECK(Clock::now() - started < 5s);
  }
  SECTION("TempDir is removed with its contents") {
    std::string path;
    {
      TempDir dir("smtpgate-tempdir-test");
      path = dir.path();
      writeFile(dir.file("x"), "y");
      CHECK(readFile(dir.file("x")) == "y");
    }
    if (std::getenv("SMTPGATE_KEEP_TEST_DIRS") == nullptr) {
      CHECK(::access(path.c_str(), F_OK) != 0);
    }
  }
  SECTION("freePort and waitForPort") {
    std::uint16_t port = freePort();
    CHECK(port != 0);
    CHECK_FALSE(waitForPort("127.0.0.1", port, deadlineIn(50ms)));
  }
}

TEST_CASE("harness: parseSinkDump splits at markers and strips the terminator's newline",
          "[support]") {
  std::string dump =
      "\001smtpgate-sink-message\nX-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\n"
      "X-Helo-Args: h\nX-Mail-Args: <> BODY=8BITMIME\nX-Rcpt-Args: <a@x> NOTIFY=NEVER\n"
      "X-Rcpt-Args: <b@x>\nReceived: from h ([127.0.0.1])\n\tby s (smtp-sink) with ESMTP id 1;\n"
      "\tMon, 1 Jan 2024 00:00:00 +0000 (UTC)\nSubject: one\n\nbody\n\n"
      "\001smtpgate-sink-message\nX-Client-Addr: 127.0.0.1\nX-Client-Proto: SMTP\n"
      "X-Mail-Args: <s@y>\nX-Rcpt-Args: <c@x>\nReceived: from [127.0.0.1] ([127.0.0.1])\n"
      "\tby s (smtp-sink) with SMTP id 2;\n\tMon, 1 Jan 2024 00:00:00 +0000 (UTC)\n\n";
  auto messages = parseSinkDump(dump, 10);
  REQUIRE(messages.size() == 2);
  CHECK(messages[0].sender.empty());
  CHECK(messages[0].mailArgs == "<> BODY=8BITMIME");
  CHECK(messages[0].recipients == std::vector<std::string>{"a@x", "b@x"});
  CHECK(messages[0].data == "Subject: one\n\nbody\n");
  CHECK(messages[1].sender == "s@y");
  CHECK(messages[1].heloArgs.empty());
  CHECK(messages[1].data.empty());
  CHECK(parseSinkDump(dump, 1).size() == 1);
}

TEST_CASE("smtp-sink keeps what swaks and a raw client send", "[support][sink]") {
  SmtpSink sink;
  sink.start();
  REQUIRE(sink.port() != 0);

  SwaksResult run =
      swaks({"--server", server(sink.host(), sink.port()), "--from", "sender@example.org", "--to",
             "a@example.com,b@example.com", "--helo", "client.test", "--header",
             "Subject: via swaks", "--body", "first line\n.starts with a dot\nlast line"});
  INFO(run.transcript);
  REQUIRE(run.exitCode == 0);
  REQUIRE(sink.waitForMessages(1, deadlineIn(kTimeout)));
  auto messages = sink.messages();
  REQUIRE(messages.size() == 1);
  CHECK(messages[0].clientAddr == "127.0.0.1");
  CHECK(messages[0].heloArgs == "client.test");
  CHECK(messages[0].sender == "sender@example.org");
  CHECK(messages[0].recipients == std::vector<std::string>{"a@example.com", "b@example.com"});
  CHECK_THAT(messages[0].data, Catch::Contains("Subject: via swaks\n"));
  // swaks dot-stuffed the line, smtp-sink unstuffed it again.
  CHECK_THAT(messages[0].data, Catch::Contains("\nfirst line\n.starts with a dot\nlast line\n"));

  // A pipelined transaction with exact bytes: one write, replies in order.
  SmtpClient client;
  auto deadline = deadlineIn(kTimeout);
  client.connect(sink.host(), sink.port(), deadline);
  CHECK(client.readBanner(deadline).code == 220);
  SmtpReply ehlo = client.command("EHLO raw.test", deadline);
  CHECK(ehlo.code == 250);
  CHECK(hasLine(ehlo, "PIPELINING"));
  CHECK(hasLine(ehlo, "XCLIENT"));
  client.send(
      "MAIL FROM:<>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n"
      "Subject: raw\r\n\r\nline one\r\n..leading dot\r\n.\r\nQUIT\r\n");
  CHECK(client.readReply(deadline).code == 250);
  CHECK(client.readReply(deadline).code == 250);
  CHECK(client.readReply(deadline).code == 354);
  CHECK(client.readReply(deadline).code == 250);
  CHECK(client.readReply(deadline).code == 221);
  CHECK(client.waitForClose(deadline));

  REQUIRE(sink.waitForMessages(2, deadlineIn(kTimeout)));
  messages = sink.messages();
  REQUIRE(messages.size() == 2);
  CHECK(messages[1].sender.empty());
  CHECK(messages[1].recipients == std::vector<std::string>{"c@example.com"});
  CHECK(messages[1].data == "Subject: raw\n\nline one\n.leading dot\n");
}

TEST_CASE("smtp-sink fails commands and hides extensions on request", "[support][sink]") {
  SmtpSinkOptions options;
  options.hardReject = {"RCPT"};
  options.softReject = {"VRFY"};
  options.xclient = false;
  options.eightBitMime = false;
  SmtpSink sink(options);
  sink.start();

  SmtpClient client;
  auto deadline = deadlineIn(kTimeout);
  client.connect(sink.host(), sink.port(), deadline);
  CHECK(client.readBanner(deadline).code == 220);
  SmtpReply ehlo = client.command("EHLO raw.test", deadline);
  CHECK_FALSE(hasLine(ehlo, "XCLIENT"));
  CHECK_FALSE(hasLine(ehlo, "8BITMIME"));
  CHECK_FALSE(hasLine(ehlo, "PIPELINING"));  // -f and -r imply -p
  CHECK(client.command("MAIL FROM:<s@example.org>", deadline).code == 250);
  SmtpReply rcpt = client.command("RCPT TO:<a@example.com>", deadline);
  CHECK(rcpt.code == 500);
  CHECK(rcpt.text() == "5.3.0 Error: command failed");
  CHECK(client.command("VRFY a", deadline).klass() == 4);
  CHECK(client.command("QUIT", deadline).code == 221);
  CHECK(sink.messageCount() == 0);
}

TEST_CASE("Postfix relays to its sink and refuses unknown recipients itself",
          "[support][postfix]") {
  SKIP_WITHOUT_POSTFIX();
  PostfixInstance postfix;
  postfix.start();
  const std::string target = server(postfix.host(), postfix.port());

  SwaksResult good = swaks({"--server", target, "--from", "sender@example.org", "--to",
                            "user@example.com", "--header", "Subject: through postfix"});
  INFO(good.transcript);
  REQUIRE(good.exitCode == 0);
  std::string queueId = queuedAs(good.transcript);
  REQUIRE_FALSE(queueId.empty());

  REQUIRE(postfix.sink().waitForMessages(1, deadlineIn(kTimeout)));
  auto messages = postfix.sink().messages();
  REQUIRE(messages.size() == 1);
  CHECK(messages[0].sender == "sender@example.org");
  CHECK(messages[0].recipients == std::vector<std::string>{"user@example.com"});
  CHECK_THAT(messages[0].data, Catch::Contains("Subject: through postfix\n"));
  CHECK_THAT(messages[0].data,
             Catch::Contains("by backend.test (Postfix) with ESMTP id " + queueId));

  auto sent = postfix.waitForLog(std::regex(queueId + ": to=<user@example\\.com>.* status=sent"),
                                 deadlineIn(kTimeout));
  REQUIRE(sent.has_value());
  CHECK_THAT(*sent, Catch::Contains("relay=127.0.0.1[127.0.0.1]:" +
                                    std::to_string(postfix.sink().port())));
  CHECK(postfix.queueIdsDelivered() == std::vector<std::string>{queueId});

  SwaksResult unknown =
      swaks({"--server", target, "--from", "sender@example.org", "--to", "unknown@example.com"});
  INFO(unknown.transcript);
  CHECK(unknown.exitCode != 0);
  CHECK_THAT(unknown.transcript,
             Catch::Contains("<** 550 5.1.1 <unknown@example.com>: Recipient address rejected: "
                             "User unknown in relay recipient table"));
  CHECK(postfix.waitForLog(std::regex("NOQUEUE: reject: RCPT from .* 550 5\\.1\\.1"),
                           deadlineIn(kTimeout)));
  CHECK(postfix.sink().messageCount() == 1);
}

TEST_CASE("Postfix takes XCLIENT from 127.0.0.1 outside mynetworks", "[support][postfix]") {
  SKIP_WITHOUT_POSTFIX();
  PostfixOptions options;
  options.mynetworks = "192.0.2.1/32";  // 127.0.0.1 is not trusted for relaying
  PostfixInstance postfix(options);
  postfix.start();

  SmtpClient client;
  auto deadline = deadlineIn(kTimeout);
  client.connect(postfix.host(), postfix.port(), deadline);
  CHECK(client.readBanner(deadline).code == 220);
  SmtpReply ehlo = client.command("EHLO proxy.test", deadline);
  REQUIRE(hasLine(ehlo, "XCLIENT"));
  CHECK(hasLine(ehlo, "PIPELINING"));
  CHECK(hasLine(ehlo, "SMTPUTF8"));  // what smtp-sink cannot announce
  CHECK_FALSE(hasLine(ehlo, "STARTTLS"));
  // Postfix answers XCLIENT with a new greeting; the session starts over.
  SmtpReply xclient = client.command(
      "XCLIENT ADDR=192.0.2.55 NAME=client.example HELO=client.example PROTO=ESMTP", deadline);
  REQUIRE(xclient.code == 220);
  CHECK(client.command("EHLO client.example", deadline).code == 250);
  SmtpReply done = sendMessage(client, "user@example.com", "Subject: xclient\r\n\r\nhi\r\n.\r\n");
  CHECK(done.code == 250);
  CHECK(client.command("QUIT", deadline).code == 221);

  auto line = postfix.waitForLog(std::regex("client=client\\.example\\[192\\.0\\.2\\.55\\]"),
                                 deadlineIn(kTimeout));
  REQUIRE(line.has_value());
  REQUIRE(postfix.sink().waitForMessages(1, deadlineIn(kTimeout)));
  CHECK_THAT(postfix.sink().messages()[0].data,
             Catch::Contains("from client.example (client.example [192.0.2.55])"));
}

TEST_CASE("Postfix is not an open relay when the client is outside mynetworks",
          "[support][postfix]") {
  SKIP_WITHOUT_POSTFIX();
  PostfixOptions options;
  options.mynetworks = "192.0.2.1/32";
  PostfixInstance postfix(options);
  postfix.start();

  SmtpClient client;
  auto deadline = deadlineIn(kTimeout);
  client.connect(postfix.host(), postfix.port(), deadline);
  CHECK(client.readBanner(deadline).code == 220);
  CHECK(client.command("EHLO outsider.test", deadline).code == 250);
  CHECK(client.command("MAIL FROM:<sender@example.org>", deadline).code == 250);
  SmtpReply relay = client.command("RCPT TO:<someone@elsewhere.example>", deadline);
  CHECK(relay.code == 554);
  CHECK_THAT(relay.text(),
             Catch::Contains("5.7.1 <someone@elsewhere.example>: Relay access denied"));
  // Its own relay domain is still open to the same client.
  CHECK(client.command("RCPT TO:<user@example.com>", deadline).code == 250);
  CHECK(client.command("QUIT", deadline).code == 221);
}

TEST_CASE("two Postfix instances run and deliver side by side", "[support][postfix]") {
  SKIP_WITHOUT_POSTFIX();
  PostfixInstance first;
  PostfixInstance second;
  first.start();
  second.start();
  CHECK(first.port() != second.port());
  CHECK(first.masterPid() != second.masterPid());
  CHECK(first.sink().port() != second.sink().port());

  auto deliver = [](PostfixInstance& postfix, const std::string& subject) {
    SwaksResult run = swaks({"--server", server(postfix.host(), postfix.port()), "--to",
                             "user@example.com", "--header", "Subject: " + subject});
    INFO(run.transcript);
    REQUIRE(run.exitCode == 0);
    return queuedAs(run.transcript);
  };
  std::string firstId = deliver(first, "to first");
  std::string secondId = deliver(second, "to second");
  REQUIRE(first.sink().waitForMessages(1, deadlineIn(kTimeout)));
  REQUIRE(second.sink().waitForMessages(1, deadlineIn(kTimeout)));
  CHECK_THAT(first.sink().messages()[0].data, Catch::Contains("Subject: to first"));
  CHECK_THAT(second.sink().messages()[0].data, Catch::Contains("Subject: to second"));
  CHECK(first.waitForLog(std::regex(firstId + ": .*status=sent"), deadlineIn(kTimeout)));
  CHECK(second.waitForLog(std::regex(secondId + ": .*status=sent"), deadlineIn(kTimeout)));

  // Stopping one leaves the other running and delivering.
  pid_t firstMaster = first.masterPid();
  first.stop();
  CHECK_FALSE(processAlive(firstMaster, "master"));
  CHECK(processAlive(second.masterPid(), "master"));
  deliver(second, "after the first stopped");
  CHECK(second.sink().waitForMessages(2, deadlineIn(kTimeout)));
}

TEST_CASE("Postfix applies the milter settings", "[support][postfix]") {
  SKIP_WITHOUT_POSTFIX();
  PostfixOptions options;
  // A milter nobody listens on: smtpd must apply milter_default_action.
  options.smtpdMilters = "inet:127.0.0.1:" + std::to_string(freePort());
  options.milterDefaultAction = "tempfail";
  PostfixInstance postfix(options);
  postfix.start();

  SwaksResult run =
      swaks({"--server", server(postfix.host(), postfix.port()), "--to", "user@example.com"});
  INFO(run.transcript);
  CHECK(run.exitCode != 0);
  CHECK_THAT(run.transcript, Catch::Contains("451 4.7.1 Service unavailable - try again later"));
  CHECK(postfix.waitForLog(std::regex("warning: connect to Milter service " + options.smtpdMilters +
                                      ": Connection refused"),
                           deadlineIn(kTimeout)));
  CHECK(postfix.sink().messageCount() == 0);
}

}  // namespace smtpgate::testing
