#include "policies/decision_log_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace smtpgate::policies {

namespace {

namespace fs = std::filesystem;

constexpr std::size_t kReadBlock = 4U << 20;  // one read(2) or gzread per 4 MiB

bool allDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

/// How logrotate named one rotation; `key` orders files of the same kind.
struct Rotation {
  std::string path;
  bool dated = false;      ///< dateext: PATH-20261123
  std::uint64_t number{};  ///< PATH.N: higher is older
  std::string date;        ///< dateext suffix: later is newer
};

std::optional<Rotation> classifyRotation(std::string_view suffix, std::string path) {
  if (suffix.size() > 3 && suffix.substr(suffix.size() - 3) == ".gz") {
    suffix.remove_suffix(3);
  }
  if (suffix.size() < 2 || !allDigits(suffix.substr(1))) {
    return std::nullopt;
  }
  Rotation r{std::move(path), suffix[0] == '-', 0, {}};
  if (suffix[0] == '.' && suffix.size() <= 10) {
    r.number = std::stoull(std::string(suffix.substr(1)));
    return r;
  }
  if (suffix[0] == '-' && suffix.size() >= 9) {
    r.date = suffix.substr(1);
    return r;
  }
  return std::nullopt;
}

std::string errnoText(int err) {
  return std::system_category().message(err);
}

bool isGzip(int fd) {
  unsigned char magic[2] = {0, 0};
  return ::pread(fd, magic, sizeof magic, 0) == 2 && magic[0] == 0x1F && magic[1] == 0x8B;
}

}  // namespace

std::vector<std::string> rotatedLogFiles(const std::string& path) {
  const fs::path live(path);
  const fs::path dir = live.has_parent_path() ? live.parent_path() : fs::path(".");
  const std::string base = live.filename().string();
  std::vector<Rotation> found;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= base.size() || name.compare(0, base.size(), base) != 0) {
      continue;
    }
    std::error_code typeError;
    if (!it->is_regular_file(typeError)) {
      continue;
    }
    auto rotation =
        classifyRotation(std::string_view(name).substr(base.size()),
                         (live.has_parent_path() ? dir / name : fs::path(name)).string());
    if (rotation) {
      found.push_back(std::move(*rotation));
    }
  }
  // Dated rotations (oldest date first), then numbered ones (highest first).
  std::sort(found.begin(), found.end(), [](const Rotation& a, const Rotation& b) {
    if (a.dated != b.dated) {
      return a.dated;
    }
    if (a.dated) {
      return a.date != b.date ? a.date < b.date : a.path < b.path;
    }
    return a.number != b.number ? a.number > b.number : a.path < b.path;
  });
  std::vector<std::string> out;
  out.reserve(found.size());
  for (Rotation& r : found) {
    out.push_back(std::move(r.path));
  }
  return out;
}

std::vector<std::string> logFilesWithRotations(const std::string& path) {
  std::vector<std::string> files = rotatedLogFiles(path);
  std::error_code ec;
  if (fs::exists(path, ec)) {
    files.push_back(path);
  }
  return files;
}

// ---------------------------------------------------------------------------
// LogLineReader

std::unique_ptr<LogLineReader> LogLineReader::open(const std::string& path, std::string& error) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    error = path + ": " + errnoText(errno);
    return nullptr;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    error = path + ": " + (S_ISDIR(st.st_mode) ? "is a directory" : errnoText(errno));
    ::close(fd);
    return nullptr;
  }
  std::unique_ptr<LogLineReader> reader(new LogLineReader(path, fd));
  reader->device_ = st.st_dev;
  reader->inode_ = st.st_ino;
  if (isGzip(fd)) {
    gzFile gz = ::gzdopen(fd, "rb");  // owns fd from here on
    if (gz == nullptr) {
      error = path + ": cannot start gzip decompression";
      return nullptr;  // the destructor closes fd
    }
    reader->fd_ = -1;
    reader->gz_ = gz;
    ::gzbuffer(gz, 1U << 20);
  }
  return reader;
}

LogLineReader::LogLineReader(std::string path, int fd)
    : path_(std::move(path)), fd_(fd), buffer_(kReadBlock) {}

