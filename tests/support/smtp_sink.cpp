#include "tests/support/smtp_sink.h"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <regex>
#include <stdexcept>

namespace smtpgate::testing {
namespace {

// smtp-sink unescapes -S itself; kMarker is what ends up in the file.
constexpr const char* kMarkerArg = "\\001smtpgate-sink-message\\n";
constexpr const char* kMarker = "\001smtpgate-sink-message\n";
// The unprivileged user smtp-sink switches to when started as root.
constexpr const char* kSinkUser = "nobody";

std::string joinCommands(const std::vector<std::string>& commands) {
  std::string out;
  for (const auto& command : commands) {
    out += (out.empty() ? "" : ",") + command;
  }
  return out;
}

/// strftime() expands the -D template: keep a literal '%' literal.
std::string escapeStrftime(const std::string& path) {
  std::string out;
  for (char c : path) {
    out += c == '%' ? std::string("%%") : std::string(1, c);
  }
  return out;
}

/// "<a@b> SIZE=1" -> "a@b"; "<>" -> "".
std::string pathAddress(const std::string& args) {
  auto open = args.find('<');
  auto close = args.find('>', open == std::string::npos ? 0 : open);
  if (open == std::string::npos || close == std::string::npos) {
    return args.substr(0, args.find(' '));
  }
  return args.substr(open + 1, close - open - 1);
}

/// Fills the smtp-sink header fields of `message` from one "Name: value" line.
/// Returns false for a line that is not one of them.
bool parseSinkHeader(const std::string& line, SinkMessage& message) {
  auto colon = line.find(": ");
  if (colon == std::string::npos) {
    return false;
  }
  std::string name = line.substr(0, colon);
  std::string value = line.substr(colon + 2);
  if (name == "X-Client-Addr") {
    message.clientAddr = value;
  } else if (name == "X-Client-Proto") {
    message.clientProto = value;
  } else if (name == "X-Helo-Args") {
    message.heloArgs = value;
  } else if (name == "X-Mail-Args") {
    message.mailArgs = value;
    message.sender = pathAddress(value);
  } else if (name == "X-Rcpt-Args") {
    message.rcptArgs.push_back(value);
    message.recipients.push_back(pathAddress(value));
  } else {
    return false;
  }
  return true;
}

/// One dump chunk (after the marker) -> message. The smtp-sink headers end
/// with "Received: ...\n\tby ...\n\tDATE\n"; the content follows, plus the one
/// "\n" smtp-sink writes for the final CRLF of ".\r\n".
SinkMessage parseSinkChunk(const std::string& chunk) {
  SinkMessage message;
  std::size_t pos = 0;
  while (pos < chunk.size()) {
    auto eol = chunk.find('\n', pos);
    if (eol == std::string::npos) {
      break;
    }
    std::string line = chunk.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.rfind("Received: ", 0) == 0) {
      for (int continuation = 0; continuation < 2 && pos < chunk.size(); ++continuation) {
        eol = chunk.find('\n', pos);
        pos = eol == std::string::npos ? chunk.size() : eol + 1;
      }
      break;
    }
    parseSinkHeader(line, message);
  }
  message.data = chunk.substr(std::min(pos, chunk.size()));
  if (!message.data.empty() && message.data.back() == '\n') {
    message.data.pop_back();
  }
  return message;
}

}  // namespace

std::vector<SinkMessage> parseSinkDump(const std::string& dump, std::size_t limit) {
  const std::string marker = kMarker;
  std::vector<SinkMessage> messages;
  std::size_t start = dump.rfind(marker, 0) == 0 ? 0 : std::string::npos;
  while (start != std::string::npos && messages.size() < limit) {
    std::size_t body = start + marker.size();
    // A marker counts only at the start of a line.
    std::size_t next = dump.find("\n" + marker, body);
    std::size_t end = next == std::string::npos ? dump.size() : next + 1;
    messages.push_back(parseSinkChunk(dump.substr(body, end - body)));
    start = next == std::string::npos ? std::string::npos : next + 1;
  }
  return messages;
}

SmtpSink::SmtpSink(SmtpSinkOptions options) : options_(std::move(options)) {}

SmtpSink::~SmtpSink() {
  stop();
}

