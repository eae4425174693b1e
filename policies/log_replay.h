#pragma once
/// LogReplay — the envelope stages (connect, HELO, MAIL, RCPT) of logged
/// sessions, run again against a candidate rule set, and what would change
/// (`smtpgate replay`; docs/log.md "What would a rule change?").
///
/// Input: decision log entries (decoded with at least `kFields`), in the
/// order the files hold them. Lines are grouped by session id; a session is
/// replayed once no line of it has come for `sessionHorizon` of log time, or
/// at finish(), or when a line with its id but another client address comes
/// (ids are random 32-bit numbers, so over a week some repeat). Each
/// replayed session goes to the sink, in no fixed order.
///
/// Rebuilding a session from its lines (decision_log.h, recorded_facts.h):
///  * connect: `client_ip`; client.port, local.port and pregreet from `facts`;
///  * HELO: a helo-stage line is a refused HELO; a HELO name first seen on a
///    later line is a HELO that passed;
///  * MAIL: one per `transaction` number, sender and mail.size from the
///    transaction's first line, SPF (`spf`, spf.explanation) from any of its
///    lines;
///  * RCPT: in order, each line's `rcpts_passed`, then a rcpt line's own
///    recipient; one in `rcpts_backend_refused` is dropped again after the
///    candidate lets it through, as the backend would refuse it again;
///  * DNS facts (client.ptr, client.fcrdns, DNSBL answers) that any line of
///    the session recorded hold for the whole session; TLS facts are the
///    line's own.
/// Stages run in that order on one Policy of the candidate rules in replay
/// mode (Policy::replayWith): nothing is looked up.
///
/// Comparing: a stage's old outcome is its line's action and rule, or
/// "passed" where it has no line (the log keeps refusals and would-be
/// refusals only). The new outcome is what the candidate would log. They
/// differ when the action (reject, tempfail, would-reject, would-tempfail,
/// or none) or the rule differs: newly refused (passed → reject/tempfail),
/// newly accepted (reject/tempfail → passed or would-*), or otherwise
/// changed (another refusal, another rule, a would-* appears or goes).
/// Stages the candidate never reaches (after it refused the connection, the
/// HELO before a MAIL, or a MAIL) are not compared; after a refusal the
/// candidate lifts, the log cannot say what the client would have sent, so
/// that transaction (or session, at connect) ends there.
///
/// Undecidable: a rule whose result is unknown because a fact it reads is
/// not in the log (a DNS fact, or DNSBL, that no live rule needed) could
/// change the outcome; the session is then undecidable from that stage on
/// and the missing facts are named. Changes found before that stage stand.
/// Lines without `facts` (written by an older smtpgate) cannot be rebuilt:
/// their sessions are NotReplayable. `smtpgate check` lines are no sessions
/// and are skipped.
///
/// Not seen, hence never reported: sessions that left no line at all,
/// transactions that ended without a line (RSET or QUIT before DATA with
/// nothing refused), recipients after the last line of such a transaction,
/// and everything at DATA (the log keeps no message).
///
/// Memory: the lines of the sessions still open (within the horizon of the
/// newest line), and nothing of those already replayed.
///
/// Threads: one LogReplay per thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "policies/decision_log_reader.h"
#include "policies/policy.h"
#include "rules/rule_set.h"

namespace smtpgate::policies {

enum class ReplayKind {
  Unchanged,
  NewlyRefused,
  NewlyAccepted,
  Changed,
  Undecidable,
  NotReplayable
};

/// "unchanged", "newly-refused", "newly-accepted", "changed", "undecidable", "not-replayable".
std::string_view toString(ReplayKind kind);

/// One stage's outcome as the log has it (or would have it).
struct ReplayOutcome {
  std::string action;  ///< reject, tempfail, would-reject, would-tempfail; empty: passed (no line)
  std::string rule;
  std::string reply;
  [[nodiscard]] bool refused() const { return isRefusal(action); }
  friend bool operator==(const ReplayOutcome&, const ReplayOutcome&) = default;
};

struct ReplayChange {
  ReplayKind kind = ReplayKind::Changed;  ///< NewlyRefused, NewlyAccepted or Changed
  rules::Stage stage = rules::Stage::Connect;
  std::string subject;  ///< the HELO name, sender or recipient of the stage
  LogTime time;         ///< of the line the stage was rebuilt from
  ReplayOutcome before;
  ReplayOutcome after;
  std::string note;  ///< why the candidate skipped the stage's rules, if it did
};

struct ReplayedSession {
  std::string id;
  LogTime time;  ///< of its first line
  std::string clientIp;
  /// The sender of its first transaction as logged ("" is the null sender);
  /// none if the session never got to MAIL FROM.
  std::optional<std::string> sender;
  std::size_t lines = 0;
  ReplayKind kind = ReplayKind::Unchanged;
  std::vector<ReplayChange> changes;
  // Set when replay stopped at a stage it could not decide (or could not start).
  std::string undecidableStage;  ///< "connect" ... "rcpt"; empty: none
  std::string undecidableSubject;
  std::vector<std::string> missingFacts;  ///< field names, "dnsbl:QUERYNAME"
  std::string reason;                     ///< one line, for Undecidable and NotReplayable
};

struct ReplayOptions {
  rules::RuleSetPtr rules;  ///< the candidate
  /// dryRun and dnsFailure matter; the resolver is ignored (replay looks nothing up).
  PolicyOptions policy = {};
  /// A session with no line for this long (log time) is complete.
  std::chrono::seconds sessionHorizon{std::chrono::hours(2)};
};

class LogReplay {
 public:
  using Sink = std::function<void(ReplayedSession&&)>;

  /// The keys `add` reads.
  static constexpr LogFieldMask kFields = kFieldSession | kFieldClientIp | kFieldHelo |
                                          kFieldSender | kFieldRcpts | kFieldStage | kFieldAction |
                                          kFieldRule | kFieldReply | kFieldSpf | kFieldFrontend |
                                          kFieldTruncated | kEnvelopeLogFields;

  LogReplay(ReplayOptions options, Sink sink);

  /// One line, in file order; sessions idle past the horizon are replayed.
  void add(const LogEntry& entry);
  /// Replays every session still open.
  void finish();

  /// `smtpgate check` lines seen (and skipped).
  [[nodiscard]] std::uint64_t checkLines() const { return checkLines_; }

 private:
  struct Pending {
    std::vector<LogEntry> lines;
    LogTime last;
  };
  void sweep(LogTime now);
  ReplayedSession replay(const std::vector<LogEntry>& lines) const;

  ReplayOptions options_;
  Sink sink_;
  std::unordered_map<std::string, Pending> open_;
  LogTime lastSweep_{};
  std::uint64_t checkLines_ = 0;
};

/// The counts `smtpgate replay` prints, one session at a time.
struct ReplaySummary {
  std::uint64_t sessions = 0;
  std::map<ReplayKind, std::uint64_t> byKind;
  /// Newly refused sessions by the candidate rule that refuses them.
  std::map<std::string, std::uint64_t> refusedByRule;
  /// Newly accepted sessions by the rule that refused them before.
  std::map<std::string, std::uint64_t> acceptedByRule;
  /// Undecidable sessions by each fact they lacked.
  std::map<std::string, std::uint64_t> missingFacts;

  void add(const ReplayedSession& session);
  [[nodiscard]] std::uint64_t count(ReplayKind kind) const;
  /// Sessions whose outcome changes (newly refused, newly accepted, changed).
  [[nodiscard]] std::uint64_t changed() const;
};

}  // namespace smtpgate::policies
