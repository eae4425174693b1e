#include "milter/milter_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/core.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>

#include "milter/milter_conversation.h"
#include "policies/config.h"

namespace smtpgate::milter {

struct MilterServer::Impl {
  MilterSettings settings;
  policies::DecisionLog* log = nullptr;
  ReloadFunction reload;

  mutable std::mutex rulesMutex;
  rules::RuleSetPtr rules;         // guarded by rulesMutex
  policies::PolicyOptions policy;  // guarded by rulesMutex

  int listenFd = -1;
  std::string unixPath;  ///< the socket file to remove at exit, if unix
  int wakeRead = -1;     ///< the accept loop's stop pipe
  int wakeWrite = -1;

  std::mutex connectionsMutex;
  std::condition_variable connectionClosed;
  std::set<int> connections;  // guarded by connectionsMutex

  // Threads are kept for the next connection rather than made for each:
  // accepted connections wait in `pending` for a thread in `workerLoop`.
  std::mutex workersMutex;
  std::condition_variable workAvailable;
  std::deque<int> pending;  // guarded by workersMutex
  std::size_t waiting = 0;  // threads waiting for a connection; guarded by workersMutex
  std::size_t workers = 0;  // threads alive; guarded by workersMutex
  std::condition_variable workerEnded;

  std::atomic<bool> stopping{false};
  std::thread signalThread;

  MilterRules current() const {
    std::lock_guard lock(rulesMutex);
    return {rules, policy};
  }
  void install(MilterRules fresh) {
    std::lock_guard lock(rulesMutex);
    rules = std::move(fresh.rules);
    policy = std::move(fresh.policy);
  }
  void writeLog(const policies::DecisionRecord& record) const {
    if (log != nullptr && !log->write(record)) {
      fmt::print(stderr, "smtpgate milter: decision log {}: {}\n", log->path(), log->lastError());
    }
  }
  std::unique_ptr<MilterSession> newSession() {
    MilterRules now = current();
    return std::make_unique<MilterSession>(
        std::move(now.rules), std::move(now.policy),
        [this](const policies::DecisionRecord& r) { writeLog(r); });
  }

  void signalLoop();
  void stop();
  /// Accepts until stopped; false if the listening socket failed.
  bool acceptLoop();
  void serve(int fd);
  /// Hands an accepted connection to a waiting thread, or to a new one.
  void dispatch(int fd);
  void workerLoop();
  /// Waits for the open connections: up to the grace, then ends them.
  void drainConnections();
  void shutDownConnections();
};

namespace {

/// The signals our thread takes: everything a daemon is sent.
sigset_t serverSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int signo : {SIGHUP, SIGUSR1, SIGUSR2, SIGTERM, SIGINT}) {
    sigaddset(&set, signo);
  }
  return set;
}

/// How long a connection may stay silent (libmilter's default timeout).
constexpr int kIdleTimeoutSeconds = 7210;
/// How long a thread without a connection waits for the next before it ends.
constexpr auto kIdleThreadLifetime = std::chrono::seconds(60);

void setTimeouts(int fd) {
  timeval tv{};
  tv.tv_sec = kIdleTimeoutSeconds;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

std::string errnoText() {
  return std::system_category().message(errno);  // strerror() is not thread-safe
}

/// A listening unix socket at `path`; a stale socket file there is removed
/// first (anything else in the way is an error).
int listenUnix(const std::string& path, std::string& error) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    error = "path too long for a unix socket";
    return -1;
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      error = "exists and is not a socket";
      return -1;
    }
    ::unlink(path.c_str());
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = errnoText();
    return -1;
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd, SOMAXCONN) != 0) {
    error = errnoText();
    ::close(fd);
    return -1;
  }
  return fd;
}

