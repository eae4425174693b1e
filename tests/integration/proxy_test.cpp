/// proxy_test — `smtpgate proxy` end to end: the real binary in front of a
/// private Postfix (which relays to its smtp-sink), driven by swaks and by the
/// exact-bytes SmtpClient. Proves the proxy issue's "Done when" list:
/// delivery with the backend's queue id, a rule refusal at every stage that
/// the backend never sees, Postfix's own refusals relayed (an unknown user;
/// a refused DATA, after which the backend must be reset), XCLIENT,
/// STARTTLS, pipelining, backend down, SMTP smuggling, and plaintext
/// injected after STARTTLS.
///
/// How a negative is proved without sleeping: Postfix writes one
/// "disconnect from ... ehlo=1 xclient=0/1 mail=1 rcpt=1 bdat=1 quit=1" line per
/// smtpd session with the count of every command it received. The tests wait
/// (with a deadline) for that line of the proxied session, which Postfix
/// writes only after the session's last command, and then read the counts:
/// a command the proxy had forwarded would be counted there.
///
/// Every case has its own TempDirs, Postfix and smtpgate, so `ctest -j` runs
/// them side by side; every wait has a deadline of at most 20 s.

#include <fcntl.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "tests/support/postfix_instance.h"
#include "tests/support/process.h"
#include "tests/support/smtp_client.h"
#include "tests/support/smtpgate_process.h"

namespace smtpgate::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr auto kTimeout = 20s;

/// One rule per stage, each fired by an input no other test uses. The
/// replies are the configured ones the client must hear verbatim.
constexpr const char* kStageRules = R"(
rule conn-block  on connect when client.ip == 127.0.0.3          then reject "554 5.7.1 $client_ip is not welcome here"
rule bad-helo    on helo    when helo == refused.helo.test       then reject "550 5.7.1 That HELO name is refused"
rule bad-sender  on mail    when sender == "blocked@spam.test"   then reject "550 5.7.1 Sender <$sender> refused"
rule bad-rcpt    on rcpt    when rcpt == "refused@example.com"   then reject "550 5.7.1 <$rcpt>: refused by rule"
rule bad-subject on data    when header.subject ~ /REFUSE-ME/    then reject "550 5.7.1 Message refused by rule $rule"
)";

/// The backend: 127.0.0.1 (the proxy) is outside mynetworks, so Postfix
/// applies its own checks to the client XCLIENT names. refused@example.com
/// is a valid mailbox at Postfix: had the proxy forwarded the RCPT the rule
/// refused, Postfix would have accepted it.
PostfixOptions backendOptions() {
  PostfixOptions options;
  options.mynetworks = "192.0.2.1/32";
  options.recipients = {"user@example.com", "postmaster@example.com", "refused@example.com"};
  return options;
}

/// A private Postfix and an smtpgate proxy in front of it.
class ProxiedPostfix {
 public:
  explicit ProxiedPostfix(SmtpgateOptions options = {}, PostfixOptions postfix = backendOptions())
      : postfix_(std::move(postfix)) {
    postfix_.start();
    options.binary = SMTPGATE_BINARY;
    options.backend = postfix_.host() + ":" + std::to_string(postfix_.port());
    proxy_ = std::make_unique<SmtpgateProcess>(std::move(options));
    proxy_->start();
  }

  PostfixInstance& postfix() { return postfix_; }
  SmtpgateProcess& proxy() { return *proxy_; }

 private:
  PostfixInstance postfix_;  // declared first: destroyed after the proxy
  std::unique_ptr<SmtpgateProcess> proxy_;
};

SmtpgateOptions withRules(const std::string& rules) {
  SmtpgateOptions options;
  options.rules = rules;
  return options;
}

/// The queue id from Postfix's "250 2.0.0 Ok: queued as 4F1A2B3C4D" (after
/// DATA) or "250 2.0.0 Ok: 291 bytes queued as 4F1A2B3C4D" (after BDAT).
std::string queuedAs(const std::string& text) {
  std::smatch match;
  static const std::regex kQueued("250 2\\.0\\.0 Ok: (?:[0-9]+ bytes )?queued as ([0-9A-Za-z]+)");
  return std::regex_search(text, match, kQueued) ? match[1].str() : std::string();
}

/// Decision-log records (parsed) matching `predicate`, waiting until at least one exists.
std::vector<json> waitForDecisions(const SmtpgateProcess& proxy,
                                   const std::function<bool(const json&)>& predicate) {
  std::vector<json> found;
  waitFor(
      [&] {
        found.clear();
        for (const auto& line : proxy.decisionLines()) {
          json record = json::parse(line);
          if (predicate(record)) {
            found.push_back(record);
          }
        }
        return !found.empty();
      },
      deadlineIn(kTimeout));
  return found;
}

/// Postfix's end-of-session lines for sessions that came through the proxy
/// (those that sent XCLIENT), waiting until there are at least `count`.
/// Postfix 3.7 counts a successful XCLIENT as "xclient=0/1" (it restarts the
/// session rather than completing the command), so any count matches; the
/// capability probe (EHLO, QUIT) sends no XCLIENT and is not matched.
std::vector<std::string> waitForProxiedSessions(const PostfixInstance& postfix, std::size_t count) {
  static const std::regex kProxied(R"(disconnect from \S+ .*\bxclient=)");
  std::vector<std::string> lines;
  waitFor(
      [&] {
        lines = postfix.logLines(kProxied);
        return lines.size() >= count;
      },
      deadlineIn(kTimeout));
  return lines;
}

/// Postfix's end-of-session lines of the sessions that carried mail (the
/// capability probe's carry none), waiting until `done(lines)` holds. The
/// proxy keeps its backend connection for the next client session
/// (backend_idle_connections), so one such line may cover several client
/// sessions; it comes when the proxy lets the connection go, after
/// backend_idle_time (2 s) without a session.
std::vector<std::string> waitForMailSessions(
    const PostfixInstance& postfix,
    const std::function<bool(const std::vector<std::string>&)>& done) {
  static const std::regex kCarriedMail(R"(disconnect from \S+ .*\bmail=)");
  std::vector<std::string> lines;
  waitFor(
      [&] {
        lines = postfix.logLines(kCarriedMail);
        return done(lines);
      },
      deadlineIn(kTimeout));
  return lines;
}

/// The count of `command` in a Postfix "disconnect from" line: "mail=1" -> 1,
/// "rcpt=1/2" -> 2 (tried), absent -> 0.
int commandCount(const std::string& disconnectLine, const std::string& command) {
  std::smatch match;
  std::regex pattern("\\b" + command + "=(\\d+)(?:/(\\d+))?\\b");
  if (!std::regex_search(disconnectLine, match, pattern)) {
    return 0;
  }
  return std::stoi(match[2].matched ? match[2].str() : match[1].str());
}

/// The count of `command` over several "disconnect from" lines.
int totalCount(const std::vector<std::string>& lines, const std::string& command) {
  int total = 0;
  for (const auto& line : lines) {
    total += commandCount(line, command);
  }
  return total;
}

/// Waits until Postfix has seen the MAIL of `count` client sessions and
/// checks that each came over a backend connection of its own, ended by
/// QUIT; returns those sessions' end lines.
std::vector<std::string> checkConnectionPerSession(const PostfixInstance& postfix, int count) {
  auto sessions = waitForMailSessions(
      postfix, [count](const auto& lines) { return totalCount(lines, "mail") >= count; });
  REQUIRE(sessions.size() == static_cast<std::size_t>(count));
  for (const auto& line : sessions) {
    INFO(line);
    CHECK(commandCount(line, "mail") == 1);
    CHECK(commandCount(line, "quit") == 1);
  }
  return sessions;
}

/// Messages Postfix received in a session, by DATA or by BDAT.
int messageTransfers(const std::string& disconnectLine) {
  return commandCount(disconnectLine, "data") + commandCount(disconnectLine, "bdat");
}

/// Postfix without CHUNKING in its EHLO reply: the proxy then hands messages
/// over by DATA, dot-stuffed, instead of BDAT.
PostfixOptions backendWithoutChunking() {
  PostfixOptions options = backendOptions();
  options.mainCf.emplace_back("smtpd_discard_ehlo_keywords", "chunking");
  return options;
}

/// Postfix that hands the client over by XFORWARD only (no XCLIENT for the
/// proxy): the proxy keeps such connections for the next client session.
PostfixOptions backendWithXforwardOnly() {
  PostfixOptions options = backendOptions();
  options.xclientHosts = "";
  return options;
}

SmtpReply expectReply(SmtpClient& client, int code, Deadline deadline) {
  SmtpReply reply = client.readReply(deadline);
  INFO("reply: " << reply.raw);
  CHECK(reply.code == code);
  return reply;
}

/// EHLO, then MAIL/RCPT/DATA and the message; returns the reply to the final dot.
SmtpReply sendMessage(SmtpClient& client, const std::string& sender, const std::string& rcpt,
                      const std::string& data, Deadline deadline) {
  REQUIRE(client.command("MAIL FROM:<" + sender + ">", deadline).code == 250);
  REQUIRE(client.command("RCPT TO:<" + rcpt + ">", deadline).code == 250);
  REQUIRE(client.command("DATA", deadline).code == 354);
  client.send(data);
  return client.readReply(deadline);
}

/// Connects, reads the banner and says EHLO; the EHLO reply.
SmtpReply connectAndGreet(SmtpClient& client, const SmtpgateProcess& proxy, const std::string& helo,
                          Deadline deadline) {
  client.connect(proxy.host(), proxy.port(), deadline);
  REQUIRE(client.readBanner(deadline).code == 220);
  SmtpReply ehlo = client.command("EHLO " + helo, deadline);
  REQUIRE(ehlo.code == 250);
  return ehlo;
}

