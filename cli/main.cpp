// smtpgate: one executable, one subcommand per job (DESIGN.md "One executable").
#include <CLI/CLI.hpp>

#include "cli/check_command.h"
#include "cli/exit_codes.h"
#include "cli/lint_command.h"
#include "cli/log_command.h"
#include "cli/milter_command.h"
#include "cli/proxy_command.h"
#include "cli/replay_command.h"
#include "cli/report_command.h"

int main(int argc, char** argv) {
  CLI::App app{"smtpgate: a spam-filtering gate for Postfix (SMTP proxy and milter)"};
  app.set_version_flag("--version", std::string("smtpgate ") + SMTPGATE_VERSION);
  app.require_subcommand(1);
  int exitCode = smtpgate::cli::kExitAccept;
  smtpgate::cli::addLintCommand(app, exitCode);
  smtpgate::cli::addCheckCommand(app, exitCode);
  smtpgate::cli::addLogCommand(app, exitCode);
  smtpgate::cli::addReportCommand(app, exitCode);
  smtpgate::cli::addReplayCommand(app, exitCode);
  smtpgate::cli::addProxyCommand(app, exitCode);
  smtpgate::cli::addMilterCommand(app, exitCode);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : smtpgate::cli::kExitUsage;
  }
  return exitCode;
}
