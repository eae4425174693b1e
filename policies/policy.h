#pragma once
/// Policy — one per SMTP session: turns each stage into a Verdict.
///
/// The proxy, the milter and `smtpgate check` all call the same methods in
/// SMTP order (onConnect, onHelo, onMail, onRcpt..., onEndOfData, onReset).
/// Each runs the loaded rules of its stage over facts computed lazily (only
/// when a rule reads them, through rules::FactSource) and applies the
/// semantics of DESIGN.md: the first terminal rule decides; accept at
/// connect/helo covers the session, at mail the transaction, at rcpt the
/// recipient; score rules add up and thresholds are checked at end of DATA;
/// monitor rules and dry-run mode log "would-*" and let the mail through.
///
/// Thread-safety: a Policy belongs to one session and is used from one
/// thread (or strand) at a time. The RuleSet it holds is shared and
/// immutable; a reload never changes the rules of a running session.
///
/// Facts that need DNS (client.ptr, spf, dkim, dmarc, dnsbl) are reported
/// unavailable until a resolver is wired in; rules reading them never fire.

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "policies/decision_log.h"
#include "policies/session.h"
#include "policies/verdict.h"
#include "rules/rule_set.h"

namespace smtpgate::policies {

struct PolicyOptions {
  bool dryRun = false;  ///< [rules] mode = "dry-run": decide and log, never refuse
  std::string frontend = "check";
};

/// What happened at one stage, for `smtpgate check` (collected only on request).
struct StageReport {
  Stage stage = Stage::Connect;
  std::string subject;                                     ///< e.g. the recipient, for rcpt
  std::vector<std::pair<std::string, std::string>> facts;  ///< field, described value
  std::vector<rules::RuleTrace> rules;
  std::vector<const rules::Rule*> scoreRules;
  std::string skipped;    ///< why the stage's rules did not run, if they didn't
  std::string threshold;  ///< "reject at 10 (file:line)" when a threshold decided
  Verdict verdict;
};

class Policy : private rules::FactSource {
 public:
  Policy(rules::RuleSetPtr rules, std::string sessionId, PolicyOptions options = {});
  ~Policy() override;

  Verdict onConnect(const ConnectInfo& client);
  Verdict onHelo(std::string_view helo, const TlsInfo& tls = {});
  Verdict onMail(std::string_view sender, double mailSize = 0);
  Verdict onRcpt(std::string_view rcpt);
  /// End of DATA with the whole message as received (dot-unstuffed).
  Verdict onEndOfData(std::string_view rawMessage);
  /// RSET, or the transaction ended: drop it.
  void onReset();
  /// The backend refused the recipient the last onRcpt let through.
  void dropLastRcpt();

  /// True if some rule reads the message (headers, body, size): a frontend
  /// that may skip keeping the message asks this.
  [[nodiscard]] bool needsMessage() const;
  [[nodiscard]] const Session& session() const { return session_; }
  [[nodiscard]] const Transaction* transaction() const { return tx_.get(); }
  [[nodiscard]] const rules::RuleSet& ruleSet() const { return *rules_; }

  /// The decision log line for a verdict of this session.
  [[nodiscard]] DecisionRecord record(const Verdict& verdict) const;

  /// Collect a StageReport per stage into `reports` (for `smtpgate check`).
  void reportTo(std::vector<StageReport>* reports) { reports_ = reports; }

 private:
  const rules::FactValue& fact(const rules::FieldRef& field) override;
  rules::FactValue computeFact(const rules::FieldRef& field) const;
  rules::FactValue messageFact(const rules::FieldRef& field) const;
  Verdict evaluate(Stage stage, std::string_view skipReason, std::string subject = {});
  Verdict decide(Stage stage, const rules::StageOutcome& outcome, StageReport* report);
  void addScore(const rules::StageOutcome& outcome);
  Verdict refusal(Stage stage, rules::RuleAction action, const rules::ReplyTemplate* reply,
                  std::string ruleId, std::string ruleWhere) const;
  std::string_view skipReasonFor(Stage stage) const;

  rules::RuleSetPtr rules_;
  PolicyOptions options_;
  Session session_;
  std::unique_ptr<Transaction> tx_;
  std::vector<StageReport>* reports_ = nullptr;
  std::string lastSender_;  ///< kept for the log after a refused MAIL ends the transaction
  std::string lastRcpt_;
  /// Facts computed during the current evaluation (values must outlive it).
  std::deque<std::pair<rules::FieldRef, rules::FactValue>> factCache_;
};

/// A short random session id (8 upper-case hex digits).
std::string newSessionId();

}  // namespace smtpgate::policies