/// Who refused, per the decision log: exactly one reject at `stage`, by `rule`.
json refusedBy(const SmtpgateProcess& proxy, const std::string& stage, const std::string& rule) {
  auto records = waitForDecisions(proxy, [&](const json& r) {
    return r.value("stage", "") == stage && r.value("action", "") == "reject";
  });
  REQUIRE(records.size() == 1);
  CHECK(records[0].value("rule", "") == rule);
  return records[0];
}

/// One message by swaks from `localIp` (a loopback address of its own, so
/// Postfix can only learn it from the proxy); Postfix's queue id, or "".
std::string queuedFrom(const SmtpgateProcess& proxy, const std::string& localIp,
                       const std::string& helo) {
  SwaksResult run = swaks({"--server", proxy.server(), "--local-interface", localIp, "--helo", helo,
                           "--from", "sender@example.org", "--to", "user@example.com"});
  INFO(run.transcript);
  CHECK(run.exitCode == 0);
  return queuedAs(run.transcript);
}

/// A minimal TLS-capable SMTP client over a blocking socket, for the one
/// test that must send plaintext after STARTTLS and then really do TLS.
class TlsSmtpClient {
 public:
  TlsSmtpClient() : ctx_(SSL_CTX_new(TLS_client_method())) {}
  ~TlsSmtpClient() {
    if (ssl_ != nullptr) {
      SSL_free(ssl_);
    }
    SSL_CTX_free(ctx_);
  }
  TlsSmtpClient(const TlsSmtpClient&) = delete;
  TlsSmtpClient& operator=(const TlsSmtpClient&) = delete;

  /// Connects with SmtpClient (for its deadline handling), then takes the socket over.
  void connect(const std::string& host, std::uint16_t port) {
    plain_.connect(host, port, deadlineIn(kTimeout));
  }
  SmtpClient& plain() { return plain_; }

  /// Handshake on the plain client's socket; bytes the plain client already
  /// buffered would be lost, so there must be none.
  bool startTls(int fd) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    timeval tv{static_cast<time_t>(kTimeout.count()), 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd);
    return SSL_connect(ssl_) == 1;
  }

  void send(const std::string& bytes) {
    REQUIRE(SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size())) ==
            static_cast<int>(bytes.size()));
  }

  /// The next complete reply read through TLS: code and raw text.
  SmtpReply readReply() {
    for (;;) {
      std::size_t start = 0;
      for (std::size_t eol; (eol = buffer_.find("\r\n", start)) != std::string::npos;
           start = eol + 2) {
        std::string line = buffer_.substr(start, eol - start);
        if (line.size() >= 4 && line[3] == ' ') {
          SmtpReply reply;
          reply.code = std::stoi(line.substr(0, 3));
          reply.raw = buffer_.substr(0, eol + 2);
          buffer_.erase(0, eol + 2);
          return reply;
        }
      }
      char buf[4096];
      int n = SSL_read(ssl_, buf, sizeof buf);
      if (n <= 0) {
        FAIL("TLS read failed or timed out; received so far: \"" << buffer_ << "\"");
      }
      buffer_.append(buf, static_cast<std::size_t>(n));
    }
  }

 private:
  SmtpClient plain_;
  SSL_CTX* ctx_;
  SSL* ssl_ = nullptr;
  std::string buffer_;
};

}  // namespace

TEST_CASE("proxy: a clean message reaches Postfix and the client hears its queue id", "[proxy]") {
  SKIP_WITHOUT_POSTFIX();
  ProxiedPostfix gate;

  SwaksResult run = swaks({"--server", gate.proxy().server(), "--helo", "client.test", "--from",
                           "sender@example.org", "--to", "user@example.com", "--header",
                           "Subject: clean through the proxy"});
  INFO(run.transcript);
  REQUIRE(run.exitCode == 0);
  // The 250 after the message is Postfix's own, queue id and all.
  const std::string queueId = queuedAs(run.transcript);
  REQUIRE_FALSE(queueId.empty());

  REQUIRE(gate.postfix().sink().waitForMessages(1, deadlineIn(kTimeout)));
  auto messages = gate.postfix().sink().messages();
  REQUIRE(messages.size() == 1);
  CHECK(messages[0].sender == "sender@example.org");
  CHECK(messages[0].recipients == std::vector<std::string>{"user@example.com"});
  CHECK_THAT(messages[0].data, Catch::Contains("Subject: clean through the proxy\n"));
  CHECK_THAT(messages[0].data, Catch::Contains("with ESMTP id " + queueId));
  CHECK(gate.postfix().waitForLog(std::regex(queueId + ": to=<user@example\\.com>.* status=sent"),
                                  deadlineIn(kTimeout)));
  // Postfix offers CHUNKING, so the message went as one BDAT: no DATA and
  // its 354 round trip.
  auto sessions = waitForProxiedSessions(gate.postfix(), 1);
  REQUIRE(sessions.size() == 1);
  INFO(sessions[0]);
  CHECK(commandCount(sessions[0], "bdat") == 1);
  CHECK(commandCount(sessions[0], "data") == 0);

  // The decision log ties the delivery to Postfix's queue id.
  auto delivered = waitForDecisions(
      gate.proxy(), [](const json& r) { return r.value("action", "") == "deliver"; });
  REQUIRE(delivered.size() == 1);
  CHECK(delivered[0].value("queue_id", "") == queueId);
  CHECK(delivered[0].value("sender", "") == "sender@example.org");
}

TEST_CASE("proxy: a rule refusal at connect gives the configured reply and never reaches Postfix",
          "[proxy][refusal]") {
  SKIP_WITHOUT_POSTFIX();
  ProxiedPostfix gate(withRules(kStageRules));
  PostfixInstance& postfix = gate.postfix();
  SmtpgateProcess& proxy = gate.proxy();
  auto deadline = deadlineIn(kTimeout);
  // The backend connection is opened at the first MAIL, so a client refused
  // at connect must never cause an smtpd session; a clean session after it
  // proves Postfix's log is current when it is read.
  SwaksResult refused = swaks(
      {"--server", proxy.server(), "--local-interface", "127.0.0.3", "--to", "user@example.com"});
  INFO(refused.transcript);
  CHECK(refused.exitCode != 0);
  CHECK_THAT(refused.transcript, Catch::Contains("<** 554 5.7.1 127.0.0.3 is not welcome here"));
  CHECK(refusedBy(proxy, "connect", "conn-block").value("client_ip", "") == "127.0.0.3");

  SwaksResult clean = swaks({"--server", proxy.server(), "--to", "user@example.com"});
  INFO(clean.transcript);
  REQUIRE(clean.exitCode == 0);
  auto sessions = waitForProxiedSessions(postfix, 1);
  REQUIRE(sessions.size() == 1);
  CHECK(postfix.logLines(std::regex("127\\.0\\.0\\.3")).empty());
  CHECK(postfix.sink().waitForMessages(1, deadline));
}

TEST_CASE("proxy: a rule refusal at helo gives the configured reply and never reaches Postfix",
          "[proxy][refusal]") {
  SKIP_WITHOUT_POSTFIX();
  ProxiedPostfix gate(withRules(kStageRules));
  PostfixInstance& postfix = gate.postfix();
  SmtpgateProcess& proxy = gate.proxy();
  auto deadline = deadlineIn(kTimeout);
  SmtpClient client;
  client.connect(proxy.host(), proxy.port(), deadline);
  REQUIRE(client.readBanner(deadline).code == 220);
  SmtpReply helo = client.command("EHLO refused.helo.test", deadline);
  CHECK(helo.raw == "550 5.7.1 That HELO name is refused\r\n");
  refusedBy(proxy, "helo", "bad-helo");
  // The refused name is not the session's: MAIL still needs a HELO.
  CHECK(client.command("MAIL FROM:<sender@example.org>", deadline).code == 503);
  REQUIRE(client.command("EHLO good.helo.test", deadline).code == 250);
  CHECK(sendMessage(client, "sender@example.org", "user@example.com",
                    "Subject: after a refused HELO\r\n\r\nhi\r\n.\r\n", deadline)
            .code == 250);
  CHECK(client.command("QUIT", deadline).code == 221);

  auto sessions = waitForProxiedSessions(postfix, 1);
  REQUIRE(sessions.size() == 1);
  CHECK(postfix.logLines(std::regex("refused\\.helo\\.test")).empty());
  REQUIRE(postfix.sink().waitForMessages(1, deadline));
  CHECK_THAT(postfix.sink().messages()[0].data, Catch::Contains("from good.helo.test ("));
}

TEST_CASE("proxy: a rule refusal at mail gives the configured reply and never reaches Postfix",
          "[proxy][refusal]") {
  SKIP_WITHOUT_POSTFIX();
  ProxiedPostfix gate(withRules(kStageRules));
  PostfixInstance& postfix = gate.postfix();
  SmtpgateProcess& proxy = gate.proxy();
  auto deadline = deadlineIn(kTimeout);
  SmtpClient client;
  connectAndGreet(client, proxy, "client.test", deadline);
  SmtpReply mail = client.command("MAIL FROM:<blocked@spam.test>", deadline);
  CHECK(mail.raw == "550 5.7.1 Sender <blocked@spam.test> refused\r\n");
  refusedBy(proxy, "mail", "bad-sender");
  CHECK(sendMessage(client, "sender@example.org", "user@example.com",
                    "Subject: after a refused MAIL\r\n\r\nhi\r\n.\r\n", deadline)
            .code == 250);
  CHECK(client.command("QUIT", deadline).code == 221);

  auto sessions = waitForProxiedSessions(postfix, 1);
  REQUIRE(sessions.size() == 1);
  INFO(sessions[0]);
  CHECK(commandCount(sessions[0], "mail") == 1);  // only the clean MAIL
  CHECK(postfix.logLines(std::regex("blocked@spam\\.test")).empty());
}

