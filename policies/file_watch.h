#pragma once
/// FileWatch — "I saved the rule file: is it live?" without a signal.
///
/// Watches the config, rule and list files with inotify and calls
/// `onChange` once they have been quiet for `settle` after a change, so an
/// editor's save (often: write a temporary file, rename it over the old one,
/// fix up the mode) is one reload, not three, and a half-written file is not
/// read. The frontends pass a function that sends the process its reload
/// signal (SIGHUP for the proxy, SIGUSR2 for the milter), so a file change
/// and a signal take exactly the same path: atomic swap, or the old set
/// stays with the diagnostics logged and counted.
///
/// Directories are watched, not the files: a rename over a file replaces its
/// inode, and a new file matching a `rules.files` glob must be seen too. An
/// event counts when its name is a watched file of that directory or matches
/// one of its glob patterns (fnmatch(3)); editor droppings (`.x.swp`, `x~`,
/// vim's `4913`) match neither.
///
/// Threads: one thread of its own, blocked in poll(2) on the inotify
/// descriptor and a wake-up pipe; `onChange` runs on it. `watch()` may be
/// called from any thread (the reload calls it with the new set's files).

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace smtpgate::policies {

class FileWatch {
 public:
  /// Starts the thread; nothing is watched until `watch()`. Throws
  /// std::system_error if inotify is not available.
  explicit FileWatch(std::function<void()> onChange,
                     std::chrono::milliseconds settle = std::chrono::milliseconds(300));
  ~FileWatch();
  FileWatch(const FileWatch&) = delete;
  FileWatch& operator=(const FileWatch&) = delete;

  /// Replaces what is watched: absolute `files`, and absolute glob(3)
  /// `patterns` (a new file matching one counts as a change). A directory
  /// that doesn't exist is skipped.
  void watch(const std::vector<std::string>& files, const std::vector<std::string>& patterns);

  /// Directories currently watched (for the start-up note and tests).
  [[nodiscard]] std::vector<std::string> directories() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace smtpgate::policies
