#pragma once
/// Timed I/O — every network operation of the proxy has a deadline.
///
/// Boost 1.81 has no `cancel_after` (it came in 1.86). Racing every read and
/// write against its own timer with the `||` awaitable operator works, but
/// spawns two child coroutines and arms a kernel timer per operation: that was
/// half of the proxy's CPU per message (BENCHMARKS.md). So each connection has
/// one IoWatchdog instead: an operation only stores its expiry time; one
/// coroutine per connection sleeps until the earliest expiry it knows of,
/// and when an operation is overdue it cancels the socket's operations, which
/// then complete with timed_out. Sequential operations with the usual limits
/// move the expiry later, so the watchdog wakes at most once per limit.
///
/// Operations use `as_tuple` so errors come back as values, never as
/// exceptions on the data path. Everything of one connection — its
/// operations and its watchdog — runs on that connection's executor (one thread).

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace smtpgate::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Duration = std::chrono::steady_clock::duration;

inline constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

/// Result of a timed read or write: bytes moved, or an error (timed_out on
/// expiry). A zero-byte read with no error never happens: EOF is an error.
struct IoResult {
  boost::system::error_code error;
  std::size_t bytes = 0;
  [[nodiscard]] bool ok() const { return !error; }
  [[nodiscard]] bool timedOut() const { return error == asio::error::timed_out; }
};

/// One deadline for the operations of one connection (see the top of this file).
/// The watchdog coroutine shares the state, so destroying the IoWatchdog while
/// the coroutine is still queued is safe: it wakes, sees it is stopped, ends.
class IoWatchdog {
 public:
  using Clock = std::chrono::steady_clock;

  /// `executor` must be the connection's executor; `cancel` cancels the
  /// connection's pending operations (socket.cancel()).
  IoWatchdog(asio::any_io_executor executor, std::function<void()> cancel);
  ~IoWatchdog();
  IoWatchdog(const IoWatchdog&) = delete;
  IoWatchdog& operator=(const IoWatchdog&) = delete;

  /// The next operation must finish within `limit`.
  void arm(Duration limit);
  /// No operation pending: nothing can expire.
  void disarm();
  /// True if the last armed operation was cancelled for being overdue.
  [[nodiscard]] bool expired() const { return state_->expired; }

 private:
  struct State {
    explicit State(asio::any_io_executor executor) : timer(std::move(executor)) {}
    asio::steady_timer timer;
    Clock::time_point expiry = Clock::time_point::max();
    Clock::time_point wakeAt = Clock::time_point::max();
    std::function<void()> cancel;
    bool expired = false;
    bool stopped = false;
  };
  static asio::awaitable<void> watch(std::shared_ptr<State> state);

  std::shared_ptr<State> state_;
};

/// Runs `op` (an awaitable yielding tuple<error_code, size_t>) for at most `limit`.
template <typename Op>
asio::awaitable<IoResult> within(IoWatchdog& watchdog, Op op, Duration limit) {
  watchdog.arm(limit);
  auto [ec, n] = co_await std::move(op);
  watchdog.disarm();
  if (ec && watchdog.expired()) {
    ec = asio::error::timed_out;
  }
  co_return IoResult{ec, n};
}

/// Runs `op` (an awaitable yielding tuple<error_code>: connect, handshake) for at most `limit`.
template <typename Op>
asio::awaitable<boost::system::error_code> withinNoBytes(IoWatchdog& watchdog, Op op,
                                                         Duration limit) {
  watchdog.arm(limit);
  auto [ec] = co_await std::move(op);
  watchdog.disarm();
  if (ec && watchdog.expired()) {
    ec = asio::error::timed_out;
  }
  co_return ec;
}

template <typename Stream, typename Buffer>
asio::awaitable<IoResult> readSome(IoWatchdog& watchdog, Stream& s, Buffer buffer, Duration limit) {
  co_return co_await within(watchdog, s.async_read_some(buffer, kUseTuple), limit);
}

/// What one send(2) that must not wait takes of `bytes` (0 on any error;
/// the asynchronous write that follows reports it).
inline std::size_t sendWithoutWaiting(tcp::socket& s, std::string_view bytes) {
  ssize_t n = ::send(s.native_handle(), bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

/// Writes all of `bytes`. On a plain TCP socket it first sends what the
/// socket takes at once: replies and commands are small and the send buffer
/// is almost always free, so most writes end there, with one send(2) instead
/// of an operation through the reactor, its completion handler and another
/// poll of epoll (BENCHMARKS.md). The rest, if any, is written asynchronously.
template <typename Stream>
asio::awaitable<IoResult> writeAll(IoWatchdog& watchdog, Stream& s, std::string_view bytes,
                                   Duration limit) {
  std::size_t sent = 0;
  if constexpr (std::is_same_v<Stream, tcp::socket>) {
    sent = sendWithoutWaiting(s, bytes);
    if (sent == bytes.size()) {
      co_return IoResult{{}, sent};
    }
    bytes.remove_prefix(sent);
  }
  IoResult rest = co_await within(
      watchdog, asio::async_write(s, asio::buffer(bytes.data(), bytes.size()), kUseTuple), limit);
  rest.bytes += sent;
  co_return rest;
}

}  // namespace smtpgate::proxy