LogLineReader::~LogLineReader() {
  if (gz_ != nullptr) {
    ::gzclose(static_cast<gzFile>(gz_));
  }
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

std::ptrdiff_t LogLineReader::readSome(char* into, std::size_t size) {
  if (gz_ != nullptr) {
    auto gz = static_cast<gzFile>(gz_);
    const int n = ::gzread(gz, into, static_cast<unsigned>(std::min<std::size_t>(size, INT_MAX)));
    int code = Z_OK;
    const char* message = n <= 0 ? ::gzerror(gz, &code) : nullptr;
    // A stream cut short ends like a file (0) with Z_BUF_ERROR set.
    if (n < 0 || code != Z_OK) {
      std::string_view text = message != nullptr && *message ? message : "read error";
      if (text.starts_with("<fd:") && text.find(": ") != std::string_view::npos) {
        text.remove_prefix(text.find(": ") + 2);  // zlib names the file "<fd:3>"
      }
      error_ = path_ + ": gzip: " + std::string(text);
      return -1;
    }
    return n;
  }
  for (;;) {
    const ssize_t n = ::read(fd_, into, size);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      error_ = path_ + ": " + errnoText(errno);
    }
    return n;
  }
}

bool LogLineReader::fill() {
  if (begin_ > 0) {  // keep the unfinished line, at the front
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    scanned_ -= begin_;
    begin_ = 0;
  }
  if (end_ == buffer_.size()) {
    buffer_.resize(std::min(buffer_.size() * 2, kMaxLogLineBytes + kReadBlock));
  }
  const std::ptrdiff_t n = readSome(buffer_.data() + end_, buffer_.size() - end_);
  if (n <= 0) {
    return false;
  }
  end_ += static_cast<std::size_t>(n);
  offset_ += static_cast<std::uint64_t>(n);
  return true;
}

LogLineReader::Next LogLineReader::next(std::string_view& line, bool takePartial) {
  for (;;) {
    const char* base = buffer_.data();
    const void* nl = std::memchr(base + scanned_, '\n', end_ - scanned_);
    if (nl != nullptr) {
      const auto at = static_cast<std::size_t>(static_cast<const char*>(nl) - base);
      line = std::string_view(base + begin_, at - begin_);
      begin_ = scanned_ = at + 1;
      ++lineNumber_;
      if (skipping_) {
        skipping_ = false;
        return Next::Overlong;
      }
      return Next::Line;
    }
    scanned_ = end_;
    if (end_ - begin_ > kMaxLogLineBytes) {
      skipping_ = true;  // drop the bytes so far; the line ends at the next '\n'
      begin_ = scanned_ = end_;
    }
    if (!fill()) {
      if (!error_.empty()) {
        return Next::Error;
      }
      if (end_ > begin_ && takePartial) {
        line = std::string_view(buffer_.data() + begin_, end_ - begin_);
        begin_ = scanned_ = end_;
        ++lineNumber_;
        return skipping_ ? (skipping_ = false, Next::Overlong) : Next::Line;
      }
      return Next::End;
    }
  }
}

void LogLineReader::skipToEnd() {
  begin_ = end_ = scanned_ = 0;
  skipping_ = false;
  if (gz_ == nullptr) {
    const off_t at = ::lseek(fd_, 0, SEEK_END);
    offset_ = at < 0 ? offset_ : static_cast<std::uint64_t>(at);
    return;
  }
  std::string_view ignored;
  for (Next n = next(ignored); n == Next::Line || n == Next::Overlong; n = next(ignored)) {
  }
}

// ---------------------------------------------------------------------------
// Scanning

void scanLogLine(std::string_view line, const std::string& path, std::uint64_t lineNumber,
                 const LogFilter& filter, LogFieldMask fields, LogEntry& scratch,
                 const LogLineSink& sink, LogScanStats& stats) {
  switch (parseDecisionLine(line, scratch, fields | filter.fieldsNeeded())) {
    case LineParse::Blank:
      return;
    case LineParse::Unreadable:
      if (stats.unreadable++ == 0) {
        stats.firstUnreadable = path + ":" + std::to_string(lineNumber);
      }
      return;
    case LineParse::Ok:
      ++stats.lines;
      if (filter.matches(scratch)) {
        ++stats.matched;
        sink(scratch, line);
      }
      return;
  }
}