std::vector<std::string> SmtpSink::commandLine() const {
  std::vector<std::string> argv = {kProgram, "-c",
                                   "-D",     escapeStrftime(dumpPath_),
                                   "-S",     kMarkerArg,
                                   "-h",     options_.hostname,
                                   "-t",     std::to_string(options_.commandTimeoutSeconds)};
  if (::geteuid() == 0) {
    argv.insert(argv.end(), {"-u", kSinkUser});
  }
  const std::pair<bool, const char*> switches[] = {
      {!options_.esmtp, "-e"},
      {!options_.pipelining, "-p"},
      {!options_.eightBitMime, "-8"},
      {!options_.auth, "-a"},
      {!options_.xclient, "-C"},
      {!options_.xforward, "-F"},
      {!options_.enhancedStatusCodes, "-E"},
      {!options_.dsn, "-N"},
      {options_.lmtp, "-L"},
      {options_.verbose, "-v"},
  };
  for (const auto& [on, flag] : switches) {
    if (on) {
      argv.emplace_back(flag);
    }
  }
  const std::pair<const std::vector<std::string>*, const char*> lists[] = {
      {&options_.hardReject, "-f"},
      {&options_.softReject, "-r"},
      {&options_.reply421, "-Q"},
      {&options_.disconnect, "-q"},
  };
  for (const auto& [commands, flag] : lists) {
    if (!commands->empty()) {
      argv.insert(argv.end(), {flag, joinCommands(*commands)});
    }
  }
  if (!options_.hardReply.empty()) {
    argv.insert(argv.end(), {"-B", options_.hardReply});
  }
  if (!options_.softReply.empty()) {
    argv.insert(argv.end(), {"-b", options_.softReply});
  }
  if (options_.maxConnections > 0) {
    argv.insert(argv.end(), {"-m", std::to_string(options_.maxConnections)});
  }
  argv.insert(argv.end(), {host_ + ":0", "64"});
  return argv;
}

void SmtpSink::start() {
  if (process_) {
    throw std::runtime_error("SmtpSink::start: already started");
  }
  dir_ = std::make_unique<TempDir>("smtpgate-sink", 0755);
  std::string dumpDir = dir_->file("dump");
  ::mkdir(dumpDir.c_str(), 0755);
  if (::geteuid() == 0) {
    // smtp-sink opens the dump files after it dropped to kSinkUser.
    if (const passwd* pw = ::getpwnam(kSinkUser)) {
      (void)!::chown(dumpDir.c_str(), pw->pw_uid, pw->pw_gid);
    }
  }
  dumpPath_ = dumpDir + "/messages";
  process_ = std::make_unique<ChildProcess>(commandLine(), dir_->file("smtp-sink.log"));
  process_->start();

  bool listening = waitFor(
      [&] {
        if (!process_->running()) {
          return true;  // report below, do not wait for nothing
        }
        auto ports = listeningTcpPorts(process_->pid());
        port_ = ports.empty() ? 0 : ports.front();
        return port_ != 0;
      },
      deadlineIn(std::chrono::seconds(10)));
  if (!listening || port_ == 0) {
    std::string log = process_->log();
    process_->stop();
    throw std::runtime_error("smtp-sink did not start listening; its log:\n" + log);
  }
}

void SmtpSink::stop() {
  if (process_) {
    process_->stop(std::chrono::seconds(5));
  }
}

bool SmtpSink::running() {
  return process_ && process_->running();
}

std::string SmtpSink::relayhost() const {
  return "[" + host_ + "]:" + std::to_string(port_);
}

std::size_t SmtpSink::messageCount() const {
  // "-c" writes "sess=N quit=N mesg=N\r" after each completed message and
  // each session; the last one counts.
  static const std::regex kCounter("sess=[0-9]+ quit=[0-9]+ mesg=([0-9]+)");
  std::string text = log();
  std::size_t count = 0;
  for (std::sregex_iterator it(text.begin(), text.end(), kCounter), end; it != end; ++it) {
    count = std::stoul((*it)[1].str());
  }
  return count;
}

std::vector<SinkMessage> SmtpSink::messages() const {
  // Count first, then read: the file holds at least that many messages.
  std::size_t count = messageCount();
  return parseSinkDump(readFile(dumpPath_), count);
}

bool SmtpSink::waitForMessages(std::size_t count, Deadline deadline) const {
  return waitFor([&] { return messageCount() >= count; }, deadline);
}

std::string SmtpSink::log() const {
  return process_ ? process_->log() : std::string();
}

}  // namespace smtpgate::testing
