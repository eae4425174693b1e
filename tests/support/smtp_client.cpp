#include "tests/support/smtp_client.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace smtpgate::testing {
namespace {

int millisUntil(Deadline deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

/// Waits for `events` on `fd` until the deadline; false on timeout.
bool pollUntil(int fd, short events, Deadline deadline) {
  for (;;) {
    pollfd pfd{fd, events, 0};
    int n = ::poll(&pfd, 1, millisUntil(deadline));
    if (n > 0) {
      return true;
    }
    if (n == 0 || errno != EINTR) {
      return false;
    }
  }
}

int connectOne(const addrinfo* ai, Deadline deadline) {
  int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
  if (fd < 0) {
    return -1;
  }
  if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
    return fd;
  }
  int err = errno;
  socklen_t len = sizeof err;
  if (err == EINPROGRESS && pollUntil(fd, POLLOUT, deadline) &&
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
    return fd;
  }
  ::close(fd);
  return -1;
}

/// Is `line` (without its line end) the last line of a reply? Throws if it is
/// not a reply line at all.
bool isFinalLine(const std::string& line, const std::string& whole) {
  bool digits = line.size() >= 3 && std::isdigit(static_cast<unsigned char>(line[0])) &&
                std::isdigit(static_cast<unsigned char>(line[1])) &&
                std::isdigit(static_cast<unsigned char>(line[2]));
  if (!digits || (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
    throw std::runtime_error("malformed SMTP reply line: \"" + line + "\" in \"" + whole + "\"");
  }
  return line.size() == 3 || line[3] == ' ';
}

}  // namespace

std::string SmtpReply::text() const {
  std::string out;
  for (const auto& line : lines) {
    out += (out.empty() ? "" : "\n") + line;
  }
  return out;
}

SmtpClient::~SmtpClient() {
  close();
}

SmtpClient::SmtpClient(SmtpClient&& other) noexcept
    : fd_(other.fd_), eof_(other.eof_), buffer_(std::move(other.buffer_)) {
  other.fd_ = -1;
}

SmtpClient& SmtpClient::operator=(SmtpClient&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    eof_ = other.eof_;
    buffer_ = std::move(other.buffer_);
    other.fd_ = -1;
  }
  return *this;
}

void SmtpClient::connect(const std::string& host, std::uint16_t port, Deadline deadline) {
  close();
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) {
    throw std::runtime_error("resolve " + host + ": " + ::gai_strerror(rc));
  }
  for (addrinfo* ai = res; ai != nullptr && fd_ < 0; ai = ai->ai_next) {
    fd_ = connectOne(ai, deadline);
  }
  ::freeaddrinfo(res);
  if (fd_ < 0) {
    throw std::runtime_error("cannot connect to " + host + ":" + std::to_string(port));
  }
  eof_ = false;
  buffer_.clear();
}

void SmtpClient::send(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      pollUntil(fd_, POLLOUT, deadlineIn(std::chrono::seconds(20)));
      continue;
    }
    if (n <= 0) {
      throw std::runtime_error(std::string("send: ") + std::strerror(errno));
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

SmtpReply SmtpClient::command(std::string_view line, Deadline deadline) {
  send(std::string(line) + "\r\n");
  return readReply(deadline);
}

bool SmtpClient::fill(Deadline deadline) {
  if (fd_ < 0 || eof_ || !pollUntil(fd_, POLLIN, deadline)) {
    return false;
  }
  char buf[4096];
  ssize_t n;
  bool got = false;
  while ((n = ::recv(fd_, buf, sizeof buf, 0)) > 0) {
    buffer_.append(buf, static_cast<std::size_t>(n));
    got = true;
  }
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    eof_ = true;  // closed or reset: nothing more will come
  }
  return got;
}

std::optional<SmtpReply> SmtpClient::takeReply() {
  SmtpReply reply;
  std::size_t pos = 0;
  for (;;) {
    auto eol = buffer_.find('\n', pos);
    if (eol == std::string::npos) {
      return std::nullopt;
    }
    std::string line = buffer_.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    pos = eol + 1;
    bool last = isFinalLine(line, buffer_.substr(0, pos));
    if (reply.lines.empty()) {
      reply.code = std::stoi(line.substr(0, 3));
    }
    reply.lines.push_back(line.size() > 4 ? line.substr(4) : std::string());
    if (last) {
      reply.raw = buffer_.substr(0, pos);
      buffer_.erase(0, pos);
      return reply;
    }
  }
}

std::optional<SmtpReply> SmtpClient::tryReadReply(Deadline deadline) {
  for (;;) {
    if (auto reply = takeReply()) {
      return reply;
    }
    if (eof_ || !fill(deadline)) {
      return std::nullopt;
    }
  }
}

SmtpReply SmtpClient::readReply(Deadline deadline) {
  if (auto reply = tryReadReply(deadline)) {
    return *reply;
  }
  throw std::runtime_error(std::string(eof_ ? "connection closed" : "timed out") +
                           " waiting for an SMTP reply; received so far: \"" + buffer_ + "\"");
}

bool SmtpClient::waitForClose(Deadline deadline) {
  while (fd_ >= 0 && !eof_) {
    if (!fill(deadline) && !eof_ && Clock::now() >= deadline) {
      return false;
    }
  }
  return true;
}

void SmtpClient::shutdownWrite() {
  if (fd_ >= 0) {
    ::shutdown(fd_, SHUT_WR);
  }
}

void SmtpClient::close() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

SwaksResult swaks(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  std::vector<std::string> argv = {"swaks"};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult run = runCommand(argv, timeout);
  return SwaksResult{run.exitCode, run.timedOut, run.output};
}

}  // namespace smtpgate::testing
