#include "milter/milter_session.h"

#include <libmilter/mfdef.h>

#include <cctype>
#include <charconv>

#include "rules/ascii.h"

namespace smtpgate::milter {

namespace {

using policies::Action;
using policies::Verdict;

bool iequalsPrefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) {
    return false;
  }
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) !=
        std::tolower(static_cast<unsigned char>(prefix[i]))) {
      return false;
    }
  }
  return true;
}

/// The SIZE= parameter of MAIL FROM, 0 if absent or malformed.
double mailSizeParameter(const std::vector<std::string_view>& args) {
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (iequalsPrefix(args[i], "SIZE=")) {
      std::string_view digits = args[i].substr(5);
      std::uint64_t size = 0;
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), size);
      if (ec == std::errc{} && end == digits.data() + digits.size()) {
        return static_cast<double>(size);
      }
    }
  }
  return 0;
}

/// Appends `text` with every bare LF turned into CRLF (folded header values
/// arrive with LF line ends from some MTAs).
void appendCrlf(std::string& out, std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r')) {
      out += '\r';
    }
    out += text[i];
  }
}

}  // namespace

Response toResponse(const Verdict& verdict) {
  switch (verdict.action) {
    case Action::Tempfail:
      return {SMFIS_TEMPFAIL, verdict.reply};
    case Action::Reject:
      return {SMFIS_REJECT, verdict.reply};
    case Action::Accept:
    case Action::Continue:
      break;
  }
  return {verdict.stage == rules::Stage::Data ? SMFIS_ACCEPT : SMFIS_CONTINUE, std::nullopt};
}

