#include "policies/policy.h"

#include "policies/dnsbl_list.h"
#include "rules/ascii.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <random>

namespace smtpgate::policies {

namespace {

using rules::FactValue;
using rules::FieldId;
using rules::Unavailable;

/// Why a DNS-based fact has no value (shown by check and the log).
const Unavailable kNoResolver{"needs DNS; no resolver configured"};

/// The domain of an address ("a@Example.COM" -> "example.com"), empty if none.
std::string domainOf(std::string_view address) {
  auto at = address.rfind('@');
  return at == std::string_view::npos ? std::string() : rules::asciiLower(address.substr(at + 1));
}

std::string formatScore(double score) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", score);
  return buf;
}

}  // namespace

std::string newSessionId() {
  // A process-wide counter from a random start, through a bijective 32-bit
  // mixer (Wellons' lowbias32): ids look random, never repeat within 2^32
  // sessions of one process, and cost no per-thread generator (the milter
  // serves connections on threads of their own; seeding an mt19937 on each
  // was a measurable part of its CPU).
  static std::atomic<std::uint32_t> counter{std::random_device{}()};
  std::uint32_t x = counter.fetch_add(1, std::memory_order_relaxed);
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08X", static_cast<unsigned>(x));
  return buf;
}

void applyAuthConfig(const Config& config, PolicyOptions& options) {
  options.dkim.maxSignatures = config.dkim.maxSignatures;
  options.authservId = config.auth.authservId;
  options.spamHeaders = config.headers.spamScore;
}

Policy::Policy(rules::RuleSetPtr rules, std::string sessionId, PolicyOptions options)
    : rules_(std::move(rules)), options_(std::move(options)) {
  session_.id = std::move(sessionId);
}

Policy::~Policy() = default;

bool Policy::needsMessage() const {
  return rules_->reads(FieldId::Header) || rules_->reads(FieldId::Body) ||
         rules_->reads(FieldId::RawBody) || rules_->reads(FieldId::Size) ||
         rules_->reads(FieldId::Dkim) || rules_->reads(FieldId::DkimDomain) ||
         rules_->reads(FieldId::Dmarc) || rules_->reads(FieldId::DmarcPolicy);
}

bool Policy::mayBlockAt(Stage stage) const {
  if (!options_.resolver) {
    return false;
  }
  for (const auto& field : rules_->fieldsReadAt(stage)) {
    if (field.info->needsDns || field.info->id == FieldId::ClientIp) {
      return true;
    }
  }
  return false;
}

Verdict Policy::onConnect(const ConnectInfo& client) {
  session_.client = client;
  session_.connected = true;
  return evaluate(Stage::Connect, {});
}

Verdict Policy::onHelo(std::string_view helo, const TlsInfo& tls) {
  session_.helo = std::string(helo);
  session_.heloSeen = true;
  session_.tls = tls;
  return evaluate(Stage::Helo, skipReasonFor(Stage::Helo));
}

Verdict Policy::onMail(std::string_view sender, double mailSize) {
  tx_ = std::make_unique<Transaction>();
  spf_.reset();
  dkim_.reset();
  dmarc_.reset();
  tx_->score = session_.score;
  tx_->scoreRules = session_.scoreRules;
  tx_->sender = std::string(sender);
  lastSender_ = tx_->sender;
  tx_->mailSize = mailSize;
  lastMailSize_ = mailSize;
  ++transactions_;
  rcptsPassed_.clear();
  rcptsBackendRefused_.clear();
  Verdict v;
  try {
    v = evaluate(Stage::Mail, skipReasonFor(Stage::Mail), tx_->sender);
  } catch (const DnsResolver::WouldBlock&) {
    // A cache-only attempt missed: the frontend calls onMail again, which
    // must count this MAIL once.
    --transactions_;
    tx_.reset();
    throw;
  }
  if (v.refuses()) {
    tx_.reset();  // a rejected MAIL starts no transaction
  } else if (v.action == Action::Accept) {
    tx_->acceptedByRule = true;
  }
  return v;
}

