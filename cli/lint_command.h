#pragma once
/// `smtpgate lint`: check config, every rule file and list file; report
/// every problem as file:line:col with the source line and a caret.
/// Exit 0 when clean (warnings allowed), 1 on any error. `--strict` adds the
/// checks of rules/strict_lint.h and makes any warning exit 1 too.

#include <CLI/CLI.hpp>

namespace smtpgate::cli {

void addLintCommand(CLI::App& app, int& exitCode);

}  // namespace smtpgate::cli
