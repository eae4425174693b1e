#include "tests/support/postfix_instance.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "tests/support/smtp_client.h"

namespace smtpgate::testing {
namespace {

constexpr const char* kPostfix = "/usr/sbin/postfix";
constexpr auto kCommandTimeout = std::chrono::seconds(20);
constexpr auto kStartTimeout = std::chrono::seconds(15);
constexpr auto kStopTimeout = std::chrono::seconds(10);

// Every daemon unprivileged where Postfix allows it (the default), none
// chrooted: a chroot would need copies of /etc files inside the TempDir.
// tlsmgr: for tests that give smtpd a certificate (without one TLS stays off).
constexpr const char* kMasterCf = R"(
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
postlog   unix-dgram n  -       n       -       1       postlogd
)";

bool ipv6LoopbackWorks() {
  int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_loopback;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

/// True while any live (non-zombie) process is in process group `pgid`.
bool processGroupAlive(pid_t pgid) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    std::string stat = readFile(entry.path().string() + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) {
      continue;
    }
    // After "(comm)": state ppid pgrp ...
    std::istringstream fields(stat.substr(close + 1));
    char state = 0;
    pid_t ppid = 0;
    pid_t pgrp = 0;
    if (fields >> state >> ppid >> pgrp && pgrp == pgid && state != 'Z' && state != 'X') {
      return true;
    }
  }
  return false;
}

void backdate(const std::string& path) {
  timespec times[2];
  times[0].tv_sec = times[1].tv_sec = ::time(nullptr) - 60;
  times[0].tv_nsec = times[1].tv_nsec = 0;
  if (::utimensat(AT_FDCWD, path.c_str(), times, 0) != 0) {
    throw std::runtime_error("utimensat " + path + " failed");
  }
}

std::string joinArgs(const std::vector<std::string>& args) {
  std::string out;
  for (const auto& arg : args) {
    out += (out.empty() ? "" : " ") + arg;
  }
  return out;
}

std::vector<std::string> splitLines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }
  return lines;
}

}  // namespace

PostfixInstance::PostfixInstance(PostfixOptions options)
    : options_(std::move(options)), sink_(options_.sink) {}

PostfixInstance::~PostfixInstance() {
  stop();
}

bool PostfixInstance::available() {
  return ::geteuid() == 0 && ::access(kPostfix, X_OK) == 0 &&
         ::access(SmtpSink::kProgram, X_OK) == 0;
}

std::string PostfixInstance::configDir() const {
  return dir_ ? dir_->file("conf") : std::string();
}

std::string PostfixInstance::maillogPath() const {
  return dir_ ? dir_->file("maillog") : "";
}

std::string PostfixInstance::maillog() const {
  return dir_ ? readFile(maillogPath()) : "";
}

std::vector<std::pair<std::string, std::string>> PostfixInstance::mainCfSettings() const {
  const std::string dir = dir_->path();
  const bool ipv6 = options_.ipv6.value_or(ipv6LoopbackWorks());
  std::vector<std::pair<std::string, std::string>> settings = {
      {"compatibility_level", "3.6"},
      // Everything this instance writes stays in its TempDir. maillog_file
      // must be under one of maillog_file_prefixes, else `postfix` refuses to run.
      {"queue_directory", dir + "/queue"},
      {"data_directory", dir + "/data"},
      {"maillog_file", dir + "/maillog"},
      {"maillog_file_prefixes", dir},
      {"mail_owner", "postfix"},
      {"setgid_group", "postdrop"},
      {"myhostname", options_.myhostname},
      {"myorigin", "$myhostname"},
      {"inet_interfaces", ipv6 ? "127.0.0.1, [::1]" : "127.0.0.1"},
      {"inet_protocols", ipv6 ? "ipv4, ipv6" : "ipv4"},
      // Nothing is delivered locally: every accepted message goes to the sink.
      {"mydestination", ""},
      {"local_recipient_maps", ""},
      {"alias_maps", ""},
      {"alias_database", ""},
      {"relay_domains", options_.relayDomain},
      {"relay_recipient_maps", "texthash:" + configDir() + "/relay_recipients"},
      {"relayhost", sink_.relayhost()},
      {"default_transport", "smtp"},
      {"mynetworks", options_.mynetworks},
      {"smtpd_relay_restrictions",
       "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"},
      {"smtpd_authorized_xclient_hosts", options_.xclientHosts},
      {"smtpd_authorized_xforward_hosts", options_.xforwardHosts},
      {"smtpd_banner", "$myhostname ESMTP"},
      // Postfix 3.9's default (3.7.6+ have it, off): a client that pipelines
      // where RFC 2920 does not allow it is disconnected. The proxy and the
      // milter tests must pass under it.
      {"smtpd_forbid_unauth_pipelining", "yes"},
      {"smtpd_tls_security_level", "none"},
      {"smtp_tls_security_level", "none"},
      // Tests measure seconds: no 1 s sleep after each error reply, fast retries.
      {"smtpd_error_sleep_time", "0s"},
      {"queue_run_delay", "1s"},
      {"minimal_backoff_time", "1s"},
      {"maximal_backoff_time", "2s"},
      {"smtp_connect_timeout", "5s"},
      {"biff", "no"},
      {"smtpd_milters", options_.smtpdMilters},
      {"non_smtpd_milters", options_.nonSmtpdMilters},
      {"milter_default_action", options_.milterDefaultAction},
      {"milter_protocol", options_.milterProtocol},
  };
  for (const auto& [name, value] : options_.mainCf) {
    auto it = std::find_if(settings.begin(), settings.end(),
                           [&](const auto& setting) { return setting.first == name; });
    if (it != settings.end()) {
      it->second = value;
    } else {
      settings.emplace_back(name, value);
    }
  }
  return settings;
}

