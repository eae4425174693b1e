#include "policies/file_watch.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <system_error>
#include <thread>

namespace smtpgate::policies {

namespace {

// What replaces, edits, creates or removes a file in a directory. IN_ATTRIB
// makes `touch rules.rules` a way to ask for a reload. An edit in place is
// seen when the editor closes the file (IN_CLOSE_WRITE), not on each write:
// IN_MODIFY would wake this thread for every append to any file kept open in
// a watched directory (a decision log or a sink's output next to the config
// woke it once per message), and a half-written file is no use to a reload.
constexpr std::uint32_t kDirectoryEvents =
    IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB;

bool hasGlobCharacters(std::string_view text) {
  return text.find_first_of("*?[") != std::string_view::npos;
}

struct WatchedDirectory {
  std::set<std::string> names;        ///< file names watched in it
  std::vector<std::string> patterns;  ///< fnmatch(3) patterns of file names
  int descriptor = -1;

  [[nodiscard]] bool matters(const char* name) const {
    if (names.contains(name)) {
      return true;
    }
    for (const auto& pattern : patterns) {
      if (::fnmatch(pattern.c_str(), name, FNM_PERIOD) == 0) {
        return true;
      }
    }
    return false;
  }
};

using Directories = std::map<std::string, WatchedDirectory>;

/// Splits absolute paths and patterns into directory → names and patterns.
/// A pattern whose directory part is itself a glob is watched only through
/// the files it matched (which `files` lists).
Directories directoriesFor(const std::vector<std::string>& files,
                           const std::vector<std::string>& patterns) {
  Directories dirs;
  for (const auto& file : files) {
    std::filesystem::path p(file);
    if (p.has_parent_path() && p.has_filename()) {
      dirs[p.parent_path().string()].names.insert(p.filename().string());
    }
  }
  for (const auto& pattern : patterns) {
    std::filesystem::path p(pattern);
    if (!p.has_parent_path() || !p.has_filename() || hasGlobCharacters(p.parent_path().string())) {
      continue;
    }
    auto& dir = dirs[p.parent_path().string()];
    if (hasGlobCharacters(p.filename().string())) {
      dir.patterns.push_back(p.filename().string());
    } else {
      dir.names.insert(p.filename().string());
    }
  }
  return dirs;
}

}  // namespace

struct FileWatch::Impl {
  std::function<void()> onChange;
  std::chrono::milliseconds settle;
  int inotifyFd = -1;
  int wakeRead = -1;
  int wakeWrite = -1;
  std::atomic<bool> stopping{false};

  mutable std::mutex mutex;  // guards dirs
  Directories dirs;

  std::thread thread;

  void run();
  /// Reads the queued events; true if one of them is about a watched file.
  bool readEvents();
};

bool FileWatch::Impl::readEvents() {
  alignas(inotify_event) char buffer[16 * 1024];
  bool relevant = false;
  for (;;) {
    ssize_t n = ::read(inotifyFd, buffer, sizeof buffer);
    if (n <= 0) {
      return relevant;  // EAGAIN: drained
    }
    std::lock_guard lock(mutex);
    for (char* at = buffer; at < buffer + n;) {
      const auto* event = reinterpret_cast<const inotify_event*>(at);
      at += sizeof(inotify_event) + event->len;
      if (event->mask & IN_Q_OVERFLOW) {
        relevant = true;  // events were lost: assume ours were among them
        continue;
      }
      if (event->len == 0) {
        continue;
      }
      for (const auto& [path, dir] : dirs) {
        if (dir.descriptor == event->wd && dir.matters(event->name)) {
          relevant = true;
        }
      }
    }
  }
}

void FileWatch::Impl::run() {
  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> due;
  while (!stopping.load()) {
    int timeout = -1;
    if (due) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*due - Clock::now());
      timeout = static_cast<int>(std::max<std::int64_t>(0, left.count()));
    }
    pollfd fds[2] = {{inotifyFd, POLLIN, 0}, {wakeRead, POLLIN, 0}};
    int ready = ::poll(fds, 2, timeout);
    if (ready < 0 && errno != EINTR) {
      return;
    }
    if (ready > 0 && (fds[0].revents & POLLIN) && readEvents()) {
      due = Clock::now() + settle;  // quiet for `settle` after the last event
    }
    if (due && Clock::now() >= *due) {
      due.reset();
      onChange();
    }
  }
}

FileWatch::FileWatch(std::function<void()> onChange, std::chrono::milliseconds settle)
    : impl_(std::make_unique<Impl>()) {
  impl_->onChange = std::move(onChange);
  impl_->settle = settle;
  impl_->inotifyFd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (impl_->inotifyFd < 0) {
    throw std::system_error(errno, std::generic_category(), "inotify_init1");
  }
  int pipeFds[2];
  if (::pipe2(pipeFds, O_NONBLOCK | O_CLOEXEC) != 0) {
    int error = errno;
    ::close(impl_->inotifyFd);
    throw std::system_error(error, std::generic_category(), "pipe2");
  }
  impl_->wakeRead = pipeFds[0];
  impl_->wakeWrite = pipeFds[1];
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
}

FileWatch::~FileWatch() {
  impl_->stopping.store(true);
  [[maybe_unused]] auto ignored = ::write(impl_->wakeWrite, "x", 1);
  impl_->thread.join();
  ::close(impl_->inotifyFd);
  ::close(impl_->wakeRead);
  ::close(impl_->wakeWrite);
}

void FileWatch::watch(const std::vector<std::string>& files,
                      const std::vector<std::string>& patterns) {
  Directories fresh = directoriesFor(files, patterns);
  std::lock_guard lock(impl_->mutex);
  for (auto& [path, dir] : impl_->dirs) {
    if (!fresh.contains(path) && dir.descriptor >= 0) {
      ::inotify_rm_watch(impl_->inotifyFd, dir.descriptor);
    }
  }
  for (auto it = fresh.begin(); it != fresh.end();) {
    // Adding a directory watched already returns its descriptor again.
    it->second.descriptor =
        ::inotify_add_watch(impl_->inotifyFd, it->first.c_str(), kDirectoryEvents | IN_ONLYDIR);
    it = it->second.descriptor < 0 ? fresh.erase(it) : std::next(it);
  }
  impl_->dirs = std::move(fresh);
}

std::vector<std::string> FileWatch::directories() const {
  std::lock_guard lock(impl_->mutex);
  std::vector<std::string> out;
  for (const auto& [path, dir] : impl_->dirs) {
    out.push_back(path);
  }
  return out;
}

}  // namespace smtpgate::policies
