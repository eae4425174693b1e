#include "proxy/backend_pool.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

namespace smtpgate::proxy {

BackendPool::BackendPool(asio::any_io_executor executor, BackendPoolLimits limits)
    : executor_(std::move(executor)), limits_(limits), timer_(executor_) {}

std::unique_ptr<BackendClient> BackendPool::take(const BackendOptions& wanted) {
  while (!idle_.empty()) {
    std::unique_ptr<BackendClient> client = std::move(idle_.back().client);
    idle_.pop_back();
    if (!client->quiet()) {
      client->close();  // closed by the backend, or an unsolicited 421: no QUIT due
    } else if (!(client->options() == wanted)) {
      asio::co_spawn(executor_, retire(std::move(client)), asio::detached);
    } else {
      return client;
    }
  }
  return nullptr;
}

asio::awaitable<void> BackendPool::retire(std::unique_ptr<BackendClient> client) {
  co_await client->quit();
}

asio::awaitable<void> BackendPool::park(std::unique_ptr<BackendClient> client) {
  const auto now = std::chrono::steady_clock::now();
  if (!client->reusable() || idle_.size() >= limits_.maxIdle ||
      now - client->openedAt() >= limits_.maxAge) {
    co_await client->quit();
    co_return;
  }
  idle_.push_back({std::move(client), now});
  if (!expiring_) {
    expiring_ = true;
    asio::co_spawn(executor_, expire(), asio::detached);
  }
}

asio::awaitable<void> BackendPool::quitAll() {
  while (!idle_.empty()) {
    std::unique_ptr<BackendClient> client = std::move(idle_.back().client);
    idle_.pop_back();
    co_await client->quit();
  }
}

asio::awaitable<void> BackendPool::expire() {
  while (!idle_.empty()) {
    timer_.expires_at(idle_.front().since + limits_.idleTime);
    auto [error] = co_await timer_.async_wait(kUseTuple);
    if (error == asio::error::operation_aborted) {
      co_return;  // the pool is going away
    }
    const auto now = std::chrono::steady_clock::now();
    while (!idle_.empty() && now - idle_.front().since >= limits_.idleTime) {
      std::unique_ptr<BackendClient> client = std::move(idle_.front().client);
      idle_.pop_front();
      co_await client->quit();
    }
  }
  expiring_ = false;
}

}  // namespace smtpgate::proxy
