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
/// loop, except inside a DnsResolver::CacheOnlyScope: there every lookup is
/// answered from the resolver's cache, and one that is not cached makes the
/// stage method throw DnsResolver::WouldBlock. Such an aborted call leaves
/// nothing behind that a retry of the same call would see twice (no facts
/// kept, no score added, no report, the transaction counted once), so the
/// frontend simply calls it again off its event loop. Without a resolver
/// these facts are unavailable and rules reading them never fire.
///
/// Header edits at end of DATA: every message a frontend lets through
/// (accepted, or a would-be refusal under dry-run or a monitor rule) gets
/// `headersToAdd()` on top — Authentication-Results, whose value
/// `authenticationResults()` lists the methods this transaction evaluated,
/// and with `[headers] spam_score` X-Spam-Score and X-Spam-Rules — after the
/// frontend removed the incoming fields for which `removesIncoming()` is
/// true (forged Authentication-Results; X-Spam-* when we add our own). The proxy
/// rewrites the header block it relays; the milter asks the MTA to delete
/// and insert the fields at end of message. Neither builds a field of its
/// own.
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

#include "policies/added_header.h"
#include "policies/authentication_results.h"
#include "policies/config.h"
#include "policies/decision_log.h"
#include "policies/dkim.h"
#include "policies/dmarc.h"
#include "policies/dns_resolver.h"
#include "policies/dnsbl_list.h"
#include "policies/recorded_facts.h"
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
  bool spamHeaders = false;     ///< [headers] spam_score: add X-Spam-Score, X-Spam-Rules
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
  /// True if a frontend must edit the header of the messages it lets
  /// through: add headersToAdd(), delete what removesIncoming() picks. A
  /// milter negotiates header changes (and asks for the header fields) only
  /// then. Always true today: Authentication-Results has no off switch, in
  /// either frontend; a config switch for added headers belongs here.
  [[nodiscard]] bool editsHeaders() const { return true; }
  /// The header fields to put on top of a message let through at end of
  /// DATA, topmost first; each value is one line (oneLineHeaderValue). Call
  /// after onEndOfData and before onReset: it reads the transaction's results.
  [[nodiscard]] std::vector<AddedHeader> headersToAdd() const;
  /// True for an incoming Authentication-Results value that claims our
  /// authserv-id: the frontend deletes it (RFC 8601 section 5).
  [[nodiscard]] bool isForgedAuthenticationResults(std::string_view value) const;
  /// True for an incoming header field the frontend deletes before adding
  /// ours: a forged Authentication-Results, and with `[headers] spam_score`
  /// any X-Spam-Score or X-Spam-Rules (only ours may reach the mailbox).
  /// `name` as written before the colon.
  [[nodiscard]] bool removesIncoming(std::string_view name, std::string_view value) const;

  /// The decision log line for a verdict of this session.
  /// The decision log line for a verdict of this session, with the envelope
  /// replay needs (decision_log.h): the transaction number, the recipients
  /// let through since the previous line (a line hands them over, so call
  /// this once per line written), and the recorded facts.
  [[nodiscard]] DecisionRecord record(const Verdict& verdict);

  /// Replay (`smtpgate replay`): from now on the facts a decision line keeps
  /// in `facts` and `spf` (ports, pregreet, TLS, mail.size, client.ptr,
  /// client.fcrdns, spf, DNSBL answers) come from `facts`, and nothing is
  /// looked up. One `facts` lacks is unavailable ("not in the decision log")
  /// and its name is kept for `takeMissingFacts()`. Call again before a stage
  /// to change them (each transaction has its own SPF result).
  void replayWith(RecordedFacts facts);
  /// Replay: the recorded facts rules asked for and did not find since the
  /// last call ("client.fcrdns", "dnsbl:QUERYNAME"), each once.
  std::vector<std::string> takeMissingFacts();

  /// Collect a StageReport per stage into `reports` (for `smtpgate check`).
  void reportTo(std::vector<StageReport>* reports) { reports_ = reports; }

 private:
  const rules::FactValue& fact(const rules::FieldRef& field) override;
  std::optional<std::string_view> textInPlace(const rules::FieldRef& field) override;
  rules::FactValue computeFact(const rules::FieldRef& field);
  rules::FactValue replayedFact(const rules::FieldRef& field);
  std::vector<std::string> factItems() const;
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
  double lastMailSize_ = 0;
  // For the log's envelope keys (record()).
  std::uint32_t transactions_ = 0;  ///< MAIL commands so far
  std::vector<std::string> rcptsPassed_;
  std::vector<std::string> rcptsBackendRefused_;
  DnsblList::AnswerLog dnsbl_;             ///< this session's DNSBL answers (recorded or replayed)
  std::optional<RecordedFacts> replay_;    ///< set: replay mode
  std::vector<std::string> missingFacts_;  ///< replay: asked for, not recorded
  /// Facts computed during the current evaluation (values must outlive it).
  std::deque<std::pair<rules::FieldRef, rules::FactValue>> factCache_;
  std::optional<ReverseDns> rdns_;  ///< session lifetime
  std::optional<SpfResult> spf_;    ///< transaction lifetime
  std::optional<DkimResult> dkim_;  ///< transaction lifetime (the message)
  std::optional<DmarcResult> dmarc_;
  std::string dnsFailure_;  ///< a DNS lookup of the current evaluation failed: why
};

/// A short session id: 8 upper-case hex digits that look random and do not
/// repeat within 2^32 sessions of one process (thread-safe; not a secret).
std::string newSessionId();

}  // namespace smtpgate::policies
