#include "proxy/server.h"

#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <csignal>
#include <thread>
#include <vector>

#include "proxy/metrics_endpoint.h"
#include "proxy/smtp_session.h"

namespace smtpgate::proxy {

namespace {

constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);
constexpr auto kDrainPoll = std::chrono::milliseconds(50);
constexpr auto kQuitLimit = std::chrono::seconds(2);

std::vector<std::unique_ptr<asio::io_context>> makeContexts(unsigned count) {
  std::vector<std::unique_ptr<asio::io_context>> out;
  for (unsigned i = 0; i < count; ++i) {
    out.push_back(std::make_unique<asio::io_context>(1));  // each is run by one thread
  }
  return out;
}

/// `socket` (of `protocol`) re-registered with `context` (closed if that fails).
tcp::socket moveToContext(tcp::socket socket, tcp protocol, asio::io_context& context) {
  boost::system::error_code ec;
  const auto fd = socket.release(ec);
  if (ec) {
    return tcp::socket(context);
  }
  tcp::socket moved(context);
  moved.assign(protocol, fd, ec);
  if (ec) {
    ::close(fd);
  }
  return moved;
}

/// One pool per context; `limits.maxIdle` is split between them.
std::vector<std::unique_ptr<BackendPool>> makePools(
    const std::vector<std::unique_ptr<asio::io_context>>& contexts, BackendPoolLimits limits) {
  const std::size_t count = contexts.size();
  limits.maxIdle = (limits.maxIdle + count - 1) / count;
  std::vector<std::unique_ptr<BackendPool>> out;
  for (const auto& context : contexts) {
    out.push_back(std::make_unique<BackendPool>(context->get_executor(), limits));
  }
  return out;
}

std::string describe(const tcp::endpoint& e) {
  return e.address().is_v6() ? "[" + e.address().to_string() + "]:" + std::to_string(e.port())
                             : e.address().to_string() + ":" + std::to_string(e.port());
}

}  // namespace

struct Server::Impl {
  Impl(ServingConfig config, policies::DecisionLog* log, ReloadFunction reload, unsigned threads)
      : context(std::move(config), log),
        threadCount(threads ? threads : std::max(1u, std::thread::hardware_concurrency())),
        openSessions(new std::atomic<int>[threadCount]()),
        ios(makeContexts(threadCount)),
        io(*ios.front()),
        pools(makePools(ios, context.current()->settings.backendReuse)),
        logFile(log),
        reloadConfig(std::move(reload)),
        signals(io, SIGTERM, SIGINT, SIGHUP),
        probeTimer(io) {
    signals.add(SIGUSR1);
    context.metrics.setRuleset(context.current()->rules->hash());
  }

  asio::awaitable<void> acceptLoop(tcp::acceptor& acceptor);
  asio::awaitable<void> signalLoop();
  void reload();
  asio::awaitable<void> probeLoop();
  asio::awaitable<void> drain();
  void spawnSession(tcp::socket socket, std::size_t contextIndex, const Peer& peer);

  /// The context the next accepted connection goes to: the one with the
  /// fewest open sessions, where the accepting one (the first) counts one
  /// session less: a session often ends a moment after its client has
  /// connected again, and one session at a time should never leave the
  /// accepting thread. Many sessions still spread evenly.
  std::size_t leastBusyContext() const {
    std::size_t best = 0;
    int bestLoad = openSessions[0].load(std::memory_order_relaxed) - 1;
    for (std::size_t i = 1; i < ios.size(); ++i) {
      const int load = openSessions[i].load(std::memory_order_relaxed);
      if (load < bestLoad) {
        best = i;
        bestLoad = load;
      }
    }
    return best;
  }

  /// What every session refers to. Declared first, so destroyed last: sessions
  /// still open past the shutdown grace end only when `ios` are destroyed.
  ProxyContext context;
  unsigned threadCount;
  /// Sessions open on each of `ios`. Declared before them: a session's
  /// coroutine, destroyed with its io_context, releases its count here.
  std::unique_ptr<std::atomic<int>[]> openSessions;
  /// One io_context per io thread; a session stays on the one it was
  /// accepted into, so its handlers never hop between threads.
  std::vector<std::unique_ptr<asio::io_context>> ios;
  /// The first of them, which also runs the listeners, signals, the metrics
  /// endpoint and the backend probe.
  asio::io_context& io;
  /// Kept backend connections, one pool per context of `ios`; destroyed
  /// before them (their sockets and timers belong to those contexts).
  std::vector<std::unique_ptr<BackendPool>> pools;
  policies::DecisionLog* logFile;
  ReloadFunction reloadConfig;
  asio::signal_set signals;
  /// The wait between backend probes; cancelled to probe at once.
  asio::steady_timer probeTimer;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::vector<std::unique_ptr<tcp::acceptor>> metricsAcceptors;
  bool stopping = false;
};

