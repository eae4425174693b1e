#include "tests/support/process.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace smtpgate::testing {
namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(10);

std::string errnoText(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

/// Everything between fork and exec: only async-signal-safe calls. Never returns.
/// `stdinFd`/`outFd` become fds 0 and 1+2; `errFd` reports an exec failure.
[[noreturn]] void execChild(char* const* argv, int stdinFd, int outFd, int errFd, pid_t parent) {
  ::setpgid(0, 0);
  // If the test binary dies without running destructors (crash, ctest's
  // timeout kill), take the child along. Linux clears this on exec of a
  // set-uid program and on a credential change (smtp-sink -u).
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) {
    ::_exit(127);  // the parent died before prctl took effect
  }
  // Undo what the test process may have changed: an ignored SIGPIPE or a
  // blocked signal would survive exec and change how the program behaves.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD}) {
    ::sigaction(sig, &dfl, nullptr);
  }
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (::dup2(stdinFd, 0) < 0 || ::dup2(outFd, 1) < 0 || ::dup2(outFd, 2) < 0) {
    int err = errno;
    (void)!::write(errFd, &err, sizeof err);
    ::_exit(127);
  }
  // Keep no test-process descriptor (sockets, other children's pipes) alive in
  // a daemon that may outlive this test; errFd is close-on-exec.
  if (errFd > 3) {
    ::close_range(3, errFd - 1, 0);
  }
  ::close_range(errFd + 1, ~0U, 0);
  ::execvp(argv[0], argv);
  int err = errno;
  (void)!::write(errFd, &err, sizeof err);
  ::_exit(127);
}

std::vector<char*> argvPointers(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const auto& arg : argv) {
    out.push_back(const_cast<char*>(arg.c_str()));
  }
  out.push_back(nullptr);
  return out;
}

/// Forks `argv` with the given stdin/stdout fds; throws if exec fails.
pid_t spawn(const std::vector<std::string>& argv, int stdinFd, int outFd) {
  if (argv.empty()) {
    throw std::runtime_error("spawn: empty argv");
  }
  auto ptrs = argvPointers(argv);
  int errPipe[2];
  if (::pipe2(errPipe, O_CLOEXEC) < 0) {
    throw std::runtime_error(errnoText("pipe2"));
  }
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(errPipe[0]);
    ::close(errPipe[1]);
    throw std::runtime_error(errnoText("fork"));
  }
  if (pid == 0) {
    ::close(errPipe[0]);
    execChild(ptrs.data(), stdinFd, outFd, errPipe[1], parent);
  }
  ::setpgid(pid, pid);  // also here, so a kill(-pid) right after start() cannot miss
  ::close(errPipe[1]);
  int childErrno = 0;
  ssize_t n;
  do {
    n = ::read(errPipe[0], &childErrno, sizeof childErrno);
  } while (n < 0 && errno == EINTR);
  ::close(errPipe[0]);
  if (n > 0) {
    ::waitpid(pid, nullptr, 0);
    throw std::runtime_error("cannot execute " + argv[0] + ": " + std::strerror(childErrno));
  }
  return pid;
}

/// True once `pid` has exited, without reaping it: while the zombie exists its
/// pid (and so its process group id) cannot be reused by another process.
bool hasExited(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

int reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

/// The parent's ends of a command's pipes: feeds its stdin, collects its output.
class CommandPipes {
 public:
  CommandPipes(int outFd, int inFd, const std::string& input)
      : outFd_(outFd), inFd_(inFd), input_(input) {
    ::fcntl(outFd_, F_SETFL, O_NONBLOCK);
    ::fcntl(inFd_, F_SETFL, O_NONBLOCK);
    if (!input_.empty()) {
      ::signal(SIGPIPE, SIG_IGN);  // a command that exits early must not kill the test
    }
  }
  ~CommandPipes() {
    ::close(outFd_);
    closeInput();
  }
  CommandPipes(const CommandPipes&) = delete;
  CommandPipes& operator=(const CommandPipes&) = delete;

  /// Waits up to one poll interval, then moves what it can in both directions.
  void pump() {
    if (written_ == input_.size()) {
      closeInput();  // EOF on stdin once everything is written
    }
    pollfd fds[2] = {{outFd_, POLLIN, 0}, {inFd_, POLLOUT, 0}};
    ::poll(fds, inFd_ >= 0 ? 2 : 1, static_cast<int>(kPollInterval.count()));
    readAvailable();
    if (inFd_ < 0 || (fds[1].revents & (POLLOUT | POLLERR | POLLHUP)) == 0) {
      return;
    }
    ssize_t n = ::write(inFd_, input_.data() + written_, input_.size() - written_);
    if (n > 0) {
      written_ += static_cast<std::size_t>(n);
    } else if (errno != EAGAIN && errno != EINTR) {
      written_ = input_.size();  // the reader is gone: stop feeding it
    }
  }

  /// Everything the command wrote, including what is still in the pipe.
  std::string drain() {
    readAvailable();
    return std::move(output_);
  }

 private:
  void readAvailable() {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(outFd_, buf, sizeof buf)) > 0) {
      output_.append(buf, static_cast<std::size_t>(n));
    }
  }
  void closeInput() {
    if (inFd_ >= 0) {
      ::close(inFd_);
      inFd_ = -1;
    }
  }

  int outFd_;
  int inFd_;
  const std::string& input_;
  std::size_t written_ = 0;
  std::string output_;
};