std::string PostfixInstance::masterCfText() const {
  // Port 0: the master binds and the kernel picks a free port, which
  // readMasterAndPort() reads back — no window for another process to take it.
  std::string text = host_ + ":0 inet n - n - - smtpd";
  text += kMasterCf;
  for (const auto& line : options_.masterCf) {
    text += line + "\n";
  }
  return text;
}

void PostfixInstance::writeConfig() const {
  std::string mainCf = "# written by smtpgate's PostfixInstance (tests/support)\n";
  for (const auto& [name, value] : mainCfSettings()) {
    mainCf += name + " = " + value + "\n";
  }
  writeFile(configDir() + "/main.cf", mainCf);
  writeFile(configDir() + "/master.cf", masterCfText());
  std::string recipients;
  for (const auto& recipient : options_.recipients) {
    recipients += recipient + " OK\n";
  }
  writeFile(configDir() + "/relay_recipients", recipients);
  // Postfix's load_file() (main.cf, texthash tables) rereads a file every
  // 300 ms until its mtime is over a second old ("pausing to let ... cool
  // down") — almost 2 s per command here. The files are complete: date them back.
  for (const char* name : {"main.cf", "master.cf", "relay_recipients"}) {
    backdate(configDir() + "/" + name);
  }
}

void PostfixInstance::runOrThrow(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {kPostfix, "-c", configDir()};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult result = runCommand(argv, kCommandTimeout);
  if (result.exitCode != 0) {
    // `postfix` writes its diagnostics to maillog_file (to stderr only on a tty).
    throw std::runtime_error("postfix " + joinArgs(args) + " failed (exit " +
                             std::to_string(result.exitCode) + "): " + result.output + "\n--- " +
                             maillogPath() + " ---\n" + maillog());
  }
}

void PostfixInstance::start() {
  if (started_) {
    throw std::runtime_error("PostfixInstance::start: already started");
  }
  // 0755: the postfix user must traverse it (queue, maillog) after dropping root.
  dir_ = std::make_unique<TempDir>("smtpgate-postfix", 0755);
  // Postfix chdirs into queue_directory before post-install runs; the
  // subdirectories and data_directory are then created by `postfix check`
  // with the owners and modes of /etc/postfix/postfix-files.
  for (const char* sub : {"conf", "queue"}) {
    ::mkdir(dir_->file(sub).c_str(), 0755);
  }
  sink_.start();
  writeConfig();
  started_ = true;  // from here on, stop() has something to clean up
  runOrThrow({"check"});
  // `postfix start` would repeat check-fatal and check-warn; quick-start is
  // Postfix's own marker for "just checked", consumed by the start.
  writeFile(dir_->file("queue/quick-start"), "");
  runOrThrow({"start"});
  readMasterAndPort();
  waitForGreeting();
}