Verdict Policy::onRcpt(std::string_view rcpt) {
  if (!tx_) {
    tx_ = std::make_unique<Transaction>();  // a frontend that skipped MAIL: be forgiving
  }
  tx_->currentRcpt = std::string(rcpt);
  lastRcpt_ = tx_->currentRcpt;
  Verdict v = evaluate(Stage::Rcpt, skipReasonFor(Stage::Rcpt), tx_->currentRcpt);
  if (!v.refuses()) {
    rcptsPassed_.push_back(tx_->currentRcpt);
    tx_->rcpts.push_back(tx_->currentRcpt);
    tx_->rcptsAcceptedByRule += v.action == Action::Accept ? 1 : 0;
  }
  tx_->currentRcpt.clear();
  return v;
}

Verdict Policy::onEndOfData(std::string_view rawMessage) {
  if (!tx_) {
    tx_ = std::make_unique<Transaction>();
  }
  std::string_view skip = skipReasonFor(Stage::Data);
  dkim_.reset();
  dmarc_.reset();
  if (skip.empty() && needsMessage()) {
    tx_->message = std::make_unique<Message>(Message::parse(rawMessage));
  }
  return evaluate(Stage::Data, skip);
}

void Policy::onReset() {
  tx_.reset();
  rcptsPassed_.clear();  // recipients of a transaction that ended without a line stay unlogged
  rcptsBackendRefused_.clear();
  spf_.reset();
  dkim_.reset();
  dmarc_.reset();
}

void Policy::dropLastRcpt() {
  if (tx_ && !tx_->rcpts.empty() && tx_->rcpts.back() == lastRcpt_) {
    tx_->rcpts.pop_back();
    rcptsBackendRefused_.push_back(lastRcpt_);
  }
}

std::string_view Policy::skipReasonFor(Stage stage) const {
  if (session_.acceptedByRule) {
    return "a rule accepted this session earlier";
  }
  if (stage >= Stage::Rcpt && tx_ && tx_->acceptedByRule) {
    return "a rule accepted this transaction at mail";
  }
  if (stage == Stage::Data && tx_ && !tx_->rcpts.empty() &&
      tx_->rcptsAcceptedByRule == tx_->rcpts.size()) {
    return "a rule accepted every recipient at rcpt";
  }
  return {};
}

Verdict Policy::evaluate(Stage stage, std::string_view skipReason, std::string subject) {
  StageReport report;
  report.stage = stage;
  report.subject = std::move(subject);
  Verdict v;
  if (!skipReason.empty()) {
    report.skipped = std::string(skipReason);
    v.stage = stage;
    v.score = tx_ ? tx_->score : 0;
  } else {
    factCache_.clear();
    dnsFailure_.clear();
    const std::uint64_t dnsblFailures = DnsblList::lookupFailuresOnThisThread();
    // DNSBL lists record their answers here (or, in replay, answer from it).
    DnsblList::AnswerLog* outer = DnsblList::useAnswerLogOnThisThread(&dnsbl_);
    struct RestoreAnswerLog {
      DnsblList::AnswerLog* outer;
      ~RestoreAnswerLog() { DnsblList::useAnswerLogOnThisThread(outer); }
    } restore{outer};
    rules::StageOutcome outcome =
        rules_->evaluate(stage, *this, reports_ ? &report.rules : nullptr);
    // A cache-only attempt that missed (and whose WouldBlock something
    // swallowed) ends here, before scores or verdicts change anything.
    DnsResolver::throwIfCacheMissed();
    for (std::string& name : dnsbl_.missing) {
      missingFacts_.push_back("dnsbl:" + name);
    }
    dnsbl_.missing.clear();
    if (dnsFailure_.empty() && DnsblList::lookupFailuresOnThisThread() != dnsblFailures) {
      dnsFailure_ = "a DNSBL lookup failed";
    }
    // Facts the report lists beyond those the rules needed must not count.
    const std::string dnsFailure = dnsFailure_;
    if (reports_ != nullptr) {
      for (const auto& field : rules_->fieldsReadAt(stage)) {
        report.facts.emplace_back(field.display(), rules::describe(fact(field)));
      }
    }
    v = decide(stage, outcome, &report);
    if (!dnsFailure.empty() && options_.dnsFailure == DnsFailureMode::Tempfail &&
        v.action == Action::Continue && !v.wouldBe) {
      v = dnsFailureVerdict(stage);
      report.dnsFailure = dnsFailure;
    }
    factCache_.clear();
  }
  if (stage == Stage::Connect || stage == Stage::Helo) {
    session_.acceptedByRule = session_.acceptedByRule || v.action == Action::Accept;
  }
  if (reports_ != nullptr) {
    report.verdict = v;
    reports_->push_back(std::move(report));
  }
  return v;
}

