#include "policies/decision_log.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <system_error>

namespace smtpgate::policies {

namespace {

using Json = nlohmann::ordered_json;  // keeps keys in the documented order

std::string errnoText(int err) {
  return std::system_category().message(err);
}

// Which keys had to be repaired or cut; each key named once, in key order.
struct Flags {
  std::vector<std::string_view> invalidUtf8;
  std::vector<std::string_view> truncated;
};

void flagOnce(std::vector<std::string_view>& keys, std::string_view key) {
  if (keys.empty() || keys.back() != key) {
    keys.push_back(key);
  }
}

// Cuts `value` at kMaxFieldBytes without splitting a UTF-8 sequence, and
// notes whether what remains is valid UTF-8. The JSON dump then replaces
// invalid bytes with U+FFFD; this only records that it had to.
Json clip(std::string_view value, std::string_view key, Flags& flags) {
  if (value.size() > kMaxFieldBytes) {
    std::size_t cut = kMaxFieldBytes;
    for (int back = 0;
         back < 3 && cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80; ++back) {
      --cut;
    }
    value = value.substr(0, cut);
    flagOnce(flags.truncated, key);
  }
  if (!isValidUtf8(value)) {
    flagOnce(flags.invalidUtf8, key);
  }
  return Json(std::string(value));
}

Json clipList(const std::vector<std::string>& values, std::string_view key, Flags& flags) {
  Json out = Json::array();
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i == kMaxListItems) {
      flagOnce(flags.truncated, key);
      break;
    }
    out.push_back(clip(values[i], key, flags));
  }
  return out;
}

void putIfSet(Json& j, const char* key, const std::string& value, Flags& flags) {
  if (!value.empty()) {
    j[key] = clip(value, key, flags);
  }
}

void putListIfSet(Json& j, const char* key, const std::vector<std::string>& values, Flags& flags) {
  if (!values.empty()) {
    j[key] = clipList(values, key, flags);
  }
}

Json flagArray(const std::vector<std::string_view>& keys) {
  Json out = Json::array();
  for (auto k : keys) {
    out.push_back(std::string(k));
  }
  return out;
}

// U+2028/U+2029 are legal raw in JSON but end a line for JavaScript and some
// editors. After the dump the text is valid UTF-8 and keys are ASCII, so the
// byte sequences E2 80 A8/A9 can only be these characters inside strings.
std::string escapeLineSeparators(std::string text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\xE2' && i + 2 < text.size() && text[i + 1] == '\x80' &&
        (text[i + 2] == '\xA8' || text[i + 2] == '\xA9')) {
      out += text[i + 2] == '\xA8' ? "\\u2028" : "\\u2029";
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

// Only the store in requestReopen() runs in signal context.
std::atomic<DecisionLog*> gSignalLog{nullptr};
static_assert(std::atomic<DecisionLog*>::is_always_lock_free);

void onReopenSignal(int /*signo*/) {
  if (DecisionLog* log = gSignalLog.load(std::memory_order_acquire)) {
    log->requestReopen();
  }
}

int openForAppend(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
}

}  // namespace

bool isValidUtf8(std::string_view bytes) noexcept {
  // Well-formed byte sequences, Unicode 15 table 3-7: the lead byte fixes the
  // length and the allowed range of the second byte, which is what rules out
  // overlongs (C0, C1, E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and
  // values above U+10FFFF (F4 90.., F5..FF).
  std::size_t i = 0;
  const std::size_t n = bytes.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      lo = c == 0xE0 ? 0xA0 : 0x80;
      hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      lo = c == 0xF0 ? 0x90 : 0x80;
      hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
      return false;  // stray continuation byte, C0/C1 overlong lead, F5..FF
    }
    if (n - i < len) {
      return false;  // truncated at the end
    }
    const auto second = static_cast<unsigned char>(bytes[i + 1]);
    if (second < lo || second > hi) {
      return false;
    }
    for (std::size_t k = 2; k < len; ++k) {
      const auto cont = static_cast<unsigned char>(bytes[i + k]);
      if (cont < 0x80 || cont > 0xBF) {
        return false;
      }
    }
    i += len;
  }
  return true;
}

std::string formatRfc3339Millis(std::chrono::system_clock::time_point time) {
  using namespace std::chrono;
  const auto ms = floor<milliseconds>(time.time_since_epoch());
  const auto secs = floor<seconds>(ms);
  const auto millis = static_cast<int>((ms - secs).count());
  const std::time_t t = static_cast<std::time_t>(secs.count());
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) {
    return "1970-01-01T00:00:00.000Z";  // out of range for struct tm; cannot happen for real clocks
  }
  char buf[96];  // ample for any int fields; the format is 24 bytes for real dates
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
  return buf;
}

bool refusedByLimit(const DecisionRecord& record) {
  using namespace limit_rule;
  if (!record.ruleWhere.empty()) {
    return false;  // a rule of the admin's, whatever its name
  }
  for (std::string_view limit : {kMaxMessageSize, kMaxHeaderSize, kMaxRecipients, kBareNewlines,
                                 kMessageLineLength, kSpool}) {
    if (record.rule == limit) {
      return true;
    }
  }
  return false;
}

