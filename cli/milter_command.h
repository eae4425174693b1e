#pragma once
/// `smtpgate milter`: run the Postfix milter in the foreground (systemd-
/// friendly: logs to stderr). Postfix reaches it at `[milter] socket`.
/// Signals (see milter/milter_server.h), as for the proxy: SIGHUP (or
/// SIGUSR2) reloads the rules, SIGUSR1 reopens the decision log, SIGTERM or
/// SIGINT stop it after open connections finish. Exit 78 if the config or
/// rules have errors, 71 if the socket or the decision log can't be opened.

#include <CLI/CLI.hpp>

namespace smtpgate::cli {

void addMilterCommand(CLI::App& app, int& exitCode);

}  // namespace smtpgate::cli
