#pragma once
/// Decision log files — finding the log and its rotations, reading them line
/// by line (plain or gzip'd), and following the live file like `tail -F`.
///
/// Rotations: logrotate renames `PATH` to `PATH.1`, `PATH.2.gz`, ... (higher
/// is older) or, with `dateext`, to `PATH-20261123[.gz]` (later date is
/// newer). `logFilesWithRotations` returns every such file that exists, oldest
/// first, then `PATH`, so reading them in order reads the log in time order.
/// Whether a file is gzip'd is decided by its first two bytes (1f 8b), not by
/// its name; a gzip file may hold several members (`cat a.gz b.gz`).
///
/// Reading: `LogLineReader` reads in large blocks (1 MiB through read(2), or
/// zlib for gzip) and hands out lines as string_views into its buffer, valid
/// until the next call. A line longer than `kMaxLogLineBytes` is skipped and
/// reported as `Overlong`; the reader stays usable. Lines end at '\n'; a final
/// line without one is returned at end of file unless the caller is following
/// a file that is still being written.
///
/// Following: `LogFollower` polls (the caller sleeps between polls, e.g.
/// 200 ms) and reads whatever complete lines were appended. When the path
/// names a new file (logrotate renamed the old one: the device or inode
/// changed) it finishes the old file, then reads the new one from its start;
/// when the file shrank (copytruncate) it reads again from the start. A path
/// that does not exist yet is waited for.
///
/// Errors: a file that cannot be opened or read, or a corrupt gzip stream,
/// is one message in `LogScanStats::fileErrors`, never an exception; lines
/// already read from it stay counted.
///
/// Threads: none of this is shared; one reader per thread.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "policies/decision_log_reader.h"

namespace smtpgate::policies {

/// Longest line read; the writer's own lines stay far below (decision_log.h).
inline constexpr std::size_t kMaxLogLineBytes = 64U << 20;

/// Existing rotations of `path`, oldest first, without `path` itself.
std::vector<std::string> rotatedLogFiles(const std::string& path);

/// Rotations of `path` (oldest first), then `path` if it exists.
std::vector<std::string> logFilesWithRotations(const std::string& path);

class LogLineReader {
 public:
  enum class Next { Line, Overlong, End, Error };

  /// Opens `path` (plain or gzip). Null with a one-line reason in `error`.
  static std::unique_ptr<LogLineReader> open(const std::string& path, std::string& error);
  ~LogLineReader();
  LogLineReader(const LogLineReader&) = delete;
  LogLineReader& operator=(const LogLineReader&) = delete;

  /// The next line, without its '\n'. At end of file a last line without a
  /// newline is returned only if `takePartial`; otherwise it is kept, and a
  /// later call returns it once its newline has been appended. After End, a
  /// later call reads on (the file may have grown).
  Next next(std::string_view& line, bool takePartial = true);

  /// 1-based number of the line `next` returned last.
  [[nodiscard]] std::uint64_t lineNumber() const { return lineNumber_; }
  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] const std::string& path() const { return path_; }
  /// Device and inode of the open file, to notice a rotation.
  [[nodiscard]] dev_t device() const { return device_; }
  [[nodiscard]] ino_t inode() const { return inode_; }
  /// Bytes read so far (for gzip: decompressed bytes).
  [[nodiscard]] std::uint64_t offset() const { return offset_; }

  /// Moves to the end of the file, dropping what is buffered; line numbers
  /// then count from there.
  void skipToEnd();

 private:
  LogLineReader(std::string path, int fd);
  bool fill();  ///< reads more into the buffer; false at end of file or on error
  std::ptrdiff_t readSome(char* into, std::size_t size);

  std::string path_;
  int fd_;
  void* gz_ = nullptr;  ///< gzFile, when the file is gzip'd
  dev_t device_ = 0;
  ino_t inode_ = 0;
  std::vector<char> buffer_;
  std::size_t begin_ = 0;  ///< unread data is buffer_[begin_, end_)
  std::size_t end_ = 0;
  std::size_t scanned_ = 0;  ///< buffer_[begin_, scanned_) holds no '\n'
  bool skipping_ = false;    ///< inside an overlong line: drop bytes to its '\n'
  std::uint64_t lineNumber_ = 0;
  std::uint64_t offset_ = 0;
  std::string error_;
};

/// What a scan saw; added to across files.
struct LogScanStats {
  std::uint64_t lines = 0;       ///< decision lines read (not blank, not unreadable)
  std::uint64_t matched = 0;     ///< lines the filter accepted
  std::uint64_t unreadable = 0;  ///< lines that are not decisions (and overlong lines)
  std::string firstUnreadable;   ///< "file:line" of the first of them
  std::vector<std::string> fileErrors;
  std::uint64_t filesSkipped = 0;  ///< rotations older than --since, not opened
};

/// Called for each line the filter accepts: the decoded entry (the keys in
/// `fields` and the filter's) and the line exactly as written.
using LogLineSink = std::function<void(const LogEntry& entry, std::string_view line)>;

/// Parses one line (line `lineNumber` of `path`, for the report of the first
/// unreadable line) and hands it to `sink` if `filter` accepts it.
void scanLogLine(std::string_view line, const std::string& path, std::uint64_t lineNumber,
                 const LogFilter& filter, LogFieldMask fields, LogEntry& scratch,
                 const LogLineSink& sink, LogScanStats& stats);

/// Reads `files` in order. A file last modified before `filter.since()`
/// (minus a minute of slack) cannot hold a matching line and is not opened.
void scanLogFiles(const std::vector<std::string>& files, const LogFilter& filter,
                  LogFieldMask fields, const LogLineSink& sink, LogScanStats& stats);

/// Follows one path across rotations; see the header comment.
class LogFollower {
 public:
  /// `startAtEnd`: skip what the file holds at the first poll (like
  /// `tail -f` without old lines); a file that appears later is read whole.
  LogFollower(std::string path, bool startAtEnd)
      : path_(std::move(path)), startAtEnd_(startAtEnd) {}

  /// Reads every complete line appended since the last poll.
  void poll(const LogFilter& filter, LogFieldMask fields, const LogLineSink& sink,
            LogScanStats& stats);

 private:
  void drain(const LogFilter& filter, LogFieldMask fields, const LogLineSink& sink,
             LogScanStats& stats, bool takePartial);
  void reopen(LogScanStats& stats, bool startAtEnd);

  std::string path_;
  std::unique_ptr<LogLineReader> reader_;
  LogEntry scratch_;
  bool startAtEnd_;
  std::string lastError_;  ///< reported once, not at every poll
};

}  // namespace smtpgate::policies