Verdict Policy::decide(Stage stage, const rules::StageOutcome& outcome, StageReport* report) {
  addScore(outcome);
  report->scoreRules = outcome.scoreRules;
  Verdict v;
  v.stage = stage;
  if (const rules::Rule* rule = outcome.decisive) {
    if (rule->action == rules::RuleAction::Accept) {
      v.action = Action::Accept;
      v.ruleId = rule->id;
      v.ruleWhere = rule->whereShort();
    } else {
      v = refusal(stage, rule->action, rule->reply ? &*rule->reply : nullptr, rule->id,
                  rule->whereShort());
    }
  } else if (stage == Stage::Data && tx_) {
    if (const rules::Threshold* t = rules_->thresholdFor(tx_->score)) {
      std::string where = t->where.file + ':' + std::to_string(t->where.line);
      report->threshold = std::string(rules::toString(t->action)) + " at " + formatScore(t->at) +
                          " (" + where + ")";
      v = refusal(stage, t->action, t->reply ? &*t->reply : nullptr,
                  "threshold-" + std::string(rules::toString(t->action)), where);
    }
  }
  // A monitor rule only reports when nothing else decided: it must not
  // undo an accept of the same stage.
  if (v.action == Action::Continue && !outcome.monitored.empty()) {
    const rules::Rule* m = outcome.monitored.front();
    v = refusal(stage, m->action, m->reply ? &*m->reply : nullptr, m->id, m->whereShort());
    v.wouldBe = v.action;
    v.action = Action::Continue;
    v.disconnect = false;
  }
  if (options_.dryRun && v.refuses()) {
    v.wouldBe = v.action;
    v.action = Action::Continue;
    v.disconnect = false;
  }
  v.score = tx_ ? tx_->score : session_.score;
  return v;
}

// Scores from connect and helo belong to the session and start every
// transaction's score; later stages score the transaction.
void Policy::addScore(const rules::StageOutcome& outcome) {
  if (outcome.scoreRules.empty()) {
    return;
  }
  std::vector<std::string>& ids = tx_ ? tx_->scoreRules : session_.scoreRules;
  (tx_ ? tx_->score : session_.score) += outcome.scoreAdded;
  for (const auto* r : outcome.scoreRules) {
    ids.push_back(r->id);
  }
}

Verdict Policy::refusal(Stage stage, rules::RuleAction action, const rules::ReplyTemplate* reply,
                        std::string ruleId, std::string ruleWhere) const {
  Verdict v;
  v.stage = stage;
  v.action = action == rules::RuleAction::Reject ? Action::Reject : Action::Tempfail;
  v.ruleId = std::move(ruleId);
  v.ruleWhere = std::move(ruleWhere);
  v.disconnect = stage == Stage::Connect;
  rules::ReplyTemplate fallback = Reply::defaultFor(v.action, stage);
  const rules::ReplyTemplate& t = reply ? *reply : fallback;
  rules::ReplyVariables vars{session_.client.ip.toString(),
                             tx_ ? tx_->sender : std::string(),
                             tx_ ? tx_->currentRcpt : std::string(),
                             v.ruleId,
                             formatScore(tx_ ? tx_->score : session_.score),
                             session_.id};
  v.reply = Reply{t.code(), t.enhanced(), t.expandText(vars)};
  return v;
}

