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
/// Facts that need DNS: with `PolicyOptions::resolver` set, client.ptr and
/// client.fcrdns are looked up once per session and spf/spf.explanation once
/// per transaction, each only when a rule of the stage reads it (DNSBL lists
/// look up through the resolver they were built with), and at end of DATA
/// dkim/dkim.domain (policies/dkim.h) and dmarc/dmarc.policy
/// (policies/dmarc.h, which also needs spf) once per message. These lookups
/// block the calling thread (bounded by the resolver's timeout and the
/// SPF/DKIM deadlines): the proxy must call the stage methods off its event
/// loop until an asynchronous prefetch lands. Without a resolver they are
/// unavailable and rules reading them never fire.
///
/// Authentication-Results: `authenticationResults()` is the value of the
/// header a frontend prepends at end of DATA (after removing incoming ones
/// for which `isForgedAuthenticationResults()` is true); it lists the
/// methods this transaction evaluated.
///
/// DNS failures: when a lookup that a rule of the stage needed failed
/// temporarily (PTR timeout, spf/dkim/dmarc temperror, DNSBL timeout) and no rule
/// decided, `[failure] dns = "tempfail"` (the default) answers 451 4.4.3 —
/// a dead DNS server neither accepts silently nor rejects; `"rules"` leaves
/// the decision to the rules (`spf == temperror`).

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policies/authentication_results.h"
#include "policies/config.h"
#include "policies/decision_log.h"
#include "policies/dkim.h"
#include "policies/dmarc.h"
#include "policies/dns_resolver.h"
#include "policies/reverse_dns.h"
#include "policies/session.h"
#include "policies/spf.h"
#include "policies/verdict.h"
#include "rules/rule_set.h"

namespace smtpgate::policies {

struct PolicyOptions {
  bool dryRun = false;  ///< [rules] mode = "dry-run": decide and log, never refuse
  std::string frontend = "check";
  // Every member below has an initializer, so `{dryRun, "proxy"}` still compiles
  // cleanly under -Wmissing-field-initializers.
  DnsResolverPtr resolver = nullptr;  ///< null: DNS facts are unavailable
  DnsFailureMode dnsFailure = DnsFailureMode::Tempfail;
  std::string hostname = {};  ///< our name, for Received-SPF
  SpfOptions spf = {};
  DkimOptions dkim = {};        ///< [dkim] max_signatures
  std::string authservId = {};  ///< [auth] authserv_id; empty: hostname, else gethostname()
};

/// Copies the [dkim] and [auth] settings of `config` into `options`.
void applyAuthConfig(const Config& config, PolicyOptions& options);

/// What happened at one stage, for `smtpgate check` (collected only on request).
struct StageReport {
  Stage stage = Stage::Connect;
  std::string subject;                                     ///< e.g. the recipient, for rcpt
  std::vector<std::pair<std::string, std::string>> facts;  ///< field, described value
  std::vector<rules::RuleTrace> rules;
  std::vector<const rules::Rule*> scoreRules;
  std::string skipped;     ///< why the stage's rules did not run, if they didn't
  std::string threshold;   ///< "reject at 10 (file:line)" when a threshold decided
  std::string dnsFailure;  ///< why [failure] dns made the stage tempfail, if it did
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
  /// True if `stage` may block in a DNS lookup (a resolver is set and a rule
  /// of that stage reads a DNS fact or client.ip, which a DNSBL list resolves):
  /// an event-driven frontend runs such a stage off its I/O threads.
  [[nodiscard]] bool mayBlockAt(Stage stage) const;
  [[nodiscard]] const Session& session() const { return session_; }
  [[nodiscard]] const Transaction* transaction() const { return tx_.get(); }
  [[nodiscard]] const rules::RuleSet& ruleSet() const { return *rules_; }
  /// The SPF result of the current transaction, if a rule needed it (the
  /// frontend prepends its `receivedSpf` header).
  [[nodiscard]] const SpfResult* spfResult() const { return spf_ ? &*spf_ : nullptr; }
  [[nodiscard]] const ReverseDns* reverseDns() const { return rdns_ ? &*rdns_ : nullptr; }
  /// The DKIM and DMARC results of the current message, if a rule needed them.
  [[nodiscard]] const DkimResult* dkimResult() const { return dkim_ ? &*dkim_ : nullptr; }
  [[nodiscard]] const DmarcResult* dmarcResult() const { return dmarc_ ? &*dmarc_ : nullptr; }

  /// Our authserv-id: [auth] authserv_id, else the hostname, else gethostname().
  [[nodiscard]] std::string authservId() const;
  /// The value of the Authentication-Results header to prepend at end of
  /// DATA (without the field name; one line).
  [[nodiscard]] std::string authenticationResults() const;
  /// True for an incoming Authentication-Results value that claims our
  /// authserv-id: the frontend deletes it (RFC 8601 section 5).
  [[nodiscard]] bool isForgedAuthenticationResults(std::string_view value) const;

  /// The decision log line for a verdict of this session.
  [[nodiscard]] DecisionRecord record(const Verdict& verdict) const;

  /// Collect a StageReport per stage into `reports` (for `smtpgate check`).
  void reportTo(std::vector<StageReport>* reports) { reports_ = reports; }

 private:
  const rules::FactValue& fact(const rules::FieldRef& field) override;
  rules::FactValue computeFact(const rules::FieldRef& field);
  rules::FactValue dnsFact(const rules::FieldRef& field);
  const ReverseDns& reverseDnsNow();
  const SpfResult& spfNow();
  const DkimResult* dkimNow();
  const DmarcResult* dmarcNow();
  rules::FactValue messageAuthFact(const rules::FieldRef& field);
  Verdict dnsFailureVerdict(Stage stage) const;
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
  std::optional<ReverseDns> rdns_;  ///< session lifetime
  std::optional<SpfResult> spf_;    ///< transaction lifetime
  std::optional<DkimResult> dkim_;  ///< transaction lifetime (the message)
  std::optional<DmarcResult> dmarc_;
  std::string dnsFailure_;  ///< a DNS lookup of the current evaluation failed: why
};

/// A short random session id (8 upper-case hex digits).
std::string newSessionId();

}  // namespace smtpgate::policies
