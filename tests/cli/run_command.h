#pragma once
/// Running the real smtpgate binary (or any shell command) from the CLI
/// tests: the exit status and what it printed.

#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>

namespace smtpgate::testing {

struct CommandOutput {
  int exitCode = -1;
  std::string out;  ///< stdout (and stderr when the command redirects it)
};

/// `s` single-quoted for /bin/sh.
inline std::string shellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  }
  return out + "'";
}

/// Runs `command` with /bin/sh and collects its standard output.
inline CommandOutput runShell(const std::string& command) {
  CommandOutput r;
  FILE* p = ::popen(command.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[65536];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
    r.out.append(buf, n);
  }
  const int status = ::pclose(p);
  r.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

/// Runs `smtpgate ARGS`; stderr joins stdout when `withStderr`, else is dropped.
inline CommandOutput runSmtpgate(const std::string& args, bool withStderr = true) {
  return runShell(shellQuote(SMTPGATE_BINARY) + " " + args +
                  (withStderr ? " 2>&1" : " 2>/dev/null"));
}

}  // namespace smtpgate::testing
