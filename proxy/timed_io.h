#pragma once
/// Timed I/O — every network operation of the proxy has a deadline.
///
/// Boost 1.81 has no `cancel_after` (it came in 1.86), so an operation is
/// raced against a steady_timer with the `||` awaitable operator: whichever
/// finishes first cancels the other (STYLE.md G8). Operations use `as_tuple`
/// so errors come back as values, never as exceptions on the data path.
/// Runs on the calling coroutine's executor (the session's strand).

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <optional>
#include <string_view>
#include <system_error>

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

/// Runs `op` (an awaitable yielding tuple<error_code, size_t>) for at most `limit`.
template <typename Op>
asio::awaitable<IoResult> within(Op op, Duration limit) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer(co_await asio::this_coro::executor, limit);
  auto result = co_await (std::move(op) || timer.async_wait(kUseTuple));
  if (result.index() == 0) {
    auto [ec, n] = std::get<0>(result);
    co_return IoResult{ec, n};
  }
  co_return IoResult{asio::error::timed_out, 0};
}

/// Runs `op` (an awaitable yielding tuple<error_code>: connect, handshake) for at most `limit`.
template <typename Op>
asio::awaitable<boost::system::error_code> withinNoBytes(Op op, Duration limit) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer(co_await asio::this_coro::executor, limit);
  auto result = co_await (std::move(op) || timer.async_wait(kUseTuple));
  if (result.index() == 0) {
    co_return std::get<0>(std::get<0>(result));
  }
  co_return asio::error::timed_out;
}

template <typename Stream, typename Buffer>
asio::awaitable<IoResult> readSome(Stream& s, Buffer buffer, Duration limit) {
  co_return co_await within(s.async_read_some(buffer, kUseTuple), limit);
}

template <typename Stream>
asio::awaitable<IoResult> writeAll(Stream& s, std::string_view bytes, Duration limit) {
  co_return co_await within(
      asio::async_write(s, asio::buffer(bytes.data(), bytes.size()), kUseTuple), limit);
}

}  // namespace smtpgate::proxy
