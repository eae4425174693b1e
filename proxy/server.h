#pragma once
/// Server — the proxy process: listeners, io threads, signals, reload.
///
/// Binds every `[proxy] listen` address (IPv4 and IPv6; port 0 picks a free
/// port, reported on stderr as "listening on ADDR:PORT"), runs one
/// io_context per io thread (`threads`, default: the number of cores) and
/// hands accepted connections to them in turn, each with its SmtpSession. A
/// session's handlers all run on its context's one thread: no strand, no
/// wake-up of another thread between a read and the reply (with one shared
/// io_context a 1-session run spent about 0.5 ms of CPU per message on those
/// hand-offs; BENCHMARKS.md "SMTP proxy"). Accept errors back
/// off 100 ms instead of spinning (STYLE.md G8).
///
/// Signals: SIGTERM/SIGINT stop accepting and let open sessions finish up to
/// the shutdown grace, then cancel them; SIGHUP calls the reload function and
/// puts the new ServingConfig (settings, rules, TLS certificate) in force for
/// new sessions only if it loaded without errors (the old one stays
/// otherwise, and the diagnostics go to stderr); settings that need a
/// restart (keepStartOnlySettings) keep their running values, with a
/// warning. SIGUSR1 reopens the decision log (logrotate). The backend's EHLO
/// capabilities are probed at start-up, every `backendProbeInterval`, and at
/// once after a reload that changed the backend.

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include <boost/asio/ssl/context.hpp>

#include "proxy/proxy_context.h"

namespace smtpgate::proxy {

/// Loads the config and rules anew; nullopt (with the reasons already
/// reported) when anything in them is wrong.
using ReloadFunction = std::function<std::optional<ServingConfig>()>;

class Server {
 public:
  Server(ServingConfig config, policies::DecisionLog* log, ReloadFunction reload,
         unsigned threads = 0);
  ~Server();

  /// Binds the listeners; false (with a message on stderr) if one can't be bound.
  bool bind();
  /// Serves until SIGTERM/SIGINT; returns the process exit code.
  int run();
  /// The addresses actually bound (port 0 resolved).
  [[nodiscard]] std::vector<tcp::endpoint> endpoints() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace smtpgate::proxy