std::string escapeReplyText(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    bool continuation = (u & 0xC0) == 0x80;
    if (!continuation && out.size() >= kMaxReplyTextBytes) {
      break;  // cut at a character boundary
    }
    if (c == '%') {
      out += "%%";
    } else if (u < 0x20 || u == 0x7f) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

unsigned long protocolFlags(unsigned long offered, bool needsMessage, bool editsHeaders) {
  // Not SMFIP_NODATA, though no rule reads the DATA command: with it Postfix still
  // sends the DATA stage's macros, a small write that needs no reply, and
  // then the message in a second write, which Nagle holds until our kernel's
  // delayed ACK (40 ms) of the first; with the DATA event we answer
  // CONTINUE at once and nothing waits (milter_server.h, "Nagle").
  unsigned long wanted = SMFIP_NOUNKNOWN;
  if (needsMessage) {
    wanted |= SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_SKIP;
  } else {
    wanted |= SMFIP_NOEOH | SMFIP_NOBODY;
  }
  if (needsMessage || editsHeaders) {
    wanted |= SMFIP_NR_HDR | SMFIP_HDR_LEADSPC;
  } else {
    wanted |= SMFIP_NOHDRS;
  }
  return wanted & offered;
}

unsigned long actionFlags(unsigned long offered, bool editsHeaders) {
  return editsHeaders ? (SMFIF_ADDHDRS | SMFIF_CHGHDRS) & offered : 0;
}

std::string_view stripAngleBrackets(std::string_view arg) {
  while (!arg.empty() && (arg.front() == ' ' || arg.front() == '\t')) {
    arg.remove_prefix(1);
  }
  while (!arg.empty() && (arg.back() == ' ' || arg.back() == '\t')) {
    arg.remove_suffix(1);
  }
  if (arg.size() >= 2 && arg.front() == '<' && arg.back() == '>') {
    arg = arg.substr(1, arg.size() - 2);
  }
  return arg;
}

namespace {

policies::PolicyOptions milterOptions(policies::PolicyOptions options) {
  options.frontend = "milter";
  return options;
}

}  // namespace

MilterSession::MilterSession(rules::RuleSetPtr rules, policies::PolicyOptions options,
                             LogFunction log)
    : policy_(std::move(rules), policies::newSessionId(), milterOptions(std::move(options))),
      log_(std::move(log)) {}

Response MilterSession::connect(const std::optional<rules::IpAddress>& ip, std::uint16_t port,
                                std::uint16_t localPort) {
  policies::ConnectInfo info{ip ? *ip : *rules::IpAddress::parse("127.0.0.1"), port, localPort,
                             false};
  Verdict v = policy_.onConnect(info);
  log(v);
  return toResponse(v);
}

Response MilterSession::helo(std::string_view name, const policies::TlsInfo& tls) {
  Verdict v = policy_.onHelo(name, tls);
  log(v);
  return toResponse(v);
}

Response MilterSession::envelopeFrom(const std::vector<std::string_view>& args) {
  // A MAIL without an abort of the last transaction: start afresh (the
  // queue id the engine set for this MAIL stays).
  policy_.onReset();
  message_.clear();
  fieldsSeen_.clear();
  removedFields_.clear();
  std::string_view sender = args.empty() ? std::string_view() : stripAngleBrackets(args[0]);
  Verdict v = policy_.onMail(sender, mailSizeParameter(args));
  log(v);
  return toResponse(v);
}

Response MilterSession::envelopeRecipient(const std::vector<std::string_view>& args) {
  std::string_view rcpt = args.empty() ? std::string_view() : stripAngleBrackets(args[0]);
  Verdict v = policy_.onRcpt(rcpt);
  log(v);
  return toResponse(v);
}

bool MilterSession::keepingMessage() const {
  if (!policy_.needsMessage() || policy_.session().acceptedByRule) {
    return false;
  }
  const policies::Transaction* tx = policy_.transaction();
  if (tx == nullptr) {
    return true;
  }
  bool allRcptsAccepted = !tx->rcpts.empty() && tx->rcptsAcceptedByRule == tx->rcpts.size();
  return !tx->acceptedByRule && !allRcptsAccepted;
}

void MilterSession::header(std::string_view name, std::string_view value) {
  // Counted whatever the rules read: the MTA numbers the fields of each
  // name from 1, comparing names in any case.
  const std::string_view trimmed = policies::trimmedHeaderName(name);
  const int index = ++fieldsSeen_[rules::asciiLower(trimmed)];
  if (policy_.removesIncoming(name, value)) {
    removedFields_.emplace_back(std::string(trimmed), index);
  }
  if (!keepingMessage()) {
    return;
  }
  message_.append(name);
  message_ += ':';
  if ((protocolFlags_ & SMFIP_HDR_LEADSPC) == 0) {
    message_ += ' ';  // the MTA removed the usual space after the colon
  }
  appendCrlf(message_, value);
  message_ += "\r\n";
}

void MilterSession::endOfHeaders() {
  if (keepingMessage()) {
    message_ += "\r\n";
  }
}

bool MilterSession::body(std::string_view chunk) {
  if (!keepingMessage()) {
    return false;
  }
  message_.append(chunk);
  return true;
}

Response MilterSession::endOfMessage() {
  Verdict v = policy_.onEndOfData(message_);
  log(v);
  if (!v.refuses()) {
    logDelivery(v);
  }
  Response r = toResponse(v);
  if (!v.refuses()) {
    r.headerChanges = headerChanges();  // before endTransaction: reads the results
  }
  endTransaction();
  return r;
}

std::vector<HeaderChange> MilterSession::headerChanges() const {
  std::vector<HeaderChange> changes;
  if (!policy_.editsHeaders()) {
    return changes;
  }
  if ((actionFlags_ & SMFIF_CHGHDRS) != 0) {
    // Last to first: a deletion renumbers the later fields of its name.
    for (auto it = removedFields_.rbegin(); it != removedFields_.rend(); ++it) {
      changes.push_back({HeaderChange::Kind::Delete, it->first, it->second, {}});
    }
  }
  if ((actionFlags_ & SMFIF_ADDHDRS) != 0) {
    // Each goes to the same index, so the topmost field is inserted last.
    const std::vector<policies::AddedHeader> added = policy_.headersToAdd();
    const char* space = (protocolFlags_ & SMFIP_HDR_LEADSPC) != 0 ? " " : "";
    for (auto it = added.rbegin(); it != added.rend(); ++it) {
      changes.push_back({HeaderChange::Kind::Insert, it->name, kInsertIndex, space + it->value});
    }
  }
  return changes;
}

void MilterSession::abort() {
  endTransaction();
}

void MilterSession::endTransaction() {
  policy_.onReset();
  message_.clear();
  message_.shrink_to_fit();
  queueId_.clear();
  fieldsSeen_.clear();
  removedFields_.clear();
}

void MilterSession::log(const Verdict& verdict) {
  if (log_ && (verdict.refuses() || verdict.wouldBe)) {
    policies::DecisionRecord record = policy_.record(verdict);
    record.queueId = queueId_;
    log_(record);
  }
}

// Postfix has the message once we accept it at end of data; unlike the
// proxy we never see its "250 queued as", so the queue id is the {i} macro.
void MilterSession::logDelivery(const Verdict& verdict) {
  if (log_) {
    policies::DecisionRecord record = policy_.record(verdict);
    record.action = "deliver";
    record.queueId = queueId_;
    log_(record);
  }
}

}  // namespace smtpgate::milter
