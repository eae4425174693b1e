#include "tests/support/smtpgate_process.h"

#include <signal.h>

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace smtpgate::testing {
namespace {

constexpr auto kStartTimeout = std::chrono::seconds(15);
constexpr auto kOpensslTimeout = std::chrono::seconds(20);
constexpr int kBindAttempts = 3;

/// A TOML basic string: the paths here come from mkdtemp, but quote properly anyway.
std::string tomlString(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  return out + "\"";
}

}  // namespace

void makeTestCertificate(const std::string& certificatePath, const std::string& keyPath,
                         const std::string& commonName) {
  CommandResult result =
      runCommand({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                  "/CN=" + commonName, "-keyout", keyPath, "-out", certificatePath},
                 kOpensslTimeout);
  if (result.exitCode != 0) {
    throw std::runtime_error("openssl req failed (exit " + std::to_string(result.exitCode) +
                             "): " + result.output);
  }
}

SmtpgateProcess::SmtpgateProcess(SmtpgateOptions options)
    : options_(std::move(options)), dir_("smtpgate-proxy") {}

SmtpgateProcess::~SmtpgateProcess() {
  stop();
}

std::string SmtpgateProcess::server() const {
  return host_ + ":" + std::to_string(port_);
}

std::string SmtpgateProcess::log() const {
  return readFile(dir_.file("smtpgate.log"));
}

std::vector<std::string> SmtpgateProcess::decisionLines() const {
  std::vector<std::string> lines;
  std::istringstream in(readFile(decisionLogPath()));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) {
      lines.push_back(line);
    }
  }
  return lines;
}

void SmtpgateProcess::reload() {
  if (process_ && process_->running()) {
    ::kill(process_->pid(), SIGHUP);
  }
}

void SmtpgateProcess::reconfigure(SmtpgateOptions options) {
  options_ = std::move(options);
  if (options_.tls) {
    makeTestCertificate(certificatePath(), keyPath(), options_.hostname);
  }
  writeFiles();
  reload();
}

void SmtpgateProcess::writeFiles() const {
  std::string rulesPath = this->rulesPath();
  writeFile(rulesPath, options_.rules);
  std::string config = "# written by smtpgate's SmtpgateProcess (tests/support)\n[proxy]\n";
  config += "listen = [" + tomlString(server()) + "]\n";
  config += "backend = " + tomlString(options_.backend) + "\n";
  config += "hostname = " + tomlString(options_.hostname) + "\n";
  if (options_.tls) {
    config += "tls_certificate = " + tomlString(certificatePath()) + "\n";
    config += "tls_key = " + tomlString(keyPath()) + "\n";
  }
  for (const auto& [key, value] : options_.proxy) {
    config += key + " = " + value + "\n";
  }
  config += "\n[rules]\nfiles = [" + tomlString(rulesPath) + "]\n";
  config += std::string("watch = ") + (options_.watchRules ? "true" : "false") + "\n";
  config += "\n[log]\ndecisions = " + tomlString(decisionLogPath()) + "\n";
  config += "\n" + options_.extraConfig;
  writeFile(configPath(), config);
}

bool SmtpgateProcess::startOn(std::uint16_t port) {
  port_ = port;
  writeFiles();
  process_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{options_.binary, "proxy", "-c", configPath()},
      dir_.file("smtpgate.log"));
  process_->start();
  bool listening = waitFor(
      [&] {
        if (!process_->running()) {
          return true;  // exited: checked below
        }
        auto ports = listeningTcpPorts(process_->pid());
        return std::find(ports.begin(), ports.end(), port_) != ports.end();
      },
      deadlineIn(kStartTimeout));
  if (listening && process_->running()) {
    return true;
  }
  std::string output = log();
  process_->stop();
  if (output.find("cannot listen") != std::string::npos) {
    return false;  // somebody took the port since freePort(): try another
  }
  throw std::runtime_error("smtpgate proxy did not start listening on " + server() +
                           "; its output:\n" + output + "\n--- " + configPath() + " ---\n" +
                           readFile(configPath()));
}

void SmtpgateProcess::start() {
  if (process_) {
    throw std::runtime_error("SmtpgateProcess::start: already started");
  }
  if (options_.tls) {
    makeTestCertificate(certificatePath(), keyPath(), options_.hostname);
  }
  for (int attempt = 0; attempt < kBindAttempts; ++attempt) {
    if (startOn(freePort())) {
      return;
    }
  }
  throw std::runtime_error("smtpgate proxy could not bind a free port; its output:\n" + log());
}

void SmtpgateProcess::stop() {
  if (process_) {
    process_->stop();
  }
}

void SmtpgateProcess::terminate() {
  if (process_ && process_->running()) {
    ::kill(process_->pid(), SIGTERM);
  }
}

std::optional<int> SmtpgateProcess::waitForExit(Deadline deadline) {
  if (!process_) {
    return std::nullopt;
  }
  auto status = process_->wait(deadline);
  if (!status) {
    return std::nullopt;
  }
  return exitCodeOf(*status);
}

bool SmtpgateProcess::running() {
  return process_ && process_->running();
}

}  // namespace smtpgate::testing
