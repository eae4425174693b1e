#include "proxy/timed_io.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

namespace smtpgate::proxy {

IoWatchdog::IoWatchdog(asio::any_io_executor executor, std::function<void()> cancel)
    : state_(std::make_shared<State>(executor)) {
  state_->cancel = std::move(cancel);
  asio::co_spawn(executor, watch(state_), asio::detached);
}

IoWatchdog::~IoWatchdog() {
  state_->stopped = true;
  state_->cancel = nullptr;  // the connection is going away: never call back into it
  state_->timer.cancel();
}

void IoWatchdog::arm(Duration limit) {
  State& s = *state_;
  s.expired = false;
  s.expiry = Clock::now() + limit;
  if (s.expiry < s.wakeAt) {
    // Only when the watchdog sleeps past the new expiry does the timer move
    // (this wakes the watch loop, which goes back to sleep until wakeAt).
    s.wakeAt = s.expiry;
    s.timer.expires_at(s.wakeAt);
  }
}

void IoWatchdog::disarm() {
  state_->expiry = Clock::time_point::max();
}

asio::awaitable<void> IoWatchdog::watch(std::shared_ptr<State> state) {
  while (!state->stopped) {
    state->timer.expires_at(state->wakeAt);
    co_await state->timer.async_wait(kUseTuple);
    if (state->stopped) {
      break;
    }
    if (Clock::now() >= state->expiry) {
      state->expired = true;
      state->expiry = Clock::time_point::max();
      if (state->cancel) {
        state->cancel();
      }
    }
    // Sleep until the pending operation's expiry, or until the next arm().
    state->wakeAt = state->expiry;
  }
}

}  // namespace smtpgate::proxy