TEST_CASE("proxy: a rule refusal at rcpt gives the configured reply and never reaches Postfix",
          "[proxy][refusal]") {
  SKIP_WITHOUT_POSTFIX();
  ProxiedPostfix gate(withRules(kStageRules));
  PostfixInstance& postfix = gate.postfix();
  SmtpgateProcess& proxy = gate.proxy();
  auto deadline = deadlineIn(kTimeout);
  SmtpClient client;
  connectAndGreet(client, proxy, "client.test", deadline);
  REQUIRE(client.command("MAIL FROM:<sender@example.org>", deadline).code == 250);
  SmtpReply rcpt = client.command("RCPT TO:<refused@example.com>", deadline);
  CHECK(rcpt.raw == "550 5.7.1 <refused@example.com>: refused by rule\r\n");
  refusedBy(proxy, "rcpt", "bad-rcpt");
  REQUIRE(client.command("RCPT TO:<user@example.com>", deadline).code == 250);
  REQUIRE(client.command("DATA", deadline).code == 354);
  client.send("Subject: one refused recipient\r\n\r\nhi\r\n.\r\n");
  CHECK(client.readReply(deadline).code == 250);
  CHECK(client.command("QUIT", deadline).code == 221);

  auto sessions = waitForProxiedSessions(postfix, 1);
  REQUIRE(sessions.size() == 1);
  INFO(sessions[0]);
  CHECK(commandCount(sessions[0], "rcpt") == 1);  // only user@example.com
  CHECK(postfix.logLines(std::regex("refused@example\\.com")).empty());
  REQUIRE(postfix.sink().waitForMessages(1, deadline));
  CHECK(postfix.sink().messages()[0].recipients == std::vector<std::string>{"user@example.com"});
}

TEST_CASE("proxy: a rule refusal at data gives the configured reply and never reaches Postfix",
          "[proxy][refusal]") {
  SKIP_WITHOUT_POSTFIX();
  ProxiedPostfix gate(withRules(kStageRules));
  PostfixInstance& postfix = gate.postfix();
  SmtpgateProcess& proxy = gate.proxy();
  auto deadline = deadlineIn(kTimeout);
  SmtpClient client;
  connectAndGreet(client, proxy, "client.test", deadline);
  SmtpReply refused = sendMessage(client, "sender@example.org", "user@example.com",
                                  "Subject: please REFUSE-ME\r\n\r\nspam\r\n.\r\n", deadline);
  CHECK(refused.raw == "550 5.7.1 Message refused by rule bad-subject\r\n");
  refusedBy(proxy, "data", "bad-subject");
  CHECK(sendMessage(client, "sender@example.org", "user@example.com",
                    "Subject: a clean one\r\n\r\nham\r\n.\r\n", deadline)
            .code == 250);
  CHECK(client.command("QUIT", deadline).code == 221);

  auto sessions = waitForProxiedSessions(postfix, 1);
  REQUIRE(sessions.size() == 1);
  INFO(sessions[0]);
  // Postfix saw both MAILs but the message (by BDAT) only for the clean one.
  CHECK(commandCount(sessions[0], "mail") == 2);
  CHECK(messageTransfers(sessions[0]) == 1);
  REQUIRE(postfix.sink().waitForMessages(1, deadline));
  auto messages = postfix.sink().messages();
  REQUIRE(messages.size() == 1);
  CHECK_THAT(messages[0].data, Catch::Contains("Subject: a clean one"));
}

TEST_CASE("proxy: Postfix's own refusal of an unknown recipient is relayed", "[proxy]") {
  SKIP_WITHOUT_POSTFIX();
  ProxiedPostfix gate;

  SwaksResult run = swaks({"--server", gate.proxy().server(), "--from", "sender@example.org",
                           "--to", "unknown@example.com"});
  INFO(run.transcript);
  CHECK(run.exitCode != 0);
  CHECK_THAT(run.transcript,
             Catch::Contains("<** 550 5.1.1 <unknown@example.com>: Recipient address rejected: "
                             "User unknown in relay recipient table"));
  // Postfix refused it (not a rule), for the client XCLIENT named.
  CHECK(gate.postfix().waitForLog(
      std::regex(
          R"(NOQUEUE: reject: RCPT from \S+\[127\.0\.0\.1\]: 550 5\.1\.1 <unknown@example\.com>)"),
      deadlineIn(kTimeout)));
  CHECK(gate.proxy().decisionLines().empty());  // no rule decided anything
  CHECK(gate.postfix().sink().messageCount() == 0);
}

namespace {

/// Postfix refuses the message itself for one sender (smtpd_data_restrictions,
/// answered to DATA or to the first BDAT) and keeps the envelope: the proxy
/// must reset the backend before the client's next MAIL.
void checkBackendRefusalThenCleanTransaction(PostfixOptions postfixOptions) {
  postfixOptions.mainCf.emplace_back("smtpd_data_restrictions",
                                     "check_sender_access inline:{{nodata@example.org=REJECT}}");
  ProxiedPostfix gate({}, postfixOptions);
  auto deadline = deadlineIn(kTimeout);

  SmtpClient client;
  connectAndGreet(client, gate.proxy(), "client.test", deadline);
  REQUIRE(client.command("MAIL FROM:<nodata@example.org>", deadline).code == 250);
  REQUIRE(client.command("RCPT TO:<user@example.com>", deadline).code == 250);
  // The proxy answers 354 itself and gives Postfix the message only with all
  // of it in hand, so Postfix's refusal answers the final dot.
  REQUIRE(client.command("DATA", deadline).code == 354);
  client.send("Subject: refused by Postfix\r\n\r\nhi\r\n.\r\n");
  SmtpReply refused = client.readReply(deadline);
  CHECK(refused.code == 554);
  CHECK_THAT(refused.text(), Catch::Contains("<nodata@example.org>: Sender address rejected"));
  // No RSET from the client: the refusal ended the transaction for the
  // proxy, so it must have ended it at the backend too.
  SmtpReply mail = client.command("MAIL FROM:<sender@example.org>", deadline);
  INFO(mail.raw);
  CHECK(mail.code == 250);
  REQUIRE(client.command("RCPT TO:<user@example.com>", deadline).code == 250);
  REQUIRE(client.command("DATA", deadline).code == 354);
  client.send("Subject: after a refused message\r\n\r\nhi\r\n.\r\n");
  CHECK_FALSE(queuedAs(client.readReply(deadline).raw).empty());
  CHECK(client.command("QUIT", deadline).code == 221);

  REQUIRE(gate.postfix().sink().waitForMessages(1, deadline));
  CHECK(gate.postfix().sink().messages()[0].sender == "sender@example.org");
}

}  // namespace

TEST_CASE("proxy: after Postfix refuses the message (BDAT), the next transaction starts clean",
          "[proxy]") {
  SKIP_WITHOUT_POSTFIX();
  checkBackendRefusalThenCleanTransaction(backendOptions());
}

TEST_CASE("proxy: after Postfix refuses DATA, the next transaction starts clean", "[proxy]") {
  SKIP_WITHOUT_POSTFIX();
  checkBackendRefusalThenCleanTransaction(backendWithoutChunking());
}

TEST_CASE("proxy: Postfix logs the original client address it got by XCLIENT", "[proxy]") {
  SKIP_WITHOUT_POSTFIX();
  ProxiedPostfix gate;

  // The client connects from 127.0.0.2; the proxy itself reaches Postfix
  // from 127.0.0.1, so 127.0.0.2 can only reach Postfix through XCLIENT.
  SwaksResult run =
      swaks({"--server", gate.proxy().server(), "--local-interface", "127.0.0.2", "--helo",
             "original.client.test", "--from", "sender@example.org", "--to", "user@example.com"});
  INFO(run.transcript);
  REQUIRE(run.exitCode == 0);
  const std::string queueId = queuedAs(run.transcript);
  REQUIRE_FALSE(queueId.empty());

  auto client = gate.postfix().waitForLog(std::regex(queueId + R"(: client=\S*\[127\.0\.0\.2\])"),
                                          deadlineIn(kTimeout));
  CHECK(client.has_value());
  CHECK_FALSE(gate.postfix().logLines(std::regex(R"(connect from \S*\[127\.0\.0\.1\])")).empty());
  // The proxy knew Postfix's XCLIENT offer from its start-up probe: XCLIENT
  // right after the banner, then one EHLO, the client's.
  auto sessions = waitForProxiedSessions(gate.postfix(), 1);
  REQUIRE(sessions.size() == 1);
  INFO(sessions[0]);
  CHECK(commandCount(sessions[0], "ehlo") == 1);
  CHECK(commandCount(sessions[0], "mail") == 1);
  REQUIRE(gate.postfix().sink().waitForMessages(1, deadlineIn(kTimeout)));
  // Postfix's Received header names the original client and its HELO.
  CHECK_THAT(
      gate.postfix().sink().messages()[0].data,
      Catch::Contains("from original.client.test (") &&
          Catch::Contains("[127.0.0.2])\n\tby backend.test (Postfix) with ESMTP id " + queueId));
}

