#include "policies/log_replay.h"

#include <algorithm>
#include <optional>
#include <set>
#include <utility>

namespace smtpgate::policies {

namespace {

using rules::FieldId;
using rules::Stage;

/// The outcome a logged line records; actions that refuse nothing and have no
/// "would" (accept, continue: only `smtpgate check` writes them) count as passed.
ReplayOutcome outcomeOf(const LogEntry& line) {
  const DecisionRecord& r = line.record;
  if (r.action == "reject" || r.action == "tempfail" || r.action == "would-reject" ||
      r.action == "would-tempfail") {
    return {r.action, r.rule, r.reply};
  }
  return {};
}

ReplayOutcome outcomeOf(const Verdict& v) {
  if (!v.refuses() && !v.wouldBe) {
    return {};
  }
  return {v.logAction(), v.ruleId, v.reply ? v.reply->line() : std::string()};
}

bool isTerminal(const rules::Rule& rule) {
  return rule.action != rules::RuleAction::Score;
}

/// True if some rule that could have decided the stage came out unknown:
/// an accept/tempfail/reject rule before the decisive one, or a monitor rule
/// when no rule decided (a monitor reports only then).
bool unknownMatters(const StageReport& report) {
  const auto& traces = report.rules;
  const bool decided = !traces.empty() && traces.back().result == rules::Tri::True &&
                       isTerminal(*traces.back().rule) && !traces.back().rule->monitor;
  return std::any_of(traces.begin(), traces.end(), [&](const rules::RuleTrace& t) {
    return t.result == rules::Tri::Unknown && isTerminal(*t.rule) && (!t.rule->monitor || !decided);
  });
}

double numberFact(const RecordedFacts& facts, FieldId id, double fallback) {
  const rules::FactValue* v = facts.find(id);
  const double* n = v != nullptr ? std::get_if<double>(v) : nullptr;
  return n != nullptr ? *n : fallback;
}

bool truncatedEnvelope(const LogEntry& line) {
  static constexpr std::string_view kKeys[] = {"rcpts", "rcpts_passed", "rcpts_backend_refused",
                                               "facts", "helo",         "sender"};
  return std::any_of(line.truncated.begin(), line.truncated.end(), [](const std::string& key) {
    return std::find(std::begin(kKeys), std::end(kKeys), key) != std::end(kKeys);
  });
}

/// Replays one session's lines; see the header for the rebuilding rules.
class SessionReplay {
 public:
  SessionReplay(const ReplayOptions& options, const std::vector<LogEntry>& lines)
      : lines_(lines),
        policy_(options.rules, lines.front().record.session, policyOptions(options)) {
    policy_.reportTo(&reports_);
  }

  ReplayedSession run();

 private:
  static PolicyOptions policyOptions(const ReplayOptions& options) {
    PolicyOptions o = options.policy;
    o.resolver = nullptr;
    o.frontend = "replay";
    return o;
  }

  void collectFacts();
  RecordedFacts factsFor(const LogEntry& line) const;
  bool connect();
  bool helo(const LogEntry& line);
  void mail(const LogEntry& line);
  bool rcpts(const LogEntry& line);
  bool rcpt(const LogEntry& line, const std::string& address, const ReplayOutcome& before);
  bool judge(Stage stage, const std::string& subject, const LogEntry& line,
             const ReplayOutcome& before, const Verdict& v);
  void stop(ReplayKind kind, std::string reason) {
    out_.kind = kind;
    out_.reason = std::move(reason);
  }