int listenTcp(const policies::HostPort& where, bool inet6, std::string& error) {
  addrinfo hints{};
  hints.ai_family = inet6 ? AF_INET6 : AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(where.port);
  const char* host = where.host.empty() ? nullptr : where.host.c_str();
  if (int rc = ::getaddrinfo(host, port.c_str(), &hints, &found); rc != 0) {
    error = ::gai_strerror(rc);
    return -1;
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owned(found, ::freeaddrinfo);
  int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = errnoText();
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, found->ai_addr, found->ai_addrlen) != 0 || ::listen(fd, SOMAXCONN) != 0) {
    error = errnoText();
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

void MilterServer::Impl::signalLoop() {
  sigset_t set = serverSignals();
  for (;;) {
    int signo = 0;
    if (sigwait(&set, &signo) != 0) {
      continue;
    }
    if (stopping.load()) {
      return;
    }
    switch (signo) {
      case SIGUSR1:
        if (log != nullptr) {
          log->requestReopen();
        }
        break;
      case SIGHUP:
      case SIGUSR2:
        if (std::optional<MilterRules> fresh = reload ? reload() : std::nullopt) {
          const std::string hash = fresh->rules->hash();
          install(std::move(*fresh));
          fmt::print(stderr, "smtpgate milter: reloaded rules, ruleset {}\n", hash);
        } else {
          fmt::print(stderr, "smtpgate milter: reload failed, keeping the current rules\n");
        }
        break;
      default:  // SIGTERM, SIGINT: finish open connections (up to the grace), then exit
        stop();
        return;
    }
  }
}

void MilterServer::Impl::stop() {
  stopping.store(true);
  [[maybe_unused]] auto ignored = ::write(wakeWrite, "x", 1);
}

void MilterServer::Impl::serve(int fd) {
  MilterConversation conversation([this] { return newSession(); });
  serveConnection(fd, conversation);
  std::lock_guard lock(connectionsMutex);
  connections.erase(fd);
  ::close(fd);
  connectionClosed.notify_all();
}

void MilterServer::Impl::dispatch(int fd) {
  std::lock_guard lock(workersMutex);
  pending.push_back(fd);
  if (pending.size() <= waiting) {
    workAvailable.notify_one();
    return;
  }
  try {
    std::thread([this] { workerLoop(); }).detach();
    ++workers;
  } catch (const std::system_error& e) {
    // Serve it when a thread comes free; say why it waits.
    fmt::print(stderr, "smtpgate milter: no new thread for a connection: {}\n", e.what());
  }
}

void MilterServer::Impl::workerLoop() {
  for (;;) {
    int fd = -1;
    {
      std::unique_lock lock(workersMutex);
      ++waiting;
      workAvailable.wait_for(lock, kIdleThreadLifetime,
                             [&] { return !pending.empty() || stopping.load(); });
      --waiting;
      if (pending.empty()) {
        --workers;  // idle too long, or stopping
        workerEnded.notify_all();
        return;
      }
      fd = pending.front();
      pending.pop_front();
    }
    serve(fd);
  }
}

bool MilterServer::Impl::acceptLoop() {
  while (!stopping.load()) {
    pollfd fds[2] = {{listenFd, POLLIN, 0}, {wakeRead, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      fmt::print(stderr, "smtpgate milter: poll: {}\n", errnoText());
      return false;
    }
    if ((fds[0].revents & POLLIN) == 0) {
      continue;
    }
    const int fd = ::accept4(listenFd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
        fmt::print(stderr, "smtpgate milter: accept: {}\n", errnoText());
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // EMFILE: do not spin
      }
      continue;
    }
    // Replies go out as soon as they are written (see "Nagle" in the header).
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // fails harmlessly on unix
    setTimeouts(fd);
    {
      std::lock_guard lock(connectionsMutex);
      connections.insert(fd);
    }
    dispatch(fd);
  }
  return true;
}

void MilterServer::Impl::shutDownConnections() {
  std::lock_guard lock(connectionsMutex);
  for (int fd : connections) {
    ::shutdown(fd, SHUT_RDWR);  // the serving thread sees the end and closes it
  }
}

void MilterServer::Impl::drainConnections() {
  std::unique_lock lock(connectionsMutex);
  connectionClosed.wait_for(lock, settings.shutdownGrace, [&] { return connections.empty(); });
  if (!connections.empty()) {
    lock.unlock();
    shutDownConnections();
    lock.lock();
    connectionClosed.wait_for(lock, std::chrono::seconds(5), [&] { return connections.empty(); });
  }
}

MilterServer::MilterServer(MilterSettings settings, MilterRules rules, policies::DecisionLog* log,
                           ReloadFunction reload)
    : impl_(new Impl) {
  impl_->settings = std::move(settings);
  impl_->install(std::move(rules));
  impl_->log = log;
  impl_->reload = std::move(reload);
}

MilterServer::~MilterServer() {
  if (impl_ == nullptr) {
    return;
  }
  {
    std::scoped_lock lock(impl_->connectionsMutex, impl_->workersMutex);
    if (!impl_->connections.empty() || impl_->workers > 0) {
      return;  // a thread still runs: leak the Impl rather than free it under it
    }
  }
  for (int fd : {impl_->listenFd, impl_->wakeRead, impl_->wakeWrite}) {
    if (fd >= 0) {
      ::close(fd);
    }
  }
  delete impl_;
}

bool MilterServer::open() {
  std::string error;
  const auto where = policies::parseMilterSocket(impl_->settings.socket, error);
  if (!where) {
    fmt::print(stderr, "smtpgate milter: bad socket {}: {}\n", impl_->settings.socket, error);
    return false;
  }
  if (where->family == policies::MilterSocket::Family::Unix) {
    impl_->listenFd = listenUnix(where->unixPath, error);
    impl_->unixPath = where->unixPath;
  } else {
    impl_->listenFd =
        listenTcp(where->tcp, where->family == policies::MilterSocket::Family::Inet6, error);
  }
  if (impl_->listenFd < 0) {
    fmt::print(stderr, "smtpgate milter: cannot listen on {}: {}\n", impl_->settings.socket, error);
    return false;
  }
  int pipeFds[2];
  if (::pipe2(pipeFds, O_CLOEXEC | O_NONBLOCK) != 0) {
    fmt::print(stderr, "smtpgate milter: pipe: {}\n", errnoText());
    return false;
  }
  impl_->wakeRead = pipeFds[0];
  impl_->wakeWrite = pipeFds[1];
  return true;
}

void MilterServer::blockServerSignals() {
  sigset_t set = serverSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int MilterServer::run() {
  // Blocked before any thread starts, so that only signalThread takes them.
  blockServerSignals();
  impl_->signalThread = std::thread([impl = impl_] { impl->signalLoop(); });

  fmt::print(stderr, "smtpgate milter: listening on {}, ruleset {}{}\n", impl_->settings.socket,
             impl_->current().rules->hash(), impl_->current().policy.dryRun ? ", dry-run" : "");
  const bool clean = impl_->acceptLoop();

  // Stop taking connections, then let the open ones finish.
  ::close(std::exchange(impl_->listenFd, -1));
  if (!impl_->unixPath.empty()) {
    ::unlink(impl_->unixPath.c_str());
  }
  impl_->stopping.store(true);
  {
    std::lock_guard lock(impl_->workersMutex);
    impl_->workAvailable.notify_all();  // idle threads end; busy ones end after their connection
  }
  // Wakes the signal thread if it still waits (it then sees `stopping`); a
  // no-op if it returned after a stop signal.
  pthread_kill(impl_->signalThread.native_handle(), SIGUSR2);
  impl_->signalThread.join();
  impl_->drainConnections();
  {
    std::unique_lock lock(impl_->workersMutex);
    impl_->workAvailable.notify_all();
    impl_->workerEnded.wait_for(lock, std::chrono::seconds(5), [&] { return impl_->workers == 0; });
  }
  std::size_t left = 0;
  {
    std::lock_guard lock(impl_->connectionsMutex);
    left = impl_->connections.size();
  }
  fmt::print(stderr, "smtpgate milter: stopped{}\n",
             left > 0 ? fmt::format(", {} connection(s) still open", left) : std::string());
  return clean ? 0 : 1;
}

}  // namespace smtpgate::milter