namespace {

void countOverlong(const LogLineReader& reader, LogScanStats& stats) {
  if (stats.unreadable++ == 0) {
    stats.firstUnreadable = reader.path() + ":" + std::to_string(reader.lineNumber());
  }
}

/// True if `path` was last written before the window opened. A line's time
/// is taken before it is written, so no line in such a file can match; the
/// minute of slack covers clocks that step.
bool olderThanWindow(const std::string& path, const LogFilter& filter) {
  struct stat st {};
  if (!filter.since() || ::stat(path.c_str(), &st) != 0) {
    return false;
  }
  const LogTime modified = LogTime(std::chrono::duration_cast<LogTime::duration>(
      std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
  return modified + std::chrono::minutes(1) < *filter.since();
}

/// Reads `reader` to its end (or to what is complete, when !takePartial).
/// False if it stopped on an error, which is then in `stats.fileErrors`.
bool drainReader(LogLineReader& reader, const LogFilter& filter, LogFieldMask fields,
                 LogEntry& scratch, const LogLineSink& sink, LogScanStats& stats,
                 bool takePartial) {
  std::string_view line;
  for (;;) {
    switch (reader.next(line, takePartial)) {
      case LogLineReader::Next::Line:
        scanLogLine(line, reader.path(), reader.lineNumber(), filter, fields, scratch, sink, stats);
        break;
      case LogLineReader::Next::Overlong:
        countOverlong(reader, stats);
        break;
      case LogLineReader::Next::End:
        return true;
      case LogLineReader::Next::Error:
        stats.fileErrors.push_back(reader.error());
        return false;
    }
  }
}

}  // namespace

void scanLogFiles(const std::vector<std::string>& files, const LogFilter& filter,
                  LogFieldMask fields, const LogLineSink& sink, LogScanStats& stats) {
  LogEntry scratch;
  for (const std::string& path : files) {
    if (olderThanWindow(path, filter)) {
      ++stats.filesSkipped;
      continue;
    }
    std::string error;
    std::unique_ptr<LogLineReader> reader = LogLineReader::open(path, error);
    if (!reader) {
      stats.fileErrors.push_back(error);
      continue;
    }
    drainReader(*reader, filter, fields, scratch, sink, stats, true);
  }
}

// ---------------------------------------------------------------------------
// LogFollower

void LogFollower::drain(const LogFilter& filter, LogFieldMask fields, const LogLineSink& sink,
                        LogScanStats& stats, bool takePartial) {
  if (!drainReader(*reader_, filter, fields, scratch_, sink, stats, takePartial)) {
    reader_.reset();  // a read error: open the path again at the next poll
  }
}

void LogFollower::reopen(LogScanStats& stats, bool startAtEnd) {
  reader_.reset();
  std::string error;
  reader_ = LogLineReader::open(path_, error);
  if (!reader_) {
    if (error != lastError_) {
      stats.fileErrors.push_back(error);
      lastError_ = error;
    }
    return;
  }
  lastError_.clear();
  if (startAtEnd) {
    reader_->skipToEnd();
  }
}

void LogFollower::poll(const LogFilter& filter, LogFieldMask fields, const LogLineSink& sink,
                       LogScanStats& stats) {
  struct stat st {};
  const bool exists = ::stat(path_.c_str(), &st) == 0;
  if (!reader_) {
    const bool atEnd = startAtEnd_;
    startAtEnd_ = false;  // a file that appears later is new: read it whole
    if (!exists) {
      return;
    }
    reopen(stats, atEnd);
  } else if (exists && (st.st_dev != reader_->device() || st.st_ino != reader_->inode())) {
    // Rotated: the old file may still have had lines appended before the
    // writer reopened; take them, then start on the new file.
    drain(filter, fields, sink, stats, true);
    reopen(stats, false);
  } else if (exists && static_cast<std::uint64_t>(st.st_size) < reader_->offset()) {
    reopen(stats, false);  // truncated in place (copytruncate)
  }
  if (reader_) {
    drain(filter, fields, sink, stats, false);
  }
}

}  // namespace smtpgate::policies