TEST_CASE("proxy: when Postfix stops trusting the proxy with XCLIENT, mail goes on by XFORWARD",
          "[proxy]") {
  SKIP_WITHOUT_POSTFIX();
  ProxiedPostfix gate;
  auto send = [&gate] {
    SwaksResult run = swaks({"--server", gate.proxy().server(), "--local-interface", "127.0.0.2",
                             "--from", "sender@example.org", "--to", "user@example.com"});
    INFO(run.transcript);
    CHECK(run.exitCode == 0);
    return queuedAs(run.transcript);
  };
  // The proxy learnt Postfix's XCLIENT offer from its start-up probe and now
  // sends XCLIENT straight after the banner.
  const std::string first = send();
  REQUIRE_FALSE(first.empty());
  CHECK(gate.postfix().waitForLog(std::regex(first + R"(: client=\S*\[127\.0\.0\.2\])"),
                                  deadlineIn(kTimeout)));
  // The proxy keeps that connection for 2 s; the smtpd behind it would go on
  // with the configuration it started with.
  REQUIRE(waitForProxiedSessions(gate.postfix(), 1).size() == 1);

  // The admin withdraws XCLIENT; the proxy still believes it is offered.
  for (const std::vector<std::string>& command :
       {std::vector<std::string>{"postconf", "-e", "smtpd_authorized_xclient_hosts ="},
        std::vector<std::string>{"postfix", "reload"}}) {
    CommandResult result = gate.postfix().postfixCommand(command);
    INFO(result.output);
    REQUIRE(result.exitCode == 0);
  }
  REQUIRE(gate.postfix().waitForLog(std::regex("reload -- version"), deadlineIn(kTimeout)));

  // The refused XCLIENT costs nothing but a round trip: the proxy says EHLO,
  // sees no XCLIENT and hands the client over with XFORWARD, which Postfix
  // counts in the session's disconnect line and logs as orig_client. XFORWARD
  // goes out pipelined with MAIL; this Postfix disconnects clients that
  // pipeline where RFC 2920 forbids it, so delivery proves that is allowed.
  const std::string second = send();
  REQUIRE_FALSE(second.empty());
  auto sessions = waitForProxiedSessions(gate.postfix(), 2);
  REQUIRE(sessions.size() == 2);
  INFO(sessions[1]);
  CHECK(sessions[1].find(" xforward=1") != std::string::npos);
  CHECK(gate.postfix().waitForLog(
      std::regex(second + R"(: client=.*orig_client=\S*\[127\.0\.0\.2\])"), deadlineIn(kTimeout)));
  REQUIRE(gate.postfix().sink().waitForMessages(2, deadlineIn(kTimeout)));
}

TEST_CASE("proxy: by XFORWARD, consecutive sessions share a backend connection, each named",
          "[proxy][reuse]") {
  SKIP_WITHOUT_POSTFIX();
  ProxiedPostfix gate({}, backendWithXforwardOnly());
  auto deadline = deadlineIn(kTimeout);

  // Two messages in one session: Postfix forgets XFORWARD attributes at the
  // end of each transaction, so the second needs its own.
  SmtpClient client;
  connectAndGreet(client, gate.proxy(), "client.test", deadline);
  std::vector<std::string> queued;
  for (int i = 0; i < 2; ++i) {
    SmtpReply end = sendMessage(client, "sender@example.org", "user@example.com",
                                "Subject: " + std::to_string(i) + "\r\n\r\nhi\r\n.\r\n", deadline);
    INFO(end.raw);
    queued.push_back(queuedAs(end.raw));
    REQUIRE_FALSE(queued.back().empty());
  }
  CHECK(client.command("QUIT", deadline).code == 221);
  // The next client, within the 2 s a kept connection waits.
  const std::string third = queuedFrom(gate.proxy(), "127.0.0.3", "third.client.test");
  REQUIRE_FALSE(third.empty());

  for (const std::string& id : queued) {
    CHECK(gate.postfix().waitForLog(
        std::regex(id + R"(: client=.*orig_client=\S*\[127\.0\.0\.1\])"), deadline));
  }
  CHECK(gate.postfix().waitForLog(
      std::regex(third + R"(: client=.*orig_client=\S*\[127\.0\.0\.3\])"), deadline));
  // One backend connection for both sessions, said QUIT to after 2 s unused.
  auto sessions = waitForMailSessions(
      gate.postfix(), [](const auto& lines) { return totalCount(lines, "mail") >= 3; });
  REQUIRE(sessions.size() == 1);
  INFO(sessions[0]);
  CHECK(commandCount(sessions[0], "ehlo") == 1);
  CHECK(commandCount(sessions[0], "xforward") == 3);
  CHECK(commandCount(sessions[0], "mail") == 3);
  CHECK(commandCount(sessions[0], "quit") == 1);
}

TEST_CASE("proxy: at SIGTERM a kept backend connection gets its QUIT", "[proxy][reuse]") {
  SKIP_WITHOUT_POSTFIX();
  SmtpgateOptions options;
  options.proxy = {{"backend_idle_time", "\"60s\""}};  // only the shutdown ends it
  ProxiedPostfix gate(options, backendWithXforwardOnly());
  REQUIRE_FALSE(queuedFrom(gate.proxy(), "127.0.0.2", "client.test").empty());
  gate.proxy().terminate();
  auto exitCode = gate.proxy().waitForExit(deadlineIn(kTimeout));
  REQUIRE(exitCode.has_value());
  CHECK(*exitCode == 0);
  auto sessions =
      waitForMailSessions(gate.postfix(), [](const auto& lines) { return !lines.empty(); });
  REQUIRE(sessions.size() == 1);
  INFO(sessions[0]);
  CHECK(commandCount(sessions[0], "quit") == 1);
  CHECK(gate.postfix().logLines(std::regex("lost connection")).empty());
}

TEST_CASE("proxy: a backend connection that carried a refusal is not kept", "[proxy][reuse]") {
  // Postfix counts errors per connection (smtpd_soft_error_limit delays,
  // smtpd_hard_error_limit disconnects): one client's must not reach the next.
  SKIP_WITHOUT_POSTFIX();
  ProxiedPostfix gate({}, backendWithXforwardOnly());
  auto deadline = deadlineIn(kTimeout);
  SmtpClient client;
  connectAndGreet(client, gate.proxy(), "client.test", deadline);
  REQUIRE(client.command("MAIL FROM:<sender@example.org>", deadline).code == 250);
  CHECK(client.command("RCPT TO:<nobody@example.com>", deadline).code == 550);  // Postfix's
  REQUIRE(client.command("RCPT TO:<user@example.com>", deadline).code == 250);
  REQUIRE(client.command("DATA", deadline).code == 354);
  client.send("Subject: one unknown recipient\r\n\r\nhi\r\n.\r\n");
  CHECK(client.readReply(deadline).code == 250);
  CHECK(client.command("QUIT", deadline).code == 221);
  REQUIRE_FALSE(queuedFrom(gate.proxy(), "127.0.0.3", "next.client.test").empty());

  checkConnectionPerSession(gate.postfix(), 2);
}

TEST_CASE("proxy: a backend connection is not kept after 50 RSETs", "[proxy][reuse]") {
  // Postfix counts each RSET past smtpd_junk_command_limit (100) as an error.
  SKIP_WITHOUT_POSTFIX();
  ProxiedPostfix gate(withRules(kStageRules), backendWithXforwardOnly());
  auto deadline = deadlineIn(kTimeout);
  SmtpClient client;
  connectAndGreet(client, gate.proxy(), "client.test", deadline);
  for (int i = 0; i < 50; ++i) {  // each refused by our rule, then RSET at the backend
    CHECK(sendMessage(client, "sender@example.org", "user@example.com",
                      "Subject: REFUSE-ME\r\n\r\nspam\r\n.\r\n", deadline)
              .code == 550);
  }
  CHECK(client.command("QUIT", deadline).code == 221);
  REQUIRE_FALSE(queuedFrom(gate.proxy(), "127.0.0.4", "next.client.test").empty());

  auto sessions = waitForMailSessions(
      gate.postfix(), [](const auto& lines) { return totalCount(lines, "mail") >= 51; });
  REQUIRE(sessions.size() == 2);
  INFO(sessions[0] << "\n" << sessions[1]);
  CHECK(commandCount(sessions[0], "rset") == 50);
  CHECK(commandCount(sessions[0], "quit") == 1);
  CHECK(commandCount(sessions[1], "mail") == 1);
}

TEST_CASE("proxy: by XCLIENT, every session has a backend connection of its own",
          "[proxy][reuse]") {
  // Postfix refuses XCLIENT after XCLIENT (it checks the client named), so a
  // connection that carries one client can never carry the next.
  SKIP_WITHOUT_POSTFIX();
  ProxiedPostfix gate;
  const std::string first = queuedFrom(gate.proxy(), "127.0.0.2", "first.client.test");
  const std::string second = queuedFrom(gate.proxy(), "127.0.0.3", "second.client.test");
  REQUIRE_FALSE(first.empty());
  REQUIRE_FALSE(second.empty());
  CHECK(gate.postfix().waitForLog(std::regex(first + R"(: client=\S*\[127\.0\.0\.2\])"),
                                  deadlineIn(kTimeout)));
  CHECK(gate.postfix().waitForLog(std::regex(second + R"(: client=\S*\[127\.0\.0\.3\])"),
                                  deadlineIn(kTimeout)));
  for (const auto& line : checkConnectionPerSession(gate.postfix(), 2)) {
    INFO(line);
    CHECK(commandCount(line, "xclient") == 1);  // never refused
  }
}

TEST_CASE("proxy: no backend connection is kept when reuse is off or the connection too old",
          "[proxy][reuse]") {
  SKIP_WITHOUT_POSTFIX();
  SmtpgateOptions options;
  SECTION("backend_idle_connections = 0") {
    options.proxy = {{"backend_idle_connections", "0"}};
  }
  SECTION("backend_reuse_time = 1ms") {
    options.proxy = {{"backend_reuse_time", "\"1ms\""}};
  }
  ProxiedPostfix gate(options, backendWithXforwardOnly());
  REQUIRE_FALSE(queuedFrom(gate.proxy(), "127.0.0.2", "first.client.test").empty());
  REQUIRE_FALSE(queuedFrom(gate.proxy(), "127.0.0.3", "second.client.test").empty());
  checkConnectionPerSession(gate.postfix(), 2);
}

TEST_CASE("proxy: a kept connection the backend timed out is not used", "[proxy][reuse]") {
  SKIP_WITHOUT_POSTFIX();
  PostfixOptions backend = backendWithXforwardOnly();
  backend.mainCf.emplace_back("smtpd_timeout", "2s");
  SmtpgateOptions options;
  options.proxy = {{"backend_idle_time", "\"60s\""}};  // longer than Postfix waits
  ProxiedPostfix gate(options, backend);
  REQUIRE_FALSE(queuedFrom(gate.proxy(), "127.0.0.2", "first.client.test").empty());
  // Postfix gives up on the idle connection ("421 4.4.2 ... timeout
  // exceeded") and closes it; the proxy still holds its end.
  REQUIRE(gate.postfix().waitForLog(std::regex(R"(timeout after \S+ from)"), deadlineIn(kTimeout)));
  REQUIRE(waitForMailSessions(gate.postfix(), [](const auto& lines) {
            return !lines.empty();
          }).size() == 1);

  // The proxy sees that before it would reuse the connection, and opens a new one.
  const std::string second = queuedFrom(gate.proxy(), "127.0.0.3", "second.client.test");
  REQUIRE_FALSE(second.empty());
  CHECK(gate.postfix().waitForLog(
      std::regex(second + R"(: client=.*orig_client=\S*\[127\.0\.0\.3\])"), deadlineIn(kTimeout)));
}

