#include "proxy/metrics_endpoint.h"

#include <fmt/core.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <memory>

namespace smtpgate::proxy {

namespace {

constexpr std::size_t kMaxRequestHead = 8 * 1024;
constexpr auto kRequestTimeout = std::chrono::seconds(5);

std::string response(std::string_view status, std::string_view contentType, std::string_view body) {
  return fmt::format(
      "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
      status, contentType, body.size(), body);
}

asio::awaitable<void> serveOne(tcp::socket socket, std::function<std::string()> body) {
  IoWatchdog watchdog(socket.get_executor(), [&socket] {
    boost::system::error_code ignored;
    socket.cancel(ignored);
  });
  std::string head;
  char buf[2048];
  while (head.find("\r\n\r\n") == std::string::npos && head.size() < kMaxRequestHead) {
    IoResult io = co_await readSome(watchdog, socket, asio::buffer(buf), kRequestTimeout);
    if (!io.ok()) {
      co_return;
    }
    head.append(buf, io.bytes);
  }
  std::string out = metricsResponse(head, body);
  co_await writeAll(watchdog, socket, out, kRequestTimeout);
  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_both, ignored);
}

}  // namespace

std::string metricsResponse(std::string_view requestHead,
                            const std::function<std::string()>& body) {
  const auto lineEnd = requestHead.find("\r\n");
  if (lineEnd == std::string_view::npos) {
    return response("400 Bad Request", "text/plain", "bad request\n");
  }
  std::string_view line = requestHead.substr(0, lineEnd);
  const auto firstSpace = line.find(' ');
  const auto lastSpace = line.rfind(' ');
  if (firstSpace == std::string_view::npos || firstSpace == lastSpace ||
      !line.substr(lastSpace + 1).starts_with("HTTP/1.")) {
    return response("400 Bad Request", "text/plain", "bad request\n");
  }
  std::string_view method = line.substr(0, firstSpace);
  std::string_view target = line.substr(firstSpace + 1, lastSpace - firstSpace - 1);
  if (method != "GET") {
    return response("405 Method Not Allowed", "text/plain", "only GET\n");
  }
  if (target != "/metrics" && !target.starts_with("/metrics?")) {
    return response("404 Not Found", "text/plain", "see /metrics\n");
  }
  return response("200 OK", "text/plain; version=0.0.4; charset=utf-8", body());
}

asio::awaitable<void> serveMetrics(tcp::acceptor& acceptor, std::function<std::string()> body) {
  auto executor = co_await asio::this_coro::executor;
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(executor), kUseTuple);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
      co_return;
    }
    if (ec) {  // EMFILE and friends: back off instead of spinning on the error
      asio::steady_timer backoff(executor, std::chrono::milliseconds(100));
      co_await backoff.async_wait(kUseTuple);
      continue;
    }
    auto strand = socket.get_executor();
    asio::co_spawn(strand, serveOne(std::move(socket), body), asio::detached);
  }
}

}  // namespace smtpgate::proxy