void Server::Impl::spawnSession(tcp::socket socket, std::size_t contextIndex, const Peer& peer) {
  auto session =
      std::make_shared<SmtpSession>(std::move(socket), context, *pools[contextIndex], peer);
  std::atomic<int>& open = openSessions[contextIndex];
  open.fetch_add(1, std::memory_order_relaxed);
  struct Release {
    std::atomic<int>& open;
    ~Release() { open.fetch_sub(1, std::memory_order_relaxed); }
  };
  asio::co_spawn(
      session->executor(),
      [session, &open]() -> asio::awaitable<void> {
        Release release{open};
        co_await session->run();
      },
      asio::detached);
}

asio::awaitable<void> Server::Impl::acceptLoop(tcp::acceptor& acceptor) {
  // The peer's address comes with accept() and the local port is the
  // listener's: no getpeername/getsockname per connection.
  Peer peer;
  boost::system::error_code ignored;
  peer.localPort = acceptor.local_endpoint(ignored).port();
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(peer.remote, kUseTuple);
    if (ec == asio::error::operation_aborted || stopping) {
      co_return;
    }
    if (ec) {
      // EMFILE and friends: back off instead of spinning on the error.
      asio::steady_timer backoff(io, kAcceptBackoff);
      co_await backoff.async_wait(kUseTuple);
      continue;
    }
    // Chosen now, not before the wait: the previous session has had its
    // chance to end.
    const std::size_t target = leastBusyContext();
    if (target != 0) {
      socket = moveToContext(std::move(socket), peer.remote.protocol(), *ios[target]);
      if (!socket.is_open()) {
        continue;
      }
    }
    spawnSession(std::move(socket), target, peer);
  }
}

asio::awaitable<void> Server::Impl::drain() {
  auto deadline = std::chrono::steady_clock::now() + context.current()->settings.shutdownGrace;
  asio::steady_timer poll(io);
  while (context.metrics.sessionsOpen() > 0 && std::chrono::steady_clock::now() < deadline) {
    poll.expires_after(kDrainPoll);
    co_await poll.async_wait(kUseTuple);
  }
  // Kept backend connections get their QUIT (Postfix would log each as a
  // lost connection), each pool on its own thread, for at most kQuitLimit.
  using namespace asio::experimental::awaitable_operators;
  for (std::size_t i = 0; i < ios.size(); ++i) {
    asio::steady_timer limit(io, kQuitLimit);
    co_await (asio::co_spawn(*ios[i], pools[i]->quitAll(), asio::use_awaitable) ||
              limit.async_wait(kUseTuple));
  }
  for (auto& context : ios) {
    context->stop();  // sessions still open past the grace are cancelled
  }
}

asio::awaitable<void> Server::Impl::signalLoop() {
  for (;;) {
    auto [ec, signo] = co_await signals.async_wait(kUseTuple);
    if (ec) {
      co_return;
    }
    if (signo == SIGHUP) {
      reload();
      continue;
    }
    if (signo == SIGUSR1) {
      if (logFile != nullptr) {
        logFile->requestReopen();
      }
      continue;
    }
    fmt::print(stderr, "smtpgate: stopping, {} session(s) open\n", context.metrics.sessionsOpen());
    stopping = true;
    for (auto& a : acceptors) {
      boost::system::error_code ignored;
      a->close(ignored);
    }
    for (auto& a : metricsAcceptors) {
      boost::system::error_code ignored;
      a->close(ignored);
    }
    co_await drain();
    co_return;
  }
}

void Server::Impl::reload() {
  std::optional<ServingConfig> fresh = reloadConfig ? reloadConfig() : std::nullopt;
  if (!fresh) {
    context.metrics.rulesLoaded(false, {});
    fmt::print(stderr, "smtpgate: reload failed, keeping the current config and rules\n");
    return;
  }
  const ServingConfigPtr running = context.current();
  for (const std::string& key : keepStartOnlySettings(running->settings, fresh->settings)) {
    fmt::print(stderr, "smtpgate: reload: {} changed; it takes a restart to apply\n", key);
  }
  const bool backendChanged = !(fresh->settings.backend == running->settings.backend);
  const std::string hash = fresh->rules->hash();
  context.install(std::move(*fresh));
  context.metrics.rulesLoaded(true, hash);
  fmt::print(stderr, "smtpgate: reloaded the config and rules, ruleset {}\n", hash);
  if (backendChanged) {
    probeTimer.cancel();  // learn the new backend's capabilities now
  }
}

asio::awaitable<void> Server::Impl::probeLoop() {
  while (!stopping) {
    // The probe's socket, its watchdog and this loop share one strand.
    const ServingConfigPtr config = context.current();
    BackendClient probe(co_await asio::this_coro::executor, config->settings.backend);
    auto caps = co_await probe.probe();
    if (!(context.current()->settings.backend == config->settings.backend)) {
      continue;  // a reload changed the backend meanwhile: probe the new one now
    }
    if (caps) {
      context.learnBackend(config->settings.backend, std::move(caps), probe.xclientOffer());
    } else {
      fmt::print(stderr, "smtpgate: backend probe failed: {}\n", probe.lastError());
    }
    probeTimer.expires_after(config->settings.backendProbeInterval);
    co_await probeTimer.async_wait(kUseTuple);
  }
}