TEST_CASE(
    "proxy: SIGTERM lets open sessions finish, refuses new ones and cuts the rest at the grace",
    "[proxy][shutdown]") {
  SKIP_WITHOUT_POSTFIX();
  SmtpgateOptions options;
  options.proxy = {{"shutdown_grace", "\"3s\""}};
  ProxiedPostfix gate(options);
  SmtpgateProcess& proxy = gate.proxy();
  auto deadline = deadlineIn(kTimeout);
  SmtpClient finishing;
  connectAndGreet(finishing, proxy, "finishing.client.test", deadline);
  REQUIRE(finishing.command("MAIL FROM:<sender@example.org>", deadline).code == 250);
  SmtpClient lingering;  // says nothing more: still open when the grace ends
  connectAndGreet(lingering, proxy, "lingering.client.test", deadline);

  proxy.terminate();
  REQUIRE(
      waitFor([&] { return proxy.log().find("stopping, 2 session(s) open") != std::string::npos; },
              deadline));
  SmtpClient late;
  CHECK_THROWS(late.connect(proxy.host(), proxy.port(), deadlineIn(2s)));

  // The session in a transaction still delivers, through the backend.
  REQUIRE(finishing.command("RCPT TO:<user@example.com>", deadline).code == 250);
  REQUIRE(finishing.command("DATA", deadline).code == 354);
  finishing.send("Subject: during shutdown\r\n\r\nhi\r\n.\r\n");
  CHECK(finishing.readReply(deadline).code == 250);
  CHECK(finishing.command("QUIT", deadline).code == 221);

  // The silent one is cut when the grace is over, and the proxy exits cleanly.
  CHECK(lingering.waitForClose(deadlineIn(10s)));
  auto exitCode = proxy.waitForExit(deadlineIn(10s));
  REQUIRE(exitCode.has_value());
  CHECK(*exitCode == 0);
  REQUIRE(gate.postfix().sink().waitForMessages(1, deadline));
  CHECK_THAT(gate.postfix().sink().messages()[0].data, Catch::Contains("Subject: during shutdown"));
}

TEST_CASE("proxy: STARTTLS with a test certificate, then delivery", "[proxy]") {
  SKIP_WITHOUT_POSTFIX();
  SmtpgateOptions options;
  options.tls = true;
  ProxiedPostfix gate(options);

  SwaksResult run =
      swaks({"--server", gate.proxy().server(), "--tls", "--helo", "tls.client.test", "--from",
             "sender@example.org", "--to", "user@example.com", "--header", "Subject: over TLS"});
  INFO(run.transcript);
  REQUIRE(run.exitCode == 0);
  CHECK_THAT(run.transcript, Catch::Contains("STARTTLS"));
  CHECK_THAT(run.transcript, Catch::Contains("TLS started"));
  CHECK_THAT(run.transcript,
             Catch::Contains("TLS peer DN=\"/CN=proxy.test\""));  // our test certificate
  CHECK_FALSE(queuedAs(run.transcript).empty());

  REQUIRE(gate.postfix().sink().waitForMessages(1, deadlineIn(kTimeout)));
  // XCLIENT cannot say "TLS": the proxy's own trace header does.
  CHECK_THAT(gate.postfix().sink().messages()[0].data,
             Catch::Contains("by proxy.test (smtpgate) with ESMTPS (TLSv1."));
}

namespace {

/// A Postfix that offers STARTTLS with a self-signed certificate for
/// "localhost" (written into `dir`), and logs its TLS sessions.
PostfixOptions backendWithTls(const TempDir& dir) {
  makeTestCertificate(dir.file("backend-cert.pem"), dir.file("backend-key.pem"), "localhost");
  PostfixOptions options = backendOptions();
  options.mainCf.emplace_back("smtpd_tls_cert_file", dir.file("backend-cert.pem"));
  options.mainCf.emplace_back("smtpd_tls_key_file", dir.file("backend-key.pem"));
  options.mainCf.emplace_back("smtpd_tls_security_level", "may");
  options.mainCf.emplace_back("smtpd_tls_loglevel", "1");
  return options;
}

/// smtpgate in front of `postfix` at `host`, with backend_tls = `level`
/// (and `extra` [proxy] settings).
SmtpgateOptions withBackendTls(const PostfixInstance& postfix, const std::string& host,
                               const std::string& level,
                               std::vector<std::pair<std::string, std::string>> extra = {}) {
  SmtpgateOptions options;
  options.binary = SMTPGATE_BINARY;
  options.backend = host + ":" + std::to_string(postfix.port());
  options.proxy = std::move(extra);
  options.proxy.emplace_back("backend_tls", "\"" + level + "\"");
  return options;
}

/// One message by swaks through `proxy`; its transcript (exit code checked by the caller).
SwaksResult sendThrough(const SmtpgateProcess& proxy) {
  return swaks({"--server", proxy.server(), "--from", "sender@example.org", "--to",
                "user@example.com", "--header", "Subject: to the backend over TLS?"});
}

/// Starts `proxy` and checks that one message through it is accepted with
/// the backend's queue id.
void checkDeliveredThrough(SmtpgateProcess& proxy) {
  proxy.start();
  SwaksResult run = sendThrough(proxy);
  INFO(run.transcript);
  REQUIRE(run.exitCode == 0);
  CHECK_FALSE(queuedAs(run.transcript).empty());
}

}  // namespace

TEST_CASE("proxy: backend_tls encrypts the connection to Postfix before XCLIENT",
          "[proxy][backend-tls]") {
  SKIP_WITHOUT_POSTFIX();
  TempDir certs("smtpgate-backend-tls", 0755);
  PostfixInstance postfix(backendWithTls(certs));
  postfix.start();
  SECTION("encrypt: no certificate check") {
    SmtpgateProcess proxy(withBackendTls(postfix, "127.0.0.1", "encrypt"));
    checkDeliveredThrough(proxy);
  }
  SECTION("verify: the certificate chains to the configured CA and names the host") {
    SmtpgateProcess proxy(
        withBackendTls(postfix, "localhost", "verify",
                       {{"backend_tls_ca_file", "\"" + certs.file("backend-cert.pem") + "\""}}));
    checkDeliveredThrough(proxy);
  }
  // Postfix logs the TLS sessions (the start-up probe's among them), and
  // stamps the message it received over one "with ESMTPS".
  REQUIRE(postfix.waitForLog(std::regex(R"(TLS connection established from \S+: TLSv1\.[23])"),
                             deadlineIn(kTimeout)));
  REQUIRE(postfix.sink().waitForMessages(1, deadlineIn(kTimeout)));
  CHECK_THAT(postfix.sink().messages()[0].data, Catch::Contains("with ESMTPS id"));
}

TEST_CASE("proxy: backend_tls refuses a backend it cannot trust, with 4xx and never 250",
          "[proxy][backend-tls]") {
  SKIP_WITHOUT_POSTFIX();
  TempDir certs("smtpgate-backend-tls", 0755);
  std::string why;
  std::unique_ptr<PostfixInstance> postfix;
  std::unique_ptr<SmtpgateProcess> proxy;
  SECTION("verify: the certificate names localhost, the backend is 127.0.0.1") {
    postfix = std::make_unique<PostfixInstance>(backendWithTls(certs));
    postfix->start();
    proxy = std::make_unique<SmtpgateProcess>(
        withBackendTls(*postfix, "127.0.0.1", "verify",
                       {{"backend_tls_ca_file", "\"" + certs.file("backend-cert.pem") + "\""}}));
    why = "certificate verify failed";
  }
  SECTION("verify: the certificate is not signed by a trusted CA (the system's)") {
    postfix = std::make_unique<PostfixInstance>(backendWithTls(certs));
    postfix->start();
    proxy = std::make_unique<SmtpgateProcess>(withBackendTls(*postfix, "localhost", "verify"));
    why = "certificate verify failed";
  }
  SECTION("encrypt: the backend offers no STARTTLS") {
    postfix = std::make_unique<PostfixInstance>(backendOptions());
    postfix->start();
    proxy = std::make_unique<SmtpgateProcess>(withBackendTls(*postfix, "127.0.0.1", "encrypt"));
    why = "backend offers no STARTTLS";
  }
  proxy->start();
  SwaksResult run = sendThrough(*proxy);
  INFO(run.transcript);
  CHECK(run.exitCode != 0);
  CHECK_THAT(run.transcript, Catch::Contains("<** 451 4.4.1"));
  CHECK(queuedAs(run.transcript).empty());
  CHECK(waitFor([&] { return proxy->log().find(why) != std::string::npos; }, deadlineIn(kTimeout)));
  CHECK(postfix->logLines(std::regex(R"(\bmail=)")).empty());
}

TEST_CASE("proxy: backend_tls = may delivers in plaintext where TLS is not to be had",
          "[proxy][backend-tls]") {
  SKIP_WITHOUT_POSTFIX();
  TempDir certs("smtpgate-backend-tls", 0755);
  PostfixOptions options = backendOptions();
  bool handshakeFails = false;
  SECTION("the backend offers no STARTTLS") {}
  SECTION("the handshake fails (the backend allows TLS 1.1 at most): a new connection") {
    options = backendWithTls(certs);
    options.mainCf.emplace_back("smtpd_tls_protocols", "!TLSv1.2, !TLSv1.3");
    handshakeFails = true;
  }
  PostfixInstance postfix(options);
  postfix.start();
  SmtpgateProcess proxy(withBackendTls(postfix, "127.0.0.1", "may"));
  checkDeliveredThrough(proxy);
  REQUIRE(postfix.sink().waitForMessages(1, deadlineIn(kTimeout)));
  CHECK_THAT(postfix.sink().messages()[0].data, Catch::Contains("with ESMTP id"));
  CHECK((proxy.log().find("; going on without TLS") != std::string::npos) == handshakeFails);
}