int openOrThrow(const std::string& path, int flags, mode_t mode = 0644) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) {
    throw std::runtime_error(errnoText("open " + path));
  }
  return fd;
}

bool tryConnect(const std::string& host, std::uint16_t port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) {
    return false;
  }
  bool ok = false;
  for (addrinfo* ai = res; ai != nullptr && !ok; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd >= 0) {
      ok = ::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0;
      ::close(fd);
    }
  }
  ::freeaddrinfo(res);
  return ok;
}

/// inode -> port for the LISTEN sockets in one /proc/net/tcp{,6} table.
void addListeningInodes(const std::string& table, std::map<std::string, std::uint16_t>& out) {
  std::istringstream in(readFile(table));
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues, timer, retransmit, uid, timeout, inode;
    fields >> slot >> local >> remote >> state >> queues >> timer >> retransmit >> uid >> timeout >>
        inode;
    auto colon = local.rfind(':');
    if (state != "0A" || colon == std::string::npos || inode.empty()) {
      continue;  // 0A is TCP_LISTEN
    }
    out[inode] = static_cast<std::uint16_t>(std::stoul(local.substr(colon + 1), nullptr, 16));
  }
}

}  // namespace

int exitCodeOf(int status) {
  if (WIFEXITED(status)) {
    return WEXITSTATUS(status);
  }
  if (WIFSIGNALED(status)) {
    return 128 + WTERMSIG(status);
  }
  return -1;
}

ChildProcess::ChildProcess(std::vector<std::string> argv, std::string logPath)
    : argv_(std::move(argv)), logPath_(std::move(logPath)) {}

ChildProcess::~ChildProcess() {
  stop();
}

void ChildProcess::start() {
  if (pid_ > 0) {
    throw std::runtime_error("ChildProcess::start: " + argv_.at(0) + " already started");
  }
  int logFd = openOrThrow(logPath_, O_WRONLY | O_CREAT | O_APPEND);
  int nullFd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  try {
    pid_ = spawn(argv_, nullFd, logFd);
  } catch (...) {
    ::close(logFd);
    ::close(nullFd);
    throw;
  }
  ::close(logFd);
  ::close(nullFd);
}

bool ChildProcess::running() {
  return pid_ > 0 && !status_ && !wait(Clock::now()).has_value();
}

std::optional<int> ChildProcess::wait(Deadline deadline) {
  if (pid_ <= 0 || status_) {
    return status_;
  }
  while (!hasExited(pid_)) {
    if (Clock::now() >= deadline) {
      return std::nullopt;
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  // The leader is gone; anything it left in its group goes too, before the
  // reap frees the group id.
  ::kill(-pid_, SIGKILL);
  status_ = reap(pid_);
  return status_;
}

std::optional<int> ChildProcess::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0 || status_) {
    return status_;
  }
  ::kill(-pid_, SIGTERM);
  if (auto status = wait(deadlineIn(grace))) {
    return status;
  }
  ::kill(-pid_, SIGKILL);
  status_ = reap(pid_);
  return status_;
}

std::string ChildProcess::log() const {
  return readFile(logPath_);
}

