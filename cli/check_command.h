#pragma once
/// `smtpgate check`: evaluate one transaction offline, stage by stage, with
/// the same Policy the proxy and milter use. Prints the facts each stage's
/// rules read, every rule's result, and each verdict; `--json` prints the
/// same as one object. Exit 0 accept, 1 reject, 2 tempfail, 64+ usage or
/// config errors (cli/exit_codes.h).
///
/// Stages run as far as the input goes: connect always; helo with --helo;
/// mail with --from (--from "" is the null sender); rcpt once per --rcpt;
/// data when a message file is given ("-" reads stdin).

#include <CLI/CLI.hpp>

namespace smtpgate::cli {

void addCheckCommand(CLI::App& app, int& exitCode);

}  // namespace smtpgate::cli