TEST_CASE("proxy: plaintext pipelined after STARTTLS is not executed", "[proxy]") {
  SKIP_WITHOUT_POSTFIX();
  SmtpgateOptions options;
  options.tls = true;
  ProxiedPostfix gate(options);
  auto deadline = deadlineIn(kTimeout);

  TlsSmtpClient client;
  client.connect(gate.proxy().host(), gate.proxy().port());
  SmtpClient& plain = client.plain();
  REQUIRE(plain.readBanner(deadline).code == 220);
  REQUIRE(plain.command("EHLO client.test", deadline).code == 250);
  // CVE-2011-0411: the MAIL rides in the same segment as STARTTLS.
  plain.send("STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n");
  SmtpReply ready = plain.readReply(deadline);
  REQUIRE(ready.code == 220);
  // Nothing else came in plaintext with the 220. Had the proxy answered the
  // MAIL in plaintext, those bytes would be read as a TLS record below and
  // the handshake would fail.
  REQUIRE(plain.pending().empty());

  REQUIRE(client.startTls(plain.fd()));
  // Inside TLS the first reply must be the EHLO's: a MAIL executed from the
  // discarded plaintext would answer first (503 "send HELO" or 250).
  client.send("EHLO client.test\r\n");
  SmtpReply ehlo = client.readReply();
  INFO(ehlo.raw);
  CHECK(ehlo.code == 250);
  CHECK_THAT(ehlo.raw, Catch::StartsWith("250-proxy.test\r\n"));
  // And no transaction is open: a fresh MAIL is not "nested".
  client.send("MAIL FROM:<sender@example.org>\r\n");
  CHECK(client.readReply().code == 250);
  client.send("RCPT TO:<user@example.com>\r\nDATA\r\n");
  CHECK(client.readReply().code == 250);
  CHECK(client.readReply().code == 354);
  client.send("Subject: after STARTTLS\r\n\r\nhi\r\n.\r\nQUIT\r\n");
  CHECK(client.readReply().code == 250);
  CHECK(client.readReply().code == 221);

  REQUIRE(gate.postfix().sink().waitForMessages(1, deadline));
  auto sessions = waitForProxiedSessions(gate.postfix(), 1);
  REQUIRE(sessions.size() == 1);
  INFO(sessions[0]);
  CHECK(commandCount(sessions[0], "mail") == 1);
  CHECK(gate.postfix().logLines(std::regex("injected@evil")).empty());
  CHECK(gate.postfix().sink().messages()[0].sender == "sender@example.org");
}

TEST_CASE("proxy: pipelined commands are answered in order", "[proxy]") {
  SKIP_WITHOUT_POSTFIX();
  ProxiedPostfix gate(withRules(kStageRules));
  auto deadline = deadlineIn(kTimeout);

  SmtpClient client;
  SmtpReply ehlo = connectAndGreet(client, gate.proxy(), "client.test", deadline);
  CHECK_THAT(ehlo.raw, Catch::Contains("PIPELINING"));

  // One write: a good recipient, one Postfix refuses, one a rule refuses,
  // another good one, and DATA. Each reply must answer its own command.
  client.send(
      "MAIL FROM:<sender@example.org>\r\n"
      "RCPT TO:<user@example.com>\r\n"
      "RCPT TO:<unknown@example.com>\r\n"
      "RCPT TO:<refused@example.com>\r\n"
      "RCPT TO:<postmaster@example.com>\r\n"
      "DATA\r\n");
  CHECK(expectReply(client, 250, deadline).text() == "2.1.0 Ok");
  CHECK(expectReply(client, 250, deadline).text() == "2.1.5 Ok");
  CHECK_THAT(expectReply(client, 550, deadline).text(),
             Catch::StartsWith("5.1.1 <unknown@example.com>: Recipient address rejected"));
  CHECK(expectReply(client, 550, deadline).text() ==
        "5.7.1 <refused@example.com>: refused by rule");
  CHECK(expectReply(client, 250, deadline).text() == "2.1.5 Ok");
  expectReply(client, 354, deadline);
  client.send("Subject: pipelined\r\n\r\nhi\r\n.\r\nNOOP\r\nQUIT\r\n");
  CHECK_FALSE(queuedAs(expectReply(client, 250, deadline).raw).empty());
  CHECK(expectReply(client, 250, deadline).text() == "2.0.0 Ok");
  expectReply(client, 221, deadline);
  CHECK(client.waitForClose(deadline));

  REQUIRE(gate.postfix().sink().waitForMessages(1, deadline));
  auto recipients = gate.postfix().sink().messages()[0].recipients;
  std::sort(recipients.begin(), recipients.end());  // Postfix's order, not ours
  CHECK(recipients == std::vector<std::string>{"postmaster@example.com", "user@example.com"});
}

TEST_CASE("proxy: the session's commands and errors get RFC 5321's replies, then 421", "[proxy]") {
  SKIP_WITHOUT_POSTFIX();
  SmtpgateOptions options;
  options.proxy = {{"max_errors", "6"}};
  ProxiedPostfix gate(options);
  auto deadline = deadlineIn(kTimeout);
  SmtpClient client;
  client.connect(gate.proxy().host(), gate.proxy().port(), deadline);
  REQUIRE(client.readBanner(deadline).code == 220);
  auto replyTo = [&](const std::string& line) {
    SmtpReply reply = client.command(line, deadline);
    INFO(line << " -> " << reply.raw);
    return std::to_string(reply.code) + " " + reply.text();
  };
  // Served without EHLO, counted as no error.
  CHECK_THAT(replyTo("HELP"), Catch::StartsWith("214 2.0.0"));
  CHECK_THAT(replyTo("VRFY user@example.com"), Catch::StartsWith("252 2.0.0"));
  CHECK(replyTo("NOOP") == "250 2.0.0 Ok");
  CHECK(replyTo("RSET") == "250 2.0.0 Ok");
  // Six errors, each with its own reply; the sixth ends the session.
  CHECK(replyTo("MAIL FROM:<sender@example.org>") == "503 5.5.1 Error: send HELO/EHLO first");
  CHECK(replyTo("FROB x") == "500 5.5.2 Error: command not recognized");
  CHECK(replyTo("EXPN staff") == "502 5.5.1 EXPN command is disabled");
  REQUIRE(replyTo("EHLO client.test").starts_with("250 "));
  CHECK(replyTo("MAIL FROM:sender@example.org") == "501 5.5.4 Syntax: MAIL FROM:<address>");
  CHECK(replyTo("RCPT TO:<user@example.com>") == "503 5.5.1 Error: need MAIL command");
  client.send("NOOP " + std::string(3000, 'x') + "\r\n");
  CHECK(expectReply(client, 500, deadline).text() == "5.5.2 Error: line too long");
  SmtpReply last = expectReply(client, 421, deadline);
  CHECK_THAT(last.text(), Catch::EndsWith("Error: too many errors"));
  CHECK(client.waitForClose(deadline));
}

namespace {

/// A message by BDAT (RFC 3030) in three chunks, all in one write: a CRLF
/// split across two chunks, a line that is a lone ".", a line with two dots
/// and text that reads like commands. None of it is an end or a command;
/// all of it reaches the mailbox as it was sent.
constexpr std::string_view kChunk1 = "Subject: chunked\r\n\r\nfirst line\r";
constexpr std::string_view kChunk2 = "\n.\r\nMAIL FROM:<evil@evil.test>\r\n..two dots\r\n";
constexpr std::string_view kChunk3 = "last line";  // no CRLF: the proxy ends the line
constexpr std::string_view kChunkedContent =
    "first line\n.\nMAIL FROM:<evil@evil.test>\n..two dots\nlast line\n";

std::string bdat(std::string_view chunk, bool last = false) {
  return "BDAT " + std::to_string(chunk.size()) + (last ? " LAST" : "") + "\r\n" +
         std::string(chunk);
}

/// Sends kChunk1..3 by BDAT through the proxy; Postfix's end-of-session line.
std::string deliverInChunks(ProxiedPostfix& gate) {
  auto deadline = deadlineIn(kTimeout);
  SmtpClient client;
  SmtpReply ehlo = connectAndGreet(client, gate.proxy(), "client.test", deadline);
  // A keyword line of its own, wherever it stands (8BITMIME and SMTPUTF8
  // follow it only once the start-up probe has learnt the backend's).
  INFO(ehlo.raw);
  CHECK((ehlo.raw.find("250-CHUNKING\r\n") != std::string::npos ||
         ehlo.raw.find("250 CHUNKING\r\n") != std::string::npos));
  client.send("MAIL FROM:<sender@example.org>\r\nRCPT TO:<user@example.com>\r\n" + bdat(kChunk1) +
              bdat(kChunk2) + bdat(kChunk3, true) + "QUIT\r\n");
  expectReply(client, 250, deadline);
  expectReply(client, 250, deadline);
  CHECK(expectReply(client, 250, deadline).text() ==
        "2.0.0 Ok: " + std::to_string(kChunk1.size()) + " bytes");
  CHECK(expectReply(client, 250, deadline).text() ==
        "2.0.0 Ok: " + std::to_string(kChunk2.size()) + " bytes");
  CHECK_FALSE(queuedAs(expectReply(client, 250, deadline).raw).empty());
  expectReply(client, 221, deadline);

  REQUIRE(gate.postfix().sink().waitForMessages(1, deadline));
  auto messages = gate.postfix().sink().messages();
  REQUIRE(messages.size() == 1);
  INFO(messages[0].data);
  CHECK_THAT(messages[0].data, Catch::EndsWith(std::string(kChunkedContent)));
  CHECK(messages[0].sender == "sender@example.org");
  auto sessions = waitForMailSessions(
      gate.postfix(), [](const auto& lines) { return totalCount(lines, "mail") >= 1; });
  REQUIRE(sessions.size() == 1);
  CHECK(commandCount(sessions[0], "mail") == 1);
  return sessions[0];
}

}  // namespace