const FactValue& Policy::fact(const rules::FieldRef& field) {
  for (const auto& [ref, value] : factCache_) {
    if (ref == field) {
      return value;
    }
  }
  factCache_.emplace_back(field, computeFact(field));
  return factCache_.back().second;
}

// The body and the raw body are matched where the Message keeps them: as
// FactValues each would be copied once per message (at 100 KB, those two
// copies and the page faults of their fresh memory were a quarter of the
// proxy's CPU).
std::optional<std::string_view> Policy::textInPlace(const rules::FieldRef& field) {
  if (!tx_ || !tx_->message) {
    return std::nullopt;
  }
  switch (field.info->id) {
    case FieldId::Body:
      return std::string_view(tx_->message->body());
    case FieldId::RawBody:
      return tx_->message->rawBody();
    default:
      return std::nullopt;
  }
}

Verdict Policy::dnsFailureVerdict(Stage stage) const {
  const auto reply =
      rules::ReplyTemplate::make(stage == Stage::Connect ? 421 : 451, {4, 4, 3},
                                 "Temporary DNS failure, try again later (session $session)");
  Verdict v = refusal(stage, rules::RuleAction::Tempfail, &reply, "dns-failure", "[failure] dns");
  if (options_.dryRun) {
    v.wouldBe = v.action;
    v.action = Action::Continue;
    v.disconnect = false;
  }
  v.score = tx_ ? tx_->score : session_.score;
  return v;
}

const ReverseDns& Policy::reverseDnsNow() {
  if (!rdns_) {
    const auto deadline = DnsResolver::Clock::now() + options_.resolver->timeout() * 3;
    rdns_ = lookupReverseDns(*options_.resolver, session_.client.ip, deadline);
  }
  return *rdns_;
}

const SpfResult& Policy::spfNow() {
  if (!spf_) {
    SpfRequest request{session_.client.ip, session_.helo, tx_ ? tx_->sender : std::string(),
                       options_.hostname};
    SpfResult result = checkSpf(*options_.resolver, request, options_.spf);
    // checkSpf turns every exception into temperror, a cache-only miss's too:
    // that result must not be kept for the retry.
    DnsResolver::throwIfCacheMissed();
    spf_ = std::move(result);
  }
  return *spf_;
}

const DkimResult* Policy::dkimNow() {
  if (!dkim_ && tx_ && tx_->message) {
    DkimResult result;
    {
      // Key lookups run under libopendkim's C callbacks: in a cache-only
      // attempt a miss must not throw through them, so it answers TempFail
      // and is thrown here, before the result is kept.
      DnsResolver::QuietMissScope quiet;
      result = verifyDkim(*options_.resolver, tx_->message->raw(), options_.dkim);
    }
    DnsResolver::throwIfCacheMissed();
    dkim_ = std::move(result);
  }
  return dkim_ ? &*dkim_ : nullptr;
}

const DmarcResult* Policy::dmarcNow() {
  if (!dmarc_ && tx_ && tx_->message) {
    DmarcRequest request;
    for (const auto& h : tx_->message->headers()) {
      if (h.lowerName == "from") {
        request.fromFields.push_back(h.raw);
      }
    }
    request.dkim = dkimNow();
    request.spf = &spfNow();
    const auto deadline = DnsResolver::Clock::now() + options_.resolver->timeout() * 2;
    DmarcResult result = checkDmarc(*options_.resolver, request, deadline);
    DnsResolver::throwIfCacheMissed();
    dmarc_ = std::move(result);
  }
  return dmarc_ ? &*dmarc_ : nullptr;
}