CommandResult runCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                         const std::string& stdinData) {
  int out[2];
  int in[2];
  if (::pipe2(out, O_CLOEXEC) < 0) {
    throw std::runtime_error(errnoText("pipe2"));
  }
  if (::pipe2(in, O_CLOEXEC) < 0) {
    ::close(out[0]);
    ::close(out[1]);
    throw std::runtime_error(errnoText("pipe2"));
  }
  CommandPipes pipes(out[0], in[1], stdinData);
  pid_t pid;
  try {
    pid = spawn(argv, in[0], out[1]);
  } catch (...) {
    ::close(out[1]);
    ::close(in[0]);
    throw;
  }
  ::close(out[1]);
  ::close(in[0]);

  CommandResult result;
  auto deadline = deadlineIn(timeout);
  // Until the command itself exits — not until EOF on the pipe, which a
  // daemon it started could hold open.
  while (!hasExited(pid)) {
    if (Clock::now() >= deadline) {
      result.timedOut = true;
      break;
    }
    pipes.pump();
  }
  ::kill(-pid, SIGKILL);  // leftovers of its group (not daemons: they setsid())
  int status = reap(pid);
  result.output = pipes.drain();
  result.exitCode = result.timedOut ? -1 : exitCodeOf(status);
  return result;
}

std::uint16_t freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw std::runtime_error(errnoText("socket"));
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) {
    ::close(fd);
    throw std::runtime_error(errnoText("bind 127.0.0.1:0"));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool waitForPort(const std::string& host, std::uint16_t port, Deadline deadline) {
  return waitFor([&] { return tryConnect(host, port); }, deadline);
}

bool waitFor(const std::function<bool()>& condition, Deadline deadline) {
  for (;;) {
    if (condition()) {
      return true;
    }
    auto now = Clock::now();
    if (now >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(kPollInterval, deadline - now));
  }
}

std::vector<std::uint16_t> listeningTcpPorts(pid_t pid) {
  std::map<std::string, std::uint16_t> listening;
  addListeningInodes("/proc/net/tcp", listening);
  addListeningInodes("/proc/net/tcp6", listening);

  std::map<int, std::uint16_t> byFd;
  std::string fdDir = "/proc/" + std::to_string(pid) + "/fd";
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(fdDir, ec)) {
    std::string target = std::filesystem::read_symlink(entry.path(), ec).string();
    // "socket:[12345]"
    if (ec || target.rfind("socket:[", 0) != 0 || target.back() != ']') {
      continue;
    }
    auto it = listening.find(target.substr(8, target.size() - 9));
    if (it != listening.end()) {
      byFd[std::stoi(entry.path().filename().string())] = it->second;
    }
  }
  std::vector<std::uint16_t> ports;
  for (const auto& [fd, port] : byFd) {
    ports.push_back(port);
  }
  return ports;
}

bool processAlive(pid_t pid, const std::string& expectedName) {
  if (pid <= 0) {
    return false;
  }
  // "PID (comm) S ...": comm may contain spaces and parentheses, the state
  // follows the last ')'.
  std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  auto open = stat.find('(');
  auto close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close + 2 >= stat.size()) {
    return false;
  }
  char state = stat[close + 2];
  if (state == 'Z' || state == 'X') {
    return false;
  }
  return expectedName.empty() || stat.substr(open + 1, close - open - 1) == expectedName;
}

std::string readFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ESRCH) {
      return {};
    }
    throw std::runtime_error(errnoText("open " + path));
  }
  std::string contents;
  char buf[8192];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) {
      contents.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return contents;
}

void writeFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  out.close();
  if (!out) {
    throw std::runtime_error("cannot write " + path);
  }
}

TempDir::TempDir(const std::string& prefix, mode_t mode) {
  const char* base = std::getenv("TMPDIR");
  std::string pattern =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/" + prefix + "-XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    throw std::runtime_error(errnoText("mkdtemp " + pattern));
  }
  path_ = buf.data();
  ::chmod(path_.c_str(), mode);
}

TempDir::~TempDir() {
  const char* keep = std::getenv("SMTPGATE_KEEP_TEST_DIRS");
  if (keep != nullptr && std::string(keep) == "1") {
    std::fprintf(stderr, "SMTPGATE_KEEP_TEST_DIRS=1: kept %s\n", path_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace smtpgate::testing