  const std::vector<LogEntry>& lines_;
  Policy policy_;
  std::vector<StageReport> reports_;
  ReplayedSession out_;
  RecordedFacts session_;                                ///< session-wide facts
  std::map<std::uint32_t, RecordedFacts> transactions_;  ///< spf, mail.size by transaction
  std::map<std::uint32_t, std::multiset<std::string>> backendRefused_;
  std::optional<std::string> helo_;  ///< the HELO name in force
  bool heloPassed_ = true;           ///< the candidate let the last HELO through
  std::uint32_t transaction_ = 0;
  bool transactionOpen_ = false;  ///< the candidate and the log both go on in this transaction
};

ReplayedSession SessionReplay::run() {
  const DecisionRecord& first = lines_.front().record;
  out_.id = first.session;
  out_.time = first.time;
  out_.clientIp = first.clientIp;
  out_.lines = lines_.size();
  for (const LogEntry& line : lines_) {
    if (!out_.sender && line.record.transaction > 0) {
      out_.sender = line.record.sender;
    }
  }
  for (const LogEntry& line : lines_) {
    if (line.record.facts.empty()) {
      stop(ReplayKind::NotReplayable,
           "logged without envelope facts (by an smtpgate older than replay)");
      return std::move(out_);
    }
    if (truncatedEnvelope(line)) {
      stop(ReplayKind::Undecidable, "the envelope was cut short in the log");
      return std::move(out_);
    }
  }
  collectFacts();
  if (connect()) {
    for (std::size_t i = lines_.front().record.stage == "connect" ? 1 : 0; i < lines_.size(); ++i) {
      const LogEntry& line = lines_[i];
      if (line.record.stage == "connect") {
        continue;
      }
      policy_.replayWith(factsFor(line));
      if (!helo(line) || line.record.stage == "helo") {
        if (out_.kind == ReplayKind::Undecidable) {
          break;
        }
        continue;
      }
      mail(line);
      if (out_.kind == ReplayKind::Undecidable || !rcpts(line)) {
        break;
      }
    }
  }
  if (!out_.changes.empty()) {
    const auto has = [&](ReplayKind k) {
      return std::any_of(out_.changes.begin(), out_.changes.end(),
                         [k](const ReplayChange& c) { return c.kind == k; });
    };
    out_.kind = has(ReplayKind::NewlyRefused)    ? ReplayKind::NewlyRefused
                : has(ReplayKind::NewlyAccepted) ? ReplayKind::NewlyAccepted
                                                 : ReplayKind::Changed;
  }
  return std::move(out_);
}

void SessionReplay::collectFacts() {
  for (const LogEntry& line : lines_) {
    const DecisionRecord& r = line.record;
    session_.addItems(r.facts);
    if (r.transaction > 0) {
      RecordedFacts& tx = transactions_[r.transaction];
      if (tx.find(FieldId::MailSize) == nullptr) {  // the transaction's first line
        tx.addItems(r.facts);
      }
      tx.addSpf(r.spf);
      for (const std::string& item : r.facts) {
        if (item.starts_with("spf.explanation=")) {
          tx.addItems({item});
        }
      }
      backendRefused_[r.transaction].insert(r.rcptsBackendRefused.begin(),
                                            r.rcptsBackendRefused.end());
    }
  }
  // Per line or per transaction, not per session.
  for (FieldId id : {FieldId::Tls, FieldId::TlsVersion, FieldId::TlsCipher, FieldId::MailSize,
                     FieldId::Spf, FieldId::SpfExplanation}) {
    session_.values.erase(id);
  }
}

RecordedFacts SessionReplay::factsFor(const LogEntry& line) const {
  RecordedFacts facts = session_;
  for (const std::string& item : line.record.facts) {
    if (item.starts_with("tls")) {  // tls, tls.version, tls.cipher: as at this line
      facts.addItems({item});
    }
  }
  if (auto it = transactions_.find(line.record.transaction); it != transactions_.end()) {
    for (FieldId id : {FieldId::MailSize, FieldId::Spf, FieldId::SpfExplanation}) {
      if (const rules::FactValue* v = it->second.find(id)) {
        facts.values[id] = *v;
      }
    }
  }
  return facts;
}

bool SessionReplay::connect() {
  const LogEntry& first = lines_.front();
  const auto ip = rules::IpAddress::parse(first.record.clientIp);
  if (!ip) {
    stop(ReplayKind::Undecidable, "client_ip is not an IP address");
    return false;
  }
  const RecordedFacts facts = factsFor(first);
  ConnectInfo client;
  client.ip = *ip;
  client.port = static_cast<std::uint16_t>(numberFact(facts, FieldId::ClientPort, 0));
  client.localPort = static_cast<std::uint16_t>(numberFact(facts, FieldId::LocalPort, 25));
  policy_.replayWith(facts);
  const ReplayOutcome before = first.record.stage == "connect" ? outcomeOf(first) : ReplayOutcome{};
  const Verdict v = policy_.onConnect(client);
  // After a refused connection neither run goes on (the log has nothing more).
  return judge(Stage::Connect, first.record.clientIp, first, before, v) && !v.refuses() &&
         !before.refused();
}

/// A HELO, if this line shows one; false when the line is consumed or replay stops.
bool SessionReplay::helo(const LogEntry& line) {
  const DecisionRecord& r = line.record;
  const bool refusedHelo = r.stage == "helo";
  if (!refusedHelo && (r.helo.empty() || r.helo == helo_)) {
    return true;
  }
  helo_ = r.helo;
  policy_.onReset();  // HELO/EHLO ends any transaction (RFC 5321 4.1.4)
  transactionOpen_ = false;
  const Verdict v = policy_.onHelo(r.helo);
  heloPassed_ = !v.refuses();
  return judge(Stage::Helo, r.helo, line, refusedHelo ? outcomeOf(line) : ReplayOutcome{}, v);
}

/// A MAIL, if this line starts a transaction.
void SessionReplay::mail(const LogEntry& line) {
  const DecisionRecord& r = line.record;
  if (r.transaction == 0 || r.transaction == transaction_) {
    return;
  }
  transaction_ = r.transaction;
  transactionOpen_ = false;
  if (!heloPassed_) {
    return;  // the candidate refused the HELO before it: this MAIL never comes
  }
  const ReplayOutcome before = r.stage == "mail" ? outcomeOf(line) : ReplayOutcome{};
  policy_.onReset();
  const RecordedFacts facts = factsFor(line);
  const Verdict v = policy_.onMail(r.sender, numberFact(facts, FieldId::MailSize, 0));
  if (judge(Stage::Mail, r.sender.empty() ? "<>" : r.sender, line, before, v)) {
    transactionOpen_ = !v.refuses() && !before.refused();
  }
}

/// The recipients this line adds; false when replay stops.
bool SessionReplay::rcpts(const LogEntry& line) {
  const DecisionRecord& r = line.record;
  if (!transactionOpen_ || r.transaction != transaction_) {
    return true;
  }
  for (const std::string& address : r.rcptsPassed) {
    if (!rcpt(line, address, {})) {
      return false;
    }
  }
  // A recipient refused by a limit (max_recipients) never reached the rules,
  // and the limit would refuse it again whatever they say.
  if (r.stage == "rcpt" && !r.rcpts.empty() && !refusedByLimit(r)) {
    return rcpt(line, r.rcpts.front(), outcomeOf(line));
  }
  return true;
}

bool SessionReplay::rcpt(const LogEntry& line, const std::string& address,
                         const ReplayOutcome& before) {
  const Verdict v = policy_.onRcpt(address);
  if (!v.refuses()) {
    auto& refused = backendRefused_[transaction_];
    if (auto it = refused.find(address); it != refused.end()) {
      policy_.dropLastRcpt();  // the backend refused it live and would again
      refused.erase(it);
    }
  }
  return judge(Stage::Rcpt, address, line, before, v);
}

bool SessionReplay::judge(Stage stage, const std::string& subject, const LogEntry& line,
                          const ReplayOutcome& before, const Verdict& v) {
  const StageReport report = reports_.empty() ? StageReport{} : std::move(reports_.back());
  reports_.clear();
  std::vector<std::string> missing = policy_.takeMissingFacts();
  if (unknownMatters(report)) {
    out_.undecidableStage = std::string(rules::toString(stage));
    out_.undecidableSubject = subject;
    out_.missingFacts = std::move(missing);
    stop(ReplayKind::Undecidable, out_.missingFacts.empty()
                                      ? "a rule's result is unknown"
                                      : "a rule reads facts the log does not have");
    return false;
  }
  const ReplayOutcome after = outcomeOf(v);
  if (before.action == after.action && before.rule == after.rule) {
    return true;
  }
  ReplayChange change;
  change.kind = !before.refused() && after.refused()   ? ReplayKind::NewlyRefused
                : before.refused() && !after.refused() ? ReplayKind::NewlyAccepted
                                                       : ReplayKind::Changed;
  change.stage = stage;
  change.subject = subject;
  change.time = line.record.time;
  change.before = before;
  change.after = after;
  change.note = report.skipped;
  out_.changes.push_back(std::move(change));
  return true;
}

}  // namespace

std::string_view toString(ReplayKind kind) {
  switch (kind) {
    case ReplayKind::Unchanged:
      return "unchanged";
    case ReplayKind::NewlyRefused:
      return "newly-refused";
    case ReplayKind::NewlyAccepted:
      return "newly-accepted";
    case ReplayKind::Changed:
      return "changed";
    case ReplayKind::Undecidable:
      return "undecidable";
    case ReplayKind::NotReplayable:
      return "not-replayable";
  }
  return "?";
}

LogReplay::LogReplay(ReplayOptions options, Sink sink)
    : options_(std::move(options)), sink_(std::move(sink)) {}

void LogReplay::add(const LogEntry& entry) {
  if (entry.record.frontend == "check") {
    ++checkLines_;  // an offline `smtpgate check`, not a session
    return;
  }
  Pending& p = open_[entry.record.session];
  if (!p.lines.empty() && p.lines.front().record.clientIp != entry.record.clientIp) {
    // Session ids are random 32-bit numbers: another client got the same one.
    sink_(replay(p.lines));
    p.lines.clear();
  }
  p.lines.push_back(entry);
  p.last = std::max(p.last, entry.record.time);
  if (entry.record.time - lastSweep_ > options_.sessionHorizon / 4) {
    sweep(entry.record.time);
  }
}

void LogReplay::sweep(LogTime now) {
  lastSweep_ = now;
  for (auto it = open_.begin(); it != open_.end();) {
    if (now - it->second.last > options_.sessionHorizon) {
      sink_(replay(it->second.lines));
      it = open_.erase(it);
    } else {
      ++it;
    }
  }
}

void LogReplay::finish() {
  // Oldest first, so the sink sees a stable order.
  std::vector<std::pair<LogTime, std::string>> order;
  for (const auto& [id, p] : open_) {
    order.emplace_back(p.lines.front().record.time, id);
  }
  std::sort(order.begin(), order.end());
  for (const auto& [time, id] : order) {
    sink_(replay(open_[id].lines));
  }
  open_.clear();
}

ReplayedSession LogReplay::replay(const std::vector<LogEntry>& lines) const {
  return SessionReplay(options_, lines).run();
}

void ReplaySummary::add(const ReplayedSession& s) {
  ++sessions;
  ++byKind[s.kind];
  std::set<std::string> refusedBy;
  std::set<std::string> acceptedBy;
  for (const ReplayChange& c : s.changes) {
    if (c.kind == ReplayKind::NewlyRefused) {
      refusedBy.insert(c.after.rule);
    } else if (c.kind == ReplayKind::NewlyAccepted) {
      acceptedBy.insert(c.before.rule);
    }
  }
  for (const std::string& rule : refusedBy) {
    ++refusedByRule[rule];
  }
  for (const std::string& rule : acceptedBy) {
    ++acceptedByRule[rule];
  }
  if (s.kind == ReplayKind::Undecidable) {
    for (const std::string& fact : s.missingFacts) {
      ++missingFacts[fact];
    }
  }
}

std::uint64_t ReplaySummary::count(ReplayKind kind) const {
  const auto it = byKind.find(kind);
  return it == byKind.end() ? 0 : it->second;
}

std::uint64_t ReplaySummary::changed() const {
  return count(ReplayKind::NewlyRefused) + count(ReplayKind::NewlyAccepted) +
         count(ReplayKind::Changed);
}

}  // namespace smtpgate::policies