void PostfixInstance::readMasterAndPort() {
  // `postfix start` returns once the master finished initialising (master -w),
  // so the pid file and listeners are normally there at once; the wait only
  // covers a slow machine.
  const std::string pidFile = dir_->file("queue/pid/master.pid");
  bool found = waitFor(
      [&] {
        std::string text = readFile(pidFile);
        masterPid_ = text.find_first_of("0123456789") == std::string::npos
                         ? -1
                         : static_cast<pid_t>(std::stol(text));
        if (!processAlive(masterPid_, "master")) {
          return false;
        }
        auto ports = listeningTcpPorts(masterPid_);
        port_ = ports.empty() ? 0 : ports.front();
        return port_ != 0;
      },
      deadlineIn(kStartTimeout));
  if (!found) {
    throw std::runtime_error("Postfix master or its smtpd listener did not appear; maillog:\n" +
                             maillog());
  }
}

void PostfixInstance::waitForGreeting() {
  auto deadline = deadlineIn(kStartTimeout);
  SmtpClient client;
  client.connect(host_, port_, deadline);
  SmtpReply banner = client.readBanner(deadline);
  if (banner.code != 220) {
    throw std::runtime_error("Postfix greeted with: " + banner.raw);
  }
  client.send("QUIT\r\n");
  client.tryReadReply(deadline);
}

void PostfixInstance::stop() {
  if (!started_) {
    sink_.stop();
    return;
  }
  started_ = false;
  runCommand({kPostfix, "-c", configDir(), "stop"}, kCommandTimeout);
  waitForMasterExit();
  sink_.stop();
}

void PostfixInstance::waitForMasterExit() {
  if (masterPid_ <= 0) {
    return;  // start() failed before the master existed: `postfix stop` was enough
  }
  // The master SIGTERMs its process group (its children) before it exits;
  // wait for all of them, so the TempDir is not removed under a live daemon.
  auto gone = [&] { return !processAlive(masterPid_, "master") && !processGroupAlive(masterPid_); };
  if (waitFor(gone, deadlineIn(kStopTimeout))) {
    return;
  }
  // Only this instance's group: the master is a session leader (setsid), so
  // its pgid is its pid. Never signal by name — other instances run "master" too.
  ::kill(-masterPid_, SIGKILL);
  waitFor(gone, deadlineIn(kStopTimeout));
}

std::optional<std::string> PostfixInstance::waitForLog(const std::regex& pattern,
                                                       Deadline deadline) const {
  std::optional<std::string> found;
  waitFor(
      [&] {
        for (const auto& line : splitLines(maillog())) {
          if (std::regex_search(line, pattern)) {
            found = line;
            return true;
          }
        }
        return false;
      },
      deadline);
  return found;
}

std::vector<std::string> PostfixInstance::logLines(const std::regex& pattern) const {
  std::vector<std::string> out;
  for (const auto& line : splitLines(maillog())) {
    if (std::regex_search(line, pattern)) {
      out.push_back(line);
    }
  }
  return out;
}

std::vector<std::string> PostfixInstance::queueIdsDelivered() const {
  // "postfix/smtp[123]: 4F1A2B3C4D: to=<user@example.com>, relay=..., status=sent (...)"
  static const std::regex kSent(R"(: ([0-9A-Za-z]+): to=<[^>]*>,.* status=sent )");
  std::vector<std::string> ids;
  for (const auto& line : logLines(kSent)) {
    std::smatch match;
    std::regex_search(line, match, kSent);
    if (std::find(ids.begin(), ids.end(), match[1].str()) == ids.end()) {
      ids.push_back(match[1].str());
    }
  }
  return ids;
}

CommandResult PostfixInstance::postfixCommand(const std::vector<std::string>& args,
                                              std::chrono::milliseconds timeout) const {
  if (args.empty()) {
    throw std::runtime_error("postfixCommand: no command");
  }
  std::vector<std::string> argv = {args.front(), "-c", configDir()};
  argv.insert(argv.end(), args.begin() + 1, args.end());
  return runCommand(argv, timeout);
}

void PostfixInstance::flushQueue() const {
  CommandResult result = postfixCommand({"postqueue", "-f"});
  if (result.exitCode != 0) {
    throw std::runtime_error("postqueue -f failed: " + result.output);
  }
}

}  // namespace smtpgate::testing