TEST_CASE("proxy: a message by BDAT chunks reaches Postfix as the client sent it",
          "[proxy][bdat]") {
  SKIP_WITHOUT_POSTFIX();
  SECTION("Postfix with CHUNKING: one BDAT") {
    ProxiedPostfix gate;
    std::string session = deliverInChunks(gate);
    INFO(session);
    CHECK(commandCount(session, "bdat") == 1);
    CHECK(commandCount(session, "data") == 0);
  }
  SECTION("Postfix without CHUNKING: DATA, dot-stuffed by the proxy") {
    ProxiedPostfix gate({}, backendWithoutChunking());
    std::string session = deliverInChunks(gate);
    INFO(session);
    CHECK(commandCount(session, "data") == 1);
    CHECK(commandCount(session, "bdat") == 0);
  }
}

TEST_CASE("proxy: a refused BDAT's chunk is read and thrown away, never run as commands",
          "[proxy][bdat]") {
  SKIP_WITHOUT_POSTFIX();
  SmtpgateOptions options = withRules(kStageRules);
  options.proxy = {{"max_message_size", "1000"}};
  ProxiedPostfix gate(options);
  auto deadline = deadlineIn(kTimeout);
  SmtpClient client;
  connectAndGreet(client, gate.proxy(), "client.test", deadline);

  // Before MAIL: refused, and the chunk (which reads like a whole
  // transaction) is not executed: the next reply answers NOOP.
  const std::string commands =
      "MAIL FROM:<evil@evil.test>\r\nRCPT TO:<user@example.com>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n";
  client.send(bdat(commands, true) + "NOOP\r\n");
  CHECK(expectReply(client, 503, deadline).text() == "5.5.1 Error: need MAIL command");
  CHECK(expectReply(client, 250, deadline).text() == "2.0.0 Ok");

  // Over the size limit: 552 for that chunk, which ends the transaction;
  // the chunk pipelined behind it is thrown away too (RFC 3030 section 2).
  client.send("MAIL FROM:<sender@example.org>\r\nRCPT TO:<user@example.com>\r\n" +
              bdat("Subject: big\r\n\r\n" + std::string(1200, 'x') + "\r\n") +
              bdat(commands, true) + "NOOP\r\n");
  expectReply(client, 250, deadline);
  expectReply(client, 250, deadline);
  CHECK(expectReply(client, 552, deadline).text() ==
        "5.3.4 Message size exceeds fixed maximum message size");
  CHECK(expectReply(client, 503, deadline).text() == "5.5.1 Error: need MAIL command");
  CHECK(expectReply(client, 250, deadline).text() == "2.0.0 Ok");

  // A bare LF is refused as in DATA; a rule refuses at data as in DATA.
  client.send("MAIL FROM:<sender@example.org>\r\nRCPT TO:<user@example.com>\r\n" +
              bdat("Subject: bare\r\n\r\nbare\nline\r\n", true));
  expectReply(client, 250, deadline);
  expectReply(client, 250, deadline);
  CHECK(expectReply(client, 550, deadline).text() == "5.5.2 Error: bare <LF> received");
  client.send("MAIL FROM:<sender@example.org>\r\nRCPT TO:<user@example.com>\r\n" +
              bdat("Subject: REFUSE-ME\r\n\r\nbody\r\n", true));
  expectReply(client, 250, deadline);
  expectReply(client, 250, deadline);
  CHECK(expectReply(client, 550, deadline).text() == "5.7.1 Message refused by rule bad-subject");

  // DATA in the middle of a BDAT transaction is out of order.
  client.send("MAIL FROM:<sender@example.org>\r\nRCPT TO:<user@example.com>\r\n" +
              bdat("Subject: half\r\n") + "DATA\r\nRSET\r\n");
  expectReply(client, 250, deadline);
  expectReply(client, 250, deadline);
  expectReply(client, 250, deadline);
  CHECK(expectReply(client, 503, deadline).text() == "5.5.1 Error: DATA after BDAT");
  expectReply(client, 250, deadline);

  // A BDAT whose size does not parse: where its chunk ends is unknown, so
  // the session ends (521) rather than read message text as commands.
  client.send("BDAT 12x\r\nQUIT\r\n");
  CHECK(expectReply(client, 521, deadline).text() == "5.5.4 Syntax: BDAT count [LAST]");
  CHECK(client.waitForClose(deadline));

  // Nothing was delivered, and Postfix never saw a message or a smuggled MAIL.
  auto sessions = waitForMailSessions(
      gate.postfix(), [](const auto& lines) { return totalCount(lines, "mail") >= 4; });
  std::string all;
  for (const auto& line : sessions) {
    all += line + "\n";
  }
  INFO(all);
  CHECK(totalCount(sessions, "mail") == 4);
  CHECK(totalCount(sessions, "bdat") == 0);
  CHECK(totalCount(sessions, "data") == 0);
  CHECK(gate.postfix().logLines(std::regex("evil\\.test")).empty());
  CHECK(gate.postfix().sink().messages().empty());
}

TEST_CASE("proxy: limits refuse with their replies, never deliver, and are logged", "[proxy]") {
  SKIP_WITHOUT_POSTFIX();
  SmtpgateOptions options;
  options.proxy = {
      {"max_message_size", "100000"}, {"max_header_size", "\"2K\""}, {"max_recipients", "1"}};
  ProxiedPostfix gate(options);
  auto deadline = deadlineIn(kTimeout);
  SmtpClient client;
  connectAndGreet(client, gate.proxy(), "client.test", deadline);

  // A SIZE= over the limit at MAIL; a recipient past max_recipients.
  SmtpReply announced = client.command("MAIL FROM:<big@example.org> SIZE=200000", deadline);
  CHECK(announced.code == 552);
  CHECK(announced.text() == "5.3.4 Message size exceeds fixed limit");
  REQUIRE(client.command("MAIL FROM:<sender@example.org>", deadline).code == 250);
  REQUIRE(client.command("RCPT TO:<user@example.com>", deadline).code == 250);
  SmtpReply second = client.command("RCPT TO:<second@example.com>", deadline);
  CHECK(second.code == 452);
  CHECK(second.text() == "4.5.3 Error: too many recipients");
  REQUIRE(client.command("RSET", deadline).code == 250);
  auto transaction = [&](const std::string& message) {
    REQUIRE(client.command("MAIL FROM:<sender@example.org>", deadline).code == 250);
    REQUIRE(client.command("RCPT TO:<user@example.com>", deadline).code == 250);
    REQUIRE(client.command("DATA", deadline).code == 354);
    return client.command(message + ".", deadline);
  };

  // 2,048 bytes of header allowed: a folded header of 40 x 60 bytes is more.
  std::string folded = "X-Long: start\r\n";
  for (int i = 0; i < 40; ++i) {
    folded += "\t" + std::string(57, 'h') + "\r\n";
  }
  SmtpReply header = transaction("Subject: long header\r\n" + folded + "\r\nbody\r\n");
  CHECK(header.code == 552);
  CHECK(header.text() == "5.3.4 Error: message header size exceeds limit");
  // The same bytes as body are fine, up to the size limit.
  SmtpReply body = transaction("Subject: long body\r\n\r\n" + folded);
  CHECK(body.code == 250);
  SmtpReply big = transaction("Subject: big\r\n\r\n" + std::string(1000, 'b') + "\r\n" + [] {
    std::string lines;
    for (int i = 0; i < 1200; ++i) {
      lines += std::string(98, 'x') + "\r\n";
    }
    return lines;
  }());
  CHECK(big.code == 552);
  CHECK(big.text() == "5.3.4 Message size exceeds fixed maximum message size");
  CHECK(client.command("QUIT", deadline).code == 221);

  // Postfix got one message: the refused ones ended with RSET, never DATA;
  // the MAIL with the SIZE over the limit never reached it.
  REQUIRE(gate.postfix().sink().waitForMessages(1, deadline));
  auto sessions = waitForMailSessions(
      gate.postfix(), [](const auto& lines) { return totalCount(lines, "rset") >= 3; });
  CHECK(totalCount(sessions, "mail") == 4);
  CHECK(totalCount(sessions, "rset") == 3);
  CHECK(gate.postfix().logLines(std::regex("big@example\\.org")).empty());
  CHECK(gate.postfix().sink().messageCount() == 1);
  CHECK_THAT(gate.postfix().sink().messages().front().data, Catch::Contains("long body"));

  // The decision log names the limit that refused each, with the envelope.
  auto refused = waitForDecisions(gate.proxy(), [](const json& r) {
    return r.value("action", "") == "reject" && r.value("stage", "") == "data";
  });
  REQUIRE(refused.size() == 2);
  CHECK(refused[0].value("rule", "") == "max_header_size");
  CHECK(refused[0].value("reply", "") == "552 5.3.4 Error: message header size exceeds limit");
  CHECK(refused[0].value("sender", "") == "sender@example.org");
  CHECK(refused[1].value("rule", "") == "max_message_size");
  auto atMail = waitForDecisions(gate.proxy(), [](const json& r) {
    return r.value("stage", "") == "mail" && r.value("rule", "") == "max_message_size";
  });
  REQUIRE(atMail.size() == 1);
  CHECK(atMail[0].value("action", "") == "reject");
  CHECK(atMail[0].value("sender", "") == "big@example.org");
  auto atRcpt = waitForDecisions(gate.proxy(), [](const json& r) {
    return r.value("stage", "") == "rcpt" && r.value("rule", "") == "max_recipients";
  });
  REQUIRE(atRcpt.size() == 1);
  CHECK(atRcpt[0].value("action", "") == "tempfail");
  CHECK(atRcpt[0].value("rcpts", json::array()) == json::array({"second@example.com"}));
}

