#pragma once
/// DecisionLog — the append-only JSON Lines file of every verdict smtpgate gives.
///
/// One decision is one line: a JSON object built by `toJsonLine()` and appended
/// with a single write(2) on a descriptor opened O_APPEND, so lines from several
/// threads, and from several smtpgate processes sharing the file (proxy and
/// milter), never interleave. `smtpgate log` and `smtpgate report` read it; the
/// keys below are a public, stable interface (add keys, never rename them).
///
/// Keys, in this order: `time` (RFC 3339 UTC with milliseconds), `session`,
/// `client_ip`, `client_ptr`, `helo`, `sender`, `rcpts` (array), `stage`,
/// `action`, `rule`, `rule_where`, `reply`, `score`, `spf`, `dkim`, `dmarc`,
/// `message_id`, `subject`, `queue_id`, `ruleset`, `frontend`, `score_rules`
/// (array), then the envelope keys `smtpgate replay` rebuilds a session from:
/// `transaction` (number), `rcpts_passed`, `rcpts_backend_refused` and `facts`
/// (arrays). Empty `client_ptr`, `rule`, `rule_where`, `spf`, `dkim`, `dmarc`,
/// `message_id`, `subject`, `queue_id`, a zero `transaction` and the empty
/// envelope arrays are left out to keep lines short; all other keys are always
/// present (an empty `sender` is the null sender `<>`). Two flag keys appear
/// only when needed: `invalid_utf8` and `truncated`, each an array naming the
/// keys whose value was repaired or cut. Lines written before the envelope
/// keys existed simply lack them; readers treat a missing key as empty.
///
/// Log rotation: logrotate renames the file and sends SIGUSR1 (or SIGHUP,
/// whichever the daemon routes here). `requestReopen()` only sets an atomic
/// flag; the next `write()` opens the path again before writing, so no line is
/// lost and the signal handler does nothing unsafe.
///
/// Thread-safety: `write()`, `lastError()` and `requestReopen()` may be called
/// from any thread at once; `requestReopen()` also from a signal handler.
/// `toJsonLine()` is a pure function.
///
/// Errors: `open()` returns null with a one-line reason (missing directory,
/// permission). `write()` returns false when the line could not be written
/// completely (disk full, I/O error) and keeps the reason in `lastError()`; it
/// never throws. If a reopen fails, the log keeps writing to the old
/// descriptor (the renamed file), records the reason in `lastError()` and
/// tries again at the next write: losing lines is worse than a late rotation.
///
/// Limits: each string value is cut at `kMaxFieldBytes` bytes (on a UTF-8
/// character boundary) and each array at `kMaxListItems` entries;
/// cut keys are named in `truncated`. A line is therefore bounded at roughly
/// 20 × 4 KiB plus the lists, whatever the peer sends.
///
/// SECURITY: almost every field is bytes from the network (HELO, envelope
/// addresses, Subject, Message-ID, PTR names, backend replies). The output is
/// valid single-line JSON for any input: control characters (CR, LF, NUL, ESC,
/// ...) are escaped by nlohmann::json, invalid UTF-8 (overlongs, surrogates,
/// code points above U+10FFFF, truncated sequences, stray continuation bytes)
/// is replaced by U+FFFD and the key is flagged in `invalid_utf8`, and U+2028 /
/// U+2029 are written as \u escapes so a line stays one line even for
/// JavaScript readers (the HTML report). A reader must still treat every
/// value as untrusted text.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace smtpgate::policies {

