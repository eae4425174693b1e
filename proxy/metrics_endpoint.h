#pragma once
/// MetricsEndpoint — `GET /metrics` over HTTP/1.x on `[metrics] listen`, for
/// Prometheus. Deliberately tiny: one request per connection, answered and
/// closed; a request head larger than 8 KiB or slower than 5 s is dropped.
/// Anything but GET /metrics gets 404 (or 405 for another method). Runs on
/// the proxy's io_context; never blocks it.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <string>

#include "proxy/timed_io.h"

namespace smtpgate::proxy {

/// The response to one request head (everything up to the blank line).
/// `body` renders the exposition only when the request is for it.
std::string metricsResponse(std::string_view requestHead, const std::function<std::string()>& body);

/// Serves `acceptor` until it is closed.
asio::awaitable<void> serveMetrics(tcp::acceptor& acceptor, std::function<std::string()> body);

}  // namespace smtpgate::proxy