TEST_CASE("proxy: a backend given by host name is resolved, each address tried in turn",
          "[proxy]") {
  SKIP_WITHOUT_POSTFIX();
  PostfixInstance postfix(backendOptions());
  postfix.start();
  SmtpgateOptions options;
  options.binary = SMTPGATE_BINARY;
  // "localhost" is ::1 and 127.0.0.1 in /etc/hosts; Postfix listens on the
  // IPv4 address only, so an attempt on ::1 is refused and the next one works.
  options.backend = "localhost:" + std::to_string(postfix.port());
  SmtpgateProcess proxy(options);
  proxy.start();

  SwaksResult run = swaks({"--server", proxy.server(), "--local-interface", "127.0.0.2", "--from",
                           "sender@example.org", "--to", "user@example.com"});
  INFO(run.transcript);
  REQUIRE(run.exitCode == 0);
  const std::string queueId = queuedAs(run.transcript);
  REQUIRE_FALSE(queueId.empty());
  CHECK(postfix.waitForLog(std::regex(queueId + R"(: client=\S*\[127\.0\.0\.2\])"),
                           deadlineIn(kTimeout)));
}

TEST_CASE("proxy: listen addresses may be host names", "[proxy]") {
  // No backend needed: the proxy must start and serve on every address of
  // the name (it used to exit with "not an IP address").
  SmtpgateOptions options;
  options.binary = SMTPGATE_BINARY;
  options.backend = "127.0.0.1:" + std::to_string(freePort());
  const std::uint16_t metricsPort = freePort();
  options.extraConfig = "[metrics]\nlisten = \"localhost:" + std::to_string(metricsPort) + "\"\n";
  SmtpgateProcess proxy(options);
  proxy.start();
  CommandResult scrape =
      runCommand({"curl", "-sS", "--max-time", "5",
                  "http://localhost:" + std::to_string(metricsPort) + "/metrics"},
                 std::chrono::seconds(10));
  INFO(scrape.output << proxy.log());
  CHECK(scrape.exitCode == 0);
  CHECK_THAT(scrape.output, Catch::Contains("smtpgate_sessions_total"));
}

TEST_CASE("proxy: with the backend down the client hears 4xx and never 250", "[proxy]") {
  // No Postfix needed: nothing listens on the backend port.
  SmtpgateOptions options;
  options.binary = SMTPGATE_BINARY;
  options.backend = "127.0.0.1:" + std::to_string(freePort());
  SmtpgateProcess proxy(options);
  proxy.start();
  auto deadline = deadlineIn(kTimeout);

  SmtpClient client;
  connectAndGreet(client, proxy, "client.test", deadline);
  client.send("MAIL FROM:<sender@example.org>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n");
  SmtpReply mail = client.readReply(deadline);
  INFO(mail.raw);
  CHECK(mail.klass() == 4);
  // RCPT and DATA are refused for want of a transaction, not accepted.
  SmtpReply rcpt = client.readReply(deadline);
  SmtpReply data = client.readReply(deadline);
  INFO(rcpt.raw << data.raw);
  CHECK(rcpt.klass() == 5);
  CHECK(data.klass() == 5);
  CHECK(client.command("QUIT", deadline).code == 221);

  // swaks agrees: the message fails with a 4xx, and no 250 follows MAIL.
  SwaksResult run = swaks({"--server", proxy.server(), "--to", "user@example.com"});
  INFO(run.transcript);
  CHECK(run.exitCode != 0);
  CHECK_THAT(run.transcript, Catch::Contains("<** 451 4.4.1"));
  CHECK_FALSE(std::regex_search(run.transcript, std::regex("MAIL FROM[^\n]*\n<-  250")));
  CHECK(proxy.running());
}

namespace {

/// The end-of-data look-alikes of SMTP smuggling (CVE-2023-51764 and
/// relatives). "\r\n.\r\n" is the real end of data, so a client that means
/// it as content dot-stuffs it ("\r\n..\r\n", as swaks and every MTA do):
/// the proxy unstuffs it and must stuff it again for the backend, or the
/// backend would end the message there and run the rest as commands.
struct SmugglingCase {
  const char* name;
  const char* sequence;
  bool bare;  ///< contains a bare CR or LF (refused under bare_newlines = "reject")
};

constexpr SmugglingCase kSmugglingCases[] = {
    {"\\n.\\n", "\n.\n", true},
    {"\\n.\\r\\n", "\n.\r\n", true},
    {"\\r.\\r", "\r.\r", true},
    {"\\r\\n.\\n", "\r\n.\n", true},
    {"\\r\\n.\\r\\n (dot-stuffed)", "\r\n..\r\n", false},
};

/// Sends each smuggling case in a session of its own, then a clean marker
/// message, and checks what reached Postfix and its sink. `normalize`:
/// the proxy's bare_newlines setting; `chunking`: whether Postfix offers
/// CHUNKING (the proxy hands over by BDAT, else by DATA, dot-stuffed).
void checkSmuggling(bool normalize, bool chunking = true) {
  SmtpgateOptions options;
  options.proxy = {{"bare_newlines", normalize ? "\"normalize\"" : "\"reject\""}};
  ProxiedPostfix gate(options, chunking ? backendOptions() : backendWithoutChunking());
  PostfixInstance& postfix = gate.postfix();
  std::size_t expectedMessages = 0;
  int index = 0;
  for (const auto& c : kSmugglingCases) {
    ++index;
    INFO("sequence " << c.name << ", bare_newlines = " << (normalize ? "normalize" : "reject"));
    const std::string evil = "evil" + std::to_string(index) + "@evil.test";
    auto deadline = deadlineIn(kTimeout);
    SmtpClient client;
    connectAndGreet(client, gate.proxy(), "client.test", deadline);
    REQUIRE(client.command("MAIL FROM:<sender" + std::to_string(index) + "@example.org>", deadline)
                .code == 250);
    REQUIRE(client.command("RCPT TO:<user@example.com>", deadline).code == 250);
    REQUIRE(client.command("DATA", deadline).code == 354);
    client.send("Subject: smuggling " + std::to_string(index) + "\r\n\r\nbefore" +
                std::string(c.sequence) + "MAIL FROM:<" + evil +
                ">\r\nRCPT TO:<postmaster@example.com>\r\nDATA\r\n"
                "Subject: smuggled\r\n\r\nsmuggled\r\n.\r\n");
    SmtpReply end = client.readReply(deadline);
    INFO("reply to the message: " << end.raw);
    if (c.bare && !normalize) {
      CHECK(end.code == 550);
      CHECK_THAT(end.text(), Catch::StartsWith("5.5.2 Error: bare <"));
    } else {
      CHECK(end.code == 250);
      ++expectedMessages;
    }
    // Exactly one reply for the whole DATA: the next one answers QUIT, not a
    // smuggled MAIL the proxy ran itself.
    SmtpReply quit = client.command("QUIT", deadline);
    INFO("reply to QUIT: " << quit.raw);
    CHECK(quit.code == 221);
  }

  // The marker: once it and every session's end are in Postfix's log, a
  // smuggled command would have been counted there too.
  auto deadline = deadlineIn(kTimeout);
  SmtpClient client;
  connectAndGreet(client, gate.proxy(), "client.test", deadline);
  CHECK(sendMessage(client, "marker@example.org", "user@example.com",
                    "Subject: marker\r\n\r\nlast\r\n.\r\n", deadline)
            .code == 250);
  CHECK(client.command("QUIT", deadline).code == 221);
  ++expectedMessages;

  // One MAIL per client session; the sessions may share backend connections.
  const int sessionCount = static_cast<int>(std::size(kSmugglingCases)) + 1;
  auto sessions = waitForMailSessions(
      postfix, [&](const auto& lines) { return totalCount(lines, "mail") >= sessionCount; });
  std::string all;
  for (const auto& line : sessions) {
    all += line + "\n";
  }
  INFO(all);
  CHECK(totalCount(sessions, "mail") == sessionCount);
  CHECK(totalCount(sessions, chunking ? "bdat" : "data") == static_cast<int>(expectedMessages));
  CHECK(totalCount(sessions, chunking ? "data" : "bdat") == 0);
  REQUIRE(postfix.sink().waitForMessages(expectedMessages, deadline));
  REQUIRE(postfix.waitForLog(std::regex("from=<marker@example\\.org>"), deadline));
  CHECK(postfix.logLines(std::regex("evil\\.test")).empty());
  auto messages = postfix.sink().messages();
  CHECK(messages.size() == expectedMessages);
  for (const auto& message : messages) {
    INFO(message.data);
    CHECK(message.recipients == std::vector<std::string>{"user@example.com"});
    CHECK(message.sender.find("evil") == std::string::npos);
    if (message.sender != "marker@example.org") {
      // The would-be commands arrived as harmless text of the one message.
      CHECK_THAT(message.data, Catch::Contains("\nMAIL FROM:<evil"));
    }
  }
}

}  // namespace

TEST_CASE("proxy: smuggling sequences never make a second message (bare newlines refused)",
          "[proxy][smuggling]") {
  SKIP_WITHOUT_POSTFIX();
  checkSmuggling(false);
}

TEST_CASE("proxy: smuggling sequences never make a second message (bare newlines normalized)",
          "[proxy][smuggling]") {
  SKIP_WITHOUT_POSTFIX();
  checkSmuggling(true);
}

TEST_CASE("proxy: smuggling sequences never make a second message (backend without CHUNKING)",
          "[proxy][smuggling]") {
  // The message goes by DATA, dot-stuffed again by the proxy.
  SKIP_WITHOUT_POSTFIX();
  checkSmuggling(true, false);
}

}  // namespace smtpgate::testing