FactValue Policy::messageAuthFact(const rules::FieldRef& field) {
  const FieldId id = field.info->id;
  if (id == FieldId::Dkim || id == FieldId::DkimDomain) {
    const DkimResult* dkim = dkimNow();
    if (dkim == nullptr) {
      return Unavailable{"no message"};
    }
    if (dkim->status == DkimStatus::TempError) {
      dnsFailure_ = "DKIM temperror: " + (dkim->dnsError.empty() ? dkim->error : dkim->dnsError);
    }
    if (id == FieldId::Dkim) {
      return std::string(toString(dkim->status));
    }
    return dkim->passingDomains();
  }
  const DmarcResult* dmarc = dmarcNow();
  if (dmarc == nullptr) {
    return Unavailable{"no message"};
  }
  if (dmarc->status == DmarcStatus::TempError) {
    dnsFailure_ = "DMARC temperror: " + (dmarc->dnsError.empty() ? dmarc->reason : dmarc->dnsError);
  }
  if (id == FieldId::Dmarc) {
    return std::string(toString(dmarc->status));
  }
  return std::string(toString(dmarc->policy));
}

FactValue Policy::dnsFact(const rules::FieldRef& field) {
  const FieldId id = field.info->id;
  if (!options_.resolver) {
    return kNoResolver;
  }
  if (id == FieldId::Dkim || id == FieldId::DkimDomain || id == FieldId::Dmarc ||
      id == FieldId::DmarcPolicy) {
    return messageAuthFact(field);
  }
  if (id == FieldId::ClientPtr || id == FieldId::ClientFcrdns) {
    const ReverseDns& r = reverseDnsNow();
    if (!r.error.empty()) {
      dnsFailure_ = r.error;
    }
    if (id == FieldId::ClientPtr) {
      return r.ptrKnown ? FactValue{r.ptr} : FactValue{Unavailable{"DNS failed: " + r.error}};
    }
    return r.fcrdns ? FactValue{*r.fcrdns} : FactValue{Unavailable{"DNS failed: " + r.error}};
  }
  const SpfResult& spf = spfNow();
  if (spf.status == SpfStatus::TempError) {
    dnsFailure_ = "SPF temperror: " + (spf.dnsError.empty() ? spf.comment : spf.dnsError);
  }
  if (id == FieldId::Spf) {
    return std::string(toString(spf.status));
  }
  return spf.explanation;
}

FactValue Policy::replayedFact(const rules::FieldRef& field) {
  const FactValue* recorded = replay_->find(field.info->id);
  if (recorded == nullptr) {
    missingFacts_.emplace_back(field.info->name);
    return Unavailable{"not in the decision log"};
  }
  // As live: a temperror the rules needed may make the stage tempfail ([failure] dns).
  if (field.info->id == FieldId::Spf && std::get_if<std::string>(recorded) != nullptr &&
      std::get<std::string>(*recorded) == toString(SpfStatus::TempError)) {
    dnsFailure_ = "SPF temperror (as logged)";
  }
  return *recorded;
}

void Policy::replayWith(RecordedFacts facts) {
  dnsbl_.answers = facts.dnsbl;
  dnsbl_.replay = true;
  replay_ = std::move(facts);
}

std::vector<std::string> Policy::takeMissingFacts() {
  std::vector<std::string> out;
  for (std::string& name : missingFacts_) {
    if (std::find(out.begin(), out.end(), name) == out.end()) {
      out.push_back(std::move(name));
    }
  }
  missingFacts_.clear();
  return out;
}

