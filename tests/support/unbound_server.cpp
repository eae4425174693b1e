#include "tests/support/unbound_server.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace smtpgate::testing {

namespace {

constexpr const char* kUnbound = "/usr/sbin/unbound";
constexpr const char* kCheckConf = "/usr/sbin/unbound-checkconf";

/// For a value inside unbound.conf's double quotes: unbound's config lexer
/// takes the text up to the next ", so a record holding " is put in single quotes.
std::string configQuoted(const std::string& value) {
  if (value.find('"') == std::string::npos) {
    return "\"" + value + "\"";
  }
  return "'" + value + "'";
}

std::string withDot(std::string name) {
  if (name.empty() || name.back() != '.') {
    name += '.';
  }
  return name;
}

}  // namespace

UnboundServer::UnboundServer() = default;

UnboundServer::~UnboundServer() {
  stop();
}

bool UnboundServer::available() {
  return ::access(kUnbound, X_OK) == 0;
}

void UnboundServer::addRecord(const std::string& record) {
  records_.push_back(record);
}

void UnboundServer::timeoutName(const std::string& name) {
  timeoutNames_.push_back(withDot(name));
}

void UnboundServer::addServerOption(const std::string& line) {
  options_.push_back(line);
}

std::string UnboundServer::quoteCharacterString(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    // The quotes as \DDD too: unbound.conf cannot quote a value holding both.
    if (c == '"' || c == '\\' || c == '\'' || c < 0x20 || c > 0x7e) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\%03u", static_cast<unsigned>(c));
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

void UnboundServer::start(Deadline deadline) {
  if (!available()) {
    throw std::runtime_error("unbound is not installed (apt-get install unbound)");
  }
  dir_ = std::make_unique<TempDir>("smtpgate-unbound");
  port_ = freePort();
  std::string conf =
      "server:\n"
      "  do-daemonize: no\n"
      "  interface: 127.0.0.1\n"
      "  port: " +
      std::to_string(port_) +
      "\n"
      "  do-ip6: no\n"
      "  chroot: \"\"\n"
      "  username: \"\"\n"
      "  directory: \"" +
      dir_->path() +
      "\"\n"
      "  pidfile: \"\"\n"
      "  use-syslog: no\n"
      "  logfile: \"\"\n"
      "  verbosity: 1\n"
      "  num-threads: 1\n"
      "  so-reuseport: no\n"
      "  access-control: 127.0.0.0/8 allow\n"
      "  module-config: \"iterator\"\n"
      "  do-not-query-localhost: yes\n"
      "  local-zone: \".\" static\n";
  for (const auto& name : timeoutNames_) {
    conf += "  local-zone: " + configQuoted(name) + " deny\n";
  }
  for (const auto& record : records_) {
    conf += "  local-data: " + configQuoted(record) + "\n";
  }
  for (const auto& option : options_) {
    conf += "  " + option + "\n";
  }
  conf += "remote-control:\n  control-enable: no\n";
  configPath_ = dir_->file("unbound.conf");
  writeFile(configPath_, conf);

  CommandResult check = runCommand({kCheckConf, configPath_}, std::chrono::seconds(10));
  if (check.exitCode != 0) {
    throw std::runtime_error("unbound-checkconf " + configPath_ + " failed:\n" + check.output);
  }
  process_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{kUnbound, "-d", "-c", configPath_}, dir_->file("unbound.log"));
  process_->start();
  const bool listening = waitFor(
      [&] {
        if (!process_->running()) {
          return true;  // died: reported below
        }
        auto ports = listeningTcpPorts(process_->pid());
        return std::find(ports.begin(), ports.end(), port_) != ports.end();
      },
      deadline);
  if (!listening || !process_->running()) {
    std::string log = process_->log();
    process_.reset();
    throw std::runtime_error("unbound did not start on 127.0.0.1:" + std::to_string(port_) +
                             " (config " + configPath_ + "):\n" + log);
  }
}

void UnboundServer::stop() {
  if (process_) {
    process_->stop(std::chrono::seconds(5));
    process_.reset();
  }
}

std::string UnboundServer::log() const {
  return process_ ? process_->log() : std::string();
}

}  // namespace smtpgate::testing