/// One decision, as the frontends report it to the log.
struct DecisionRecord {
  std::chrono::system_clock::time_point time;
  std::string session;  ///< short session id, e.g. "4F2A9C01"
  std::string clientIp, clientPtr, helo, sender;
  std::vector<std::string> rcpts;
  std::string stage;      ///< "connect" | "helo" | "mail" | "rcpt" | "data"
  std::string action;     ///< "accept" | "tempfail" | "reject" | "deliver" | "would-reject" | ...
  std::string rule;       ///< rule id, empty if no rule decided
  std::string ruleWhere;  ///< "path/to/file.rules:12"
  std::string reply;      ///< full reply line sent, e.g. "550 5.7.1 ..."
  double score = 0;
  std::string spf, dkim, dmarc;  ///< empty = not computed (the key is left out)
  std::string messageId, subject, queueId;
  std::string rulesetHash;
  std::string frontend;                 ///< "proxy" | "milter" | "check"
  std::vector<std::string> scoreRules;  ///< ids of score rules that added
  // The envelope, for `smtpgate replay` (Policy::record fills these; see docs/log.md).
  /// Which MAIL FROM of the session this line belongs to (1, 2, ...); 0 before the first.
  std::uint32_t transaction = 0;
  /// Recipients of this transaction the rules let through since the previous
  /// line of the session, in RCPT order; a rcpt line's own recipient is in `rcpts`.
  std::vector<std::string> rcptsPassed;
  /// Recipients the rules let through but the backend then refused, since the previous line.
  std::vector<std::string> rcptsBackendRefused;
  /// "field=value" facts of the session and transaction that no other key
  /// holds (client.port, tls, mail.size, DNS facts that were looked up, ...).
  std::vector<std::string> facts;
};

/// Longest string value written, in bytes; longer values are cut and flagged.
inline constexpr std::size_t kMaxFieldBytes = 4096;
/// Most entries written for `rcpts` and `score_rules` (Postfix's
/// smtpd_recipient_limit default is 1000 too).
inline constexpr std::size_t kMaxListItems = 1000;

/// The record as exactly one line of JSON, without the trailing newline.
std::string toJsonLine(const DecisionRecord& record);

/// The `rule` of a line that records a refusal by one of the proxy's limits
/// rather than by a rule: the limit's config key (or, for limits without
/// one, its name). Such lines have no `rule_where`.
namespace limit_rule {
inline constexpr std::string_view kMaxMessageSize = "max_message_size";
inline constexpr std::string_view kMaxHeaderSize = "max_header_size";
inline constexpr std::string_view kMaxRecipients = "max_recipients";
inline constexpr std::string_view kBareNewlines = "bare_newlines";
inline constexpr std::string_view kMessageLineLength = "message_line_length";
inline constexpr std::string_view kSpool = "spool";
}  // namespace limit_rule

/// True if `record` is a refusal by one of those limits, not by a rule.
bool refusedByLimit(const DecisionRecord& record);

/// RFC 3339 UTC with milliseconds: "2026-11-23T09:01:02.345Z".
std::string formatRfc3339Millis(std::chrono::system_clock::time_point time);

/// True if `bytes` is well-formed UTF-8 (RFC 3629): no overlong forms, no
/// surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequence.
bool isValidUtf8(std::string_view bytes) noexcept;

class DecisionLog {
 public:
  /// Opens (creating if needed, mode 0640) `path` for appending. The parent
  /// directory must exist: it is not created, and its absence is reported as
  /// such in `error`. Returns null on failure.
  static std::unique_ptr<DecisionLog> open(const std::string& path, std::string& error);

  /// Installs a SIGACTION handler for `signo` (normally SIGUSR1) that calls
  /// `requestReopen()` on `log`. Only one log at a time receives the signal:
  /// a later call replaces the target, and `log == nullptr` detaches it (the
  /// handler stays installed and then does nothing). The log detaches itself
  /// when destroyed. Returns false if sigaction(2) refused `signo`.
  static bool reopenOnSignal(DecisionLog* log, int signo);

  ~DecisionLog();
  DecisionLog(const DecisionLog&) = delete;
  DecisionLog& operator=(const DecisionLog&) = delete;

  /// Appends one line. Thread-safe; one write(2) per line. False on error
  /// (see `lastError()`).
  bool write(const DecisionRecord& record);

  /// Makes the next `write()` reopen the path first. Async-signal-safe.
  void requestReopen() noexcept { reopenRequested_.store(true, std::memory_order_relaxed); }

  /// The reason of the most recent failure (write or reopen); empty if none.
  [[nodiscard]] std::string lastError() const;

  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  DecisionLog(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  void reopenLocked();
  bool appendLocked(const std::string& line);

  static_assert(std::atomic<bool>::is_always_lock_free, "signal handler needs a lock-free flag");

  const std::string path_;
  mutable std::mutex mutex_;
  int fd_;                 // guarded by mutex_
  std::string lastError_;  // guarded by mutex_
  std::atomic<bool> reopenRequested_{false};
};

using DecisionLogPtr = std::unique_ptr<DecisionLog>;

}  // namespace smtpgate::policies