FactValue Policy::computeFact(const rules::FieldRef& field) {
  if (replay_ && isRecordedField(field.info->id)) {
    return replayedFact(field);
  }
  const Transaction* tx = tx_.get();
  switch (field.info->id) {
    case FieldId::ClientIp:
      return session_.client.ip;
    case FieldId::ClientPort:
      return static_cast<double>(session_.client.port);
    case FieldId::LocalPort:
      return static_cast<double>(session_.client.localPort);
    case FieldId::Pregreet:
      return session_.client.pregreet;
    case FieldId::ClientPtr:
    case FieldId::ClientFcrdns:
    case FieldId::Spf:
    case FieldId::SpfExplanation:
    case FieldId::Dkim:
    case FieldId::DkimDomain:
    case FieldId::Dmarc:
    case FieldId::DmarcPolicy:
      return dnsFact(field);
    case FieldId::Helo:
      return session_.helo;
    case FieldId::Tls:
      return session_.tls.active;
    case FieldId::TlsVersion:
      return session_.tls.version;
    case FieldId::TlsCipher:
      return session_.tls.cipher;
    case FieldId::Sender:
      return tx ? tx->sender : std::string();
    case FieldId::SenderDomain:
      return tx ? domainOf(tx->sender) : std::string();
    case FieldId::MailSize:
      return tx ? tx->mailSize : 0.0;
    case FieldId::Score:
      return tx ? tx->score : session_.score;
    default:
      break;
  }
  return messageFact(field);
}

FactValue Policy::messageFact(const rules::FieldRef& field) const {
  const Transaction* tx = tx_.get();
  bool atRcpt = tx && !tx->currentRcpt.empty();
  switch (field.info->id) {
    case FieldId::Rcpt:
      return atRcpt ? rules::Strings{tx->currentRcpt} : (tx ? tx->rcpts : rules::Strings{});
    case FieldId::RcptDomain: {
      rules::Strings domains;
      if (atRcpt) {
        domains.push_back(domainOf(tx->currentRcpt));
      } else if (tx) {
        for (const auto& r : tx->rcpts) {
          domains.push_back(domainOf(r));
        }
      }
      return domains;
    }
    case FieldId::RcptCount:
      return tx ? static_cast<double>(tx->rcpts.size() + (atRcpt ? 1 : 0)) : 0.0;
    default:
      break;
  }
  if (!tx || !tx->message) {
    return Unavailable{"no message"};
  }
  const Message& m = *tx->message;
  switch (field.info->id) {
    case FieldId::Header:
      return m.header(field.headerName);
    case FieldId::Body:
      return m.body();
    case FieldId::RawBody:
      return std::string(m.rawBody());
    case FieldId::Size:
      return static_cast<double>(m.size());
    default:
      return Unavailable{"unknown field"};
  }
}

std::string Policy::authservId() const {
  if (!options_.authservId.empty()) {
    return options_.authservId;
  }
  if (!options_.hostname.empty()) {
    return options_.hostname;
  }
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') {
    return "localhost";
  }
  return name;
}

std::string Policy::authenticationResults() const {
  AuthResults results;
  results.spf = spfResult();
  results.spfSender = lastSender_;
  results.helo = session_.helo;
  results.dkim = dkimResult();
  results.dmarc = dmarcResult();
  return authenticationResultsValue(authservId(), results);
}

std::vector<AddedHeader> Policy::headersToAdd() const {
  std::vector<AddedHeader> fields{
      {std::string(kAuthenticationResults), oneLineHeaderValue(authenticationResults())}};
  if (options_.spamHeaders) {
    const double score = tx_ ? tx_->score : session_.score;
    const std::vector<std::string>& ids = tx_ ? tx_->scoreRules : session_.scoreRules;
    std::string rules;
    for (const auto& id : ids) {
      rules += (rules.empty() ? "" : ", ") + id;
    }
    fields.push_back({std::string(kSpamScoreHeader), formatScore(score)});
    fields.push_back(
        {std::string(kSpamRulesHeader), oneLineHeaderValue(rules.empty() ? "none" : rules)});
  }
  return fields;
}

