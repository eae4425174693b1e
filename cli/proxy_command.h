#pragma once
/// `smtpgate proxy`: run the SMTP proxy in the foreground (systemd-friendly:
/// logs to stderr, stops on SIGTERM, reloads on SIGHUP, reopens the decision
/// log on SIGUSR1). Exit 78 if the config or rules have errors, 71 if a
/// listener or the decision log can't be opened.

#include <CLI/CLI.hpp>

namespace smtpgate::cli {

void addProxyCommand(CLI::App& app, int& exitCode);

}  // namespace smtpgate::cli
