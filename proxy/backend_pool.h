#pragma once
/// BackendPool — backend connections kept between client sessions, as
/// Postfix's SMTP client keeps its connection cache.
///
/// Without it every client session costs the backend a connection, a
/// banner, an EHLO and a QUIT: with one message per connection (most
/// senders), more backend round trips than the message itself takes. A
/// session that ends cleanly parks its backend connection here; the next
/// session on the same I/O thread takes it and hands its own client over
/// with the next transaction's XFORWARD (BackendClient::reintroduce).
/// Connections that handed their client over by XCLIENT are never kept
/// (Postfix takes XCLIENT once per connection), nor those on which the
/// backend refused anything or that carried many RSETs (Postfix counts
/// errors and junk commands per connection): BackendClient::reusable().
/// One pool per I/O thread, so no locks: a session and its backend
/// connection stay on their thread.
///
/// Bounds, so kept connections never hoard the backend's smtpd processes:
/// at most `maxIdle` idle connections; each is said QUIT after `idleTime`
/// unused (Postfix: smtp_connection_cache_time_limit = 2s) or once it is
/// older than `maxAge` when its session ends (smtp_connection_reuse_time_limit
/// = 300s). A connection the backend closed or timed out (421) while idle is
/// seen by a non-blocking peek when it is taken, and dropped.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <memory>

#include "proxy/backend_client.h"

namespace smtpgate::proxy {

struct BackendPoolLimits {
  std::size_t maxIdle = 0;  ///< in this pool; 0: no reuse, every session opens its own
  Duration idleTime = std::chrono::seconds(2);
  Duration maxAge = std::chrono::seconds(300);

  friend bool operator==(const BackendPoolLimits&, const BackendPoolLimits&) = default;
};

class BackendPool {
 public:
  BackendPool(asio::any_io_executor executor, BackendPoolLimits limits);
  BackendPool(const BackendPool&) = delete;
  BackendPool& operator=(const BackendPool&) = delete;

  /// The most recently parked connection that is still quiet and was made
  /// with `wanted` (after a reload that changed the backend, connections to
  /// the old one are said QUIT instead), or nullptr.
  std::unique_ptr<BackendClient> take(const BackendOptions& wanted);
  /// Keeps `client` for a later session, or says QUIT to it: when it cannot
  /// serve another client (BackendClient::reusable()), is too old, or the
  /// pool is full. `client` must be at a command boundary, outside a
  /// transaction.
  asio::awaitable<void> park(std::unique_ptr<BackendClient> client);
  /// Says QUIT to every kept connection (at shutdown).
  asio::awaitable<void> quitAll();

 private:
  struct Idle {
    std::unique_ptr<BackendClient> client;
    std::chrono::steady_clock::time_point since;
  };
  /// Says QUIT to connections idle for idleTime, oldest first; runs while
  /// any are parked.
  asio::awaitable<void> expire();
  /// Says QUIT to a connection made under settings no longer in force.
  static asio::awaitable<void> retire(std::unique_ptr<BackendClient> client);

  asio::any_io_executor executor_;
  BackendPoolLimits limits_;
  std::deque<Idle> idle_;  ///< oldest first; take() uses the newest
  asio::steady_timer timer_;
  bool expiring_ = false;  ///< expire() is running
};

}  // namespace smtpgate::proxy