bool Policy::removesIncoming(std::string_view name, std::string_view value) const {
  if (isAuthenticationResultsName(name)) {
    return isForgedAuthenticationResults(value);
  }
  return options_.spamHeaders &&
         (headerNameIs(name, kSpamScoreHeader) || headerNameIs(name, kSpamRulesHeader));
}

bool Policy::isForgedAuthenticationResults(std::string_view value) const {
  return claimsAuthservId(value, authservId());
}

std::vector<std::string> Policy::factItems() const {
  std::vector<std::string> items;
  if (!session_.connected) {
    return items;
  }
  const ConnectInfo& c = session_.client;
  items.push_back(factItem("client.port", static_cast<double>(c.port)));
  items.push_back(factItem("local.port", static_cast<double>(c.localPort)));
  items.push_back(factItem("pregreet", c.pregreet));
  items.push_back(factItem("tls", session_.tls.active));
  if (session_.tls.active) {
    items.push_back(factItem("tls.version", session_.tls.version));
    items.push_back(factItem("tls.cipher", session_.tls.cipher));
  }
  if (transactions_ > 0) {
    items.push_back(factItem("mail.size", lastMailSize_));
  }
  if (rdns_ && rdns_->ptrKnown) {
    items.push_back(factItem("client.ptr", rdns_->ptr));
  }
  if (rdns_ && rdns_->fcrdns) {
    items.push_back(factItem("client.fcrdns", *rdns_->fcrdns));
  }
  if (spf_ && !spf_->explanation.empty()) {
    items.push_back(factItem("spf.explanation", spf_->explanation));
  }
  for (const auto& [name, answers] : dnsbl_.answers) {
    items.push_back(dnsblItem(name, answers));
  }
  return items;
}

DecisionRecord Policy::record(const Verdict& verdict) {
  DecisionRecord r;
  r.time = std::chrono::system_clock::now();
  r.session = session_.id;
  r.clientIp = session_.connected ? session_.client.ip.toString() : std::string();
  r.helo = session_.helo;
  r.sender = lastSender_;
  if (verdict.stage == Stage::Rcpt) {
    r.rcpts = {lastRcpt_};  // the recipient this verdict is about
  }
  if (tx_) {
    if (verdict.stage != Stage::Rcpt) {
      r.rcpts = tx_->rcpts;
    }
    r.score = tx_->score;
    r.scoreRules = tx_->scoreRules;
    if (tx_->message) {
      r.messageId = tx_->message->messageId();
      r.subject = tx_->message->subject();
    }
  }
  r.stage = std::string(toString(verdict.stage));
  r.action = verdict.logAction();
  r.rule = verdict.ruleId;
  r.ruleWhere = verdict.ruleWhere;
  r.reply = verdict.reply ? verdict.reply->line() : std::string();
  if (spf_) {
    r.spf = std::string(toString(spf_->status));
  }
  if (dkim_) {
    r.dkim = std::string(toString(dkim_->status));
  }
  if (dmarc_) {
    r.dmarc = std::string(toString(dmarc_->status));
  }
  r.rulesetHash = rules_->hash();
  r.frontend = options_.frontend;
  if (rdns_ && rdns_->ptrKnown) {
    r.clientPtr = rdns_->ptr;
  }
  r.transaction = transactions_;
  // A let-through recipient with a line of its own (would-reject) is that
  // line's `rcpts`, not one of the passed ones.
  if (verdict.stage == Stage::Rcpt && !verdict.refuses() && !rcptsPassed_.empty() &&
      rcptsPassed_.back() == lastRcpt_) {
    rcptsPassed_.pop_back();
  }
  r.rcptsPassed = std::move(rcptsPassed_);
  rcptsPassed_.clear();
  r.rcptsBackendRefused = std::move(rcptsBackendRefused_);
  rcptsBackendRefused_.clear();
  r.facts = factItems();
  return r;
}

}  // namespace smtpgate::policies
