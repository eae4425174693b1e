#include "cli/milter_command.h"

#include <fmt/core.h>

#include <csignal>

#include "cli/daemon_memory.h"
#include "cli/exit_codes.h"
#include "cli/loaded_config.h"
#include "cli/systemd_notify.h"
#include "milter/milter_server.h"

namespace smtpgate::cli {

namespace {

struct MilterOptions {
  std::string config;
  std::string socket;  ///< overrides [milter] socket
};

int runMilter(const MilterOptions& options) {
  keepMessageMemory();
  // Before the DNS resolver starts its threads: a thread without the mask
  // would take SIGHUP or SIGUSR2 with its default action and end the process.
  milter::MilterServer::blockServerSignals();
  rules::Diagnostics diags;
  // The milter serves each connection on a thread of its own, so a DNS
  // lookup may block there: the milter gets the resolver directly.
  auto loaded = loadConfigAndRules(options.config, diags, {.enabled = true});
  printDiagnostics(diags);
  if (!loaded || !loaded->rules) {
    fmt::print(stderr, "smtpgate milter: fix the errors above first (smtpgate lint)\n");
    return kExitConfig;
  }
  milter::MilterSettings settings;
  settings.socket = options.socket.empty() ? loaded->config.milter.socket : options.socket;
  std::string error;
  if (!options.socket.empty() && !policies::parseMilterSocket(settings.socket, error)) {
    fmt::print(stderr, "smtpgate milter: --socket {}: {}\n", settings.socket, error);
    return kExitUsage;
  }
  settings.shutdownGrace = loaded->config.proxy.shutdownGrace;
  auto log = openDecisionLog(loaded->config, "smtpgate milter");
  if (!log) {
    return kExitOsError;
  }
  auto watch = startFileWatch(*loaded, SIGUSR2, "smtpgate milter");  // signals blocked above
  // The rules and what the Policy is told ([rules] mode, [dns], [auth],
  // [dkim]); the socket and the shutdown grace are read at start only.
  auto reload = [reloadConfig = reloaderFor(options.config,
                                            watch.get())]() -> std::optional<milter::MilterRules> {
    std::optional<LoadedConfig> fresh = reloadConfig();
    if (!fresh) {
      return std::nullopt;
    }
    return milter::MilterRules{fresh->rules, policyOptionsFor(*fresh, "milter")};
  };
  milter::MilterServer server(
      std::move(settings), {loaded->rules, policyOptionsFor(*loaded, "milter")}, log.get(), reload);
  if (!server.open()) {
    return kExitOsError;
  }
  notifyReady();
  int rc = server.run();
  return rc == 0 ? kExitAccept : kExitOsError;
}

}  // namespace

void addMilterCommand(CLI::App& app, int& exitCode) {
  auto options = std::make_shared<MilterOptions>();
  CLI::App* cmd = app.add_subcommand("milter", "Run the Postfix milter (smtpd_milters)");
  cmd->add_option("-c,--config", options->config, "Config file");
  cmd->add_option("--socket", options->socket,
                  "Listen here instead of [milter] socket (inet:PORT@HOST or unix:/path)");
  cmd->callback([options, &exitCode] { exitCode = runMilter(*options); });
}

}  // namespace smtpgate::cli