Server::Server(ServingConfig config, policies::DecisionLog* log, ReloadFunction reload,
               unsigned threads)
    : impl_(std::make_unique<Impl>(std::move(config), log, std::move(reload), threads)) {}

Server::~Server() = default;

namespace {

/// The addresses `hp` names: its IP address, or every address of its host
/// name ("localhost" is ::1 and 127.0.0.1); empty, with the reason on stderr,
/// if the name does not resolve.
std::vector<tcp::endpoint> listenEndpoints(asio::io_context& io, const policies::HostPort& hp) {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(hp.host, ec);
  if (!ec) {
    return {tcp::endpoint(address, hp.port)};
  }
  tcp::resolver resolver(io);
  auto results = resolver.resolve(hp.host, std::to_string(hp.port), ec);
  if (ec) {
    fmt::print(stderr, "smtpgate: cannot listen on {}: {}\n", hp.host, ec.message());
    return {};
  }
  std::vector<tcp::endpoint> out;
  for (const auto& entry : results) {
    if (std::find(out.begin(), out.end(), entry.endpoint()) == out.end()) {
      out.push_back(entry.endpoint());
    }
  }
  return out;
}

/// A listening acceptor on `endpoint`, or nullptr (with the reason on stderr).
std::unique_ptr<tcp::acceptor> listenOn(asio::io_context& io, const tcp::endpoint& endpoint,
                                        std::string_view what) {
  boost::system::error_code ec;
  auto acceptor = std::make_unique<tcp::acceptor>(io);
  acceptor->open(endpoint.protocol(), ec);
  if (!ec && endpoint.address().is_v6()) {
    acceptor->set_option(asio::ip::v6_only(true), ec);
  }
  acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) {
    // Accepted sockets inherit it (Linux): commands and replies are small
    // and interactive, and Nagle would add 40 ms per round trip.
    boost::system::error_code ignored;
    acceptor->set_option(tcp::no_delay(true), ignored);
  }
  if (!ec) {
    acceptor->bind(endpoint, ec);
  }
  if (!ec) {
    acceptor->listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    fmt::print(stderr, "smtpgate: cannot listen on {}: {}\n", describe(endpoint), ec.message());
    return nullptr;
  }
  fmt::print(stderr, "smtpgate: {} on {}\n", what, describe(acceptor->local_endpoint()));
  return acceptor;
}

/// Acceptors on every address of `hp`, appended to `out`; false if any fails.
bool listenOnAll(asio::io_context& io, const policies::HostPort& hp, std::string_view what,
                 std::vector<std::unique_ptr<tcp::acceptor>>& out) {
  const std::vector<tcp::endpoint> endpoints = listenEndpoints(io, hp);
  for (const tcp::endpoint& endpoint : endpoints) {
    auto acceptor = listenOn(io, endpoint, what);
    if (!acceptor) {
      return false;
    }
    out.push_back(std::move(acceptor));
  }
  return !endpoints.empty();
}

}  // namespace

bool Server::bind() {
  const ServingConfigPtr config = impl_->context.current();
  for (const auto& hp : config->settings.listen) {
    if (!listenOnAll(impl_->io, hp, "listening", impl_->acceptors)) {
      return false;
    }
  }
  if (const auto& metrics = config->settings.metricsListen) {
    if (!listenOnAll(impl_->io, *metrics, "metrics", impl_->metricsAcceptors)) {
      return false;
    }
  }
  return !impl_->acceptors.empty();
}

std::vector<tcp::endpoint> Server::endpoints() const {
  std::vector<tcp::endpoint> out;
  for (const auto& a : impl_->acceptors) {
    out.push_back(a->local_endpoint());
  }
  return out;
}

int Server::run() {
  for (auto& a : impl_->acceptors) {
    asio::co_spawn(impl_->io, impl_->acceptLoop(*a), asio::detached);
  }
  asio::co_spawn(impl_->io, impl_->signalLoop(), asio::detached);
  for (auto& a : impl_->metricsAcceptors) {
    auto render = [this] { return impl_->context.metrics.render(SMTPGATE_VERSION); };
    asio::co_spawn(asio::make_strand(impl_->io), serveMetrics(*a, render), asio::detached);
  }
  asio::co_spawn(asio::make_strand(impl_->io), impl_->probeLoop(), asio::detached);
  const BackendOptions& backend = impl_->context.current()->settings.backend;
  fmt::print(stderr, "smtpgate: proxy ready, backend {}:{}, {} thread(s)\n", backend.host,
             backend.port, impl_->threadCount);
  // The other contexts have no work until a session arrives: keep them
  // running until drain() stops them.
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> keepRunning;
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < impl_->ios.size(); ++i) {
    keepRunning.push_back(asio::make_work_guard(*impl_->ios[i]));
    threads.emplace_back([context = impl_->ios[i].get()] { context->run(); });
  }
  impl_->io.run();
  for (auto& context : impl_->ios) {
    context->stop();  // io.run() returns only after drain() stopped them all
  }
  for (auto& t : threads) {
    t.join();
  }
  return 0;
}

}  // namespace smtpgate::proxy