std::string toJsonLine(const DecisionRecord& r) {
  Flags flags;
  Json j;
  j["time"] = formatRfc3339Millis(r.time);
  j["session"] = clip(r.session, "session", flags);
  j["client_ip"] = clip(r.clientIp, "client_ip", flags);
  putIfSet(j, "client_ptr", r.clientPtr, flags);
  j["helo"] = clip(r.helo, "helo", flags);
  j["sender"] = clip(r.sender, "sender", flags);
  j["rcpts"] = clipList(r.rcpts, "rcpts", flags);
  j["stage"] = clip(r.stage, "stage", flags);
  j["action"] = clip(r.action, "action", flags);
  putIfSet(j, "rule", r.rule, flags);
  putIfSet(j, "rule_where", r.ruleWhere, flags);
  j["reply"] = clip(r.reply, "reply", flags);
  j["score"] = r.score;  // NaN and infinities become null
  putIfSet(j, "spf", r.spf, flags);
  putIfSet(j, "dkim", r.dkim, flags);
  putIfSet(j, "dmarc", r.dmarc, flags);
  putIfSet(j, "message_id", r.messageId, flags);
  putIfSet(j, "subject", r.subject, flags);
  putIfSet(j, "queue_id", r.queueId, flags);
  j["ruleset"] = clip(r.rulesetHash, "ruleset", flags);
  j["frontend"] = clip(r.frontend, "frontend", flags);
  j["score_rules"] = clipList(r.scoreRules, "score_rules", flags);
  if (r.transaction != 0) {
    j["transaction"] = r.transaction;
  }
  putListIfSet(j, "rcpts_passed", r.rcptsPassed, flags);
  putListIfSet(j, "rcpts_backend_refused", r.rcptsBackendRefused, flags);
  putListIfSet(j, "facts", r.facts, flags);
  if (!flags.invalidUtf8.empty()) {
    j["invalid_utf8"] = flagArray(flags.invalidUtf8);
  }
  if (!flags.truncated.empty()) {
    j["truncated"] = flagArray(flags.truncated);
  }
  // indent -1: one line; replace: invalid UTF-8 becomes U+FFFD instead of a throw.
  return escapeLineSeparators(j.dump(-1, ' ', false, Json::error_handler_t::replace));
}

std::unique_ptr<DecisionLog> DecisionLog::open(const std::string& path, std::string& error) {
  if (path.empty()) {
    error = "decision log path is empty";
    return nullptr;
  }
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty() && !std::filesystem::is_directory(parent, ec)) {
    error = "cannot open decision log " + path + ": directory " + parent.string() +
            " does not exist (create it, writable by the smtpgate user)";
    return nullptr;
  }
  const int fd = openForAppend(path);
  if (fd < 0) {
    error = "cannot open decision log " + path + ": " + errnoText(errno);
    return nullptr;
  }
  return std::unique_ptr<DecisionLog>(new DecisionLog(path, fd));
}

DecisionLog::~DecisionLog() {
  DecisionLog* self = this;
  gSignalLog.compare_exchange_strong(self, nullptr);
  ::close(fd_);
}

bool DecisionLog::reopenOnSignal(DecisionLog* log, int signo) {
  gSignalLog.store(log, std::memory_order_release);
  struct sigaction sa {};
  sa.sa_handler = onReopenSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // a rotation must not make other syscalls fail with EINTR
  return ::sigaction(signo, &sa, nullptr) == 0;
}

bool DecisionLog::write(const DecisionRecord& record) {
  std::string line = toJsonLine(record);
  line += '\n';
  std::lock_guard<std::mutex> lock(mutex_);
  if (reopenRequested_.exchange(false, std::memory_order_relaxed)) {
    reopenLocked();
  }
  return appendLocked(line);
}

std::string DecisionLog::lastError() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return lastError_;
}

void DecisionLog::reopenLocked() {
  const int fd = openForAppend(path_);
  if (fd < 0) {
    // Keep the old descriptor (the renamed file): a late rotation beats lost lines.
    lastError_ = "cannot reopen decision log " + path_ + ": " + errnoText(errno);
    reopenRequested_.store(true, std::memory_order_relaxed);  // try again next write
    return;
  }
  ::close(fd_);
  fd_ = fd;
}

bool DecisionLog::appendLocked(const std::string& line) {
  // One write(2) for the whole line: with O_APPEND the kernel places it at the
  // end atomically, so other writers of the same file cannot split it. The
  // loop only finishes a short write (disk full, signal after partial write).
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      lastError_ = "cannot write decision log " + path_ + ": " + errnoText(errno);
      return false;
    }
    if (n == 0) {
      lastError_ = "cannot write decision log " + path_ + ": no progress (disk full?)";
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace smtpgate::policies
