#pragma once
/// process — the process and file plumbing under every integration test: start
/// a real program (smtp-sink, Postfix, swaks, later smtpgate itself), wait on a
/// condition with a deadline, read what it wrote, and leave nothing behind.
///
/// Cleanup contract:
///  * ChildProcess puts the child in its own process group and, in stop() or
///    the destructor, sends SIGTERM to that group, then SIGKILL once the grace
///    period is over, and reaps the child. Only that group is signalled — never
///    a process chosen by name, because other tests run the same programs.
///  * runCommand() kills its command's group when the timeout expires.
///  * Children also get PR_SET_PDEATHSIG=SIGKILL, so a test binary that dies
///    without unwinding does not leave them running. That signal fires when
///    the *thread* that started them exits: start children from the test's
///    own thread, not from a short-lived helper thread.
///  * TempDir removes its tree on destruction, unless the environment has
///    SMTPGATE_KEEP_TEST_DIRS=1 (then it prints the path to stderr and keeps it).
///
/// Waiting: every wait takes a Deadline and polls its condition every few
/// milliseconds (STYLE.md G14: wait on conditions, never sleep-and-hope).
/// Nothing here sleeps for a fixed time and assumes the world has moved on.
///
/// Ports: prefer letting the program bind port 0 and reading the port back with
/// listeningTcpPorts(pid) — no window in which another process can take it.
/// freePort() (bind 127.0.0.1:0, read, close) is for programs that cannot.
///
/// Threading: no shared state; every function may be called from any thread.
/// Errors of the harness itself (fork failed, program missing) throw
/// std::runtime_error with a message naming the program and the log file.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace smtpgate::testing {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

/// The deadline `timeout` from now.
inline Deadline deadlineIn(std::chrono::milliseconds timeout) {
  return Clock::now() + timeout;
}

/// A program started with fork/exec, its stdout and stderr appended to a log file.
/// A wait status as a shell would report it: the exit code, or 128 + the
/// signal that killed the process.
int exitCodeOf(int status);

class ChildProcess {
 public:
  /// `argv[0]` is the program (a path, or a name looked up in PATH).
  ChildProcess(std::vector<std::string> argv, std::string logPath);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  /// Forks and execs. Throws if the program cannot be executed (the exec error
  /// travels back over a close-on-exec pipe, so a missing binary fails here and
  /// not as a mysterious timeout later).
  void start();
  /// True while the child has not exited (reaps it if it has).
  bool running();
  /// SIGTERM to the process group, SIGKILL after `grace`, then reap. Returns the
  /// wait status, or nullopt if the child was never started or already reaped.
  std::optional<int> stop(std::chrono::milliseconds grace = std::chrono::seconds(5));
  /// Waits for the child to exit on its own; nullopt if the deadline passed.
  std::optional<int> wait(Deadline deadline);

  pid_t pid() const { return pid_; }
  const std::string& logPath() const { return logPath_; }
  /// The log written so far (stdout and stderr interleaved).
  std::string log() const;

 private:
  std::vector<std::string> argv_;
  std::string logPath_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

/// What runCommand() saw.
struct CommandResult {
  int exitCode = -1;  ///< exit status; 128+signal if killed; -1 on timeout
  bool timedOut = false;
  std::string output;  ///< stdout and stderr interleaved
};

/// Runs `argv` to completion with `stdinData` on its standard input, capturing
/// its output; kills its process group if it runs past `timeout`. Returns when
/// the command exits, even if a daemon it started keeps the output pipe open
/// (`postfix start` does not, but this does not rely on it).
CommandResult runCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                         const std::string& stdinData = {});

/// A port that was free on 127.0.0.1 a moment ago (bind port 0, read, close).
std::uint16_t freePort();

/// Tries to connect to host:port until it succeeds or the deadline passes.
bool waitForPort(const std::string& host, std::uint16_t port, Deadline deadline);

/// Polls `condition` every few milliseconds until it is true or the deadline passes;
/// returns its last value.
bool waitFor(const std::function<bool()>& condition, Deadline deadline);

/// The TCP ports `pid` is listening on, IPv4 and IPv6, in the order of the
/// file descriptors that hold them (from /proc/PID/fd and /proc/net/tcp{,6}).
std::vector<std::uint16_t> listeningTcpPorts(pid_t pid);

/// True if `pid` exists and is not a zombie. With `expectedName`, also checks
/// /proc/PID/comm, so a recycled pid is not mistaken for the program.
bool processAlive(pid_t pid, const std::string& expectedName = {});

/// The whole file; an empty string if it does not exist (yet). Throws on other errors.
std::string readFile(const std::string& path);
/// Creates or truncates `path` and writes `contents`. Throws on error.
void writeFile(const std::string& path, const std::string& contents);

/// A fresh directory from mkdtemp under $TMPDIR (or /tmp), removed with all its
/// contents on destruction unless SMTPGATE_KEEP_TEST_DIRS=1.
class TempDir {
 public:
  /// `mode` is applied after creation: 0755 for trees that unprivileged daemons
  /// (Postfix's `postfix` user, smtp-sink's `nobody`) must traverse.
  explicit TempDir(const std::string& prefix = "smtpgate-test", mode_t mode = 0700);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  /// path() + "/" + name.
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace smtpgate::testing
