#pragma once
/// MilterSession — one Postfix milter connection, as calls on one Policy.
///
/// Postfix sequences SMTP; the milter only adapts callbacks (STYLE.md G3).
/// Each libmilter callback of a connection becomes one method here, in the
/// same order and onto the same Policy stages as the proxy's SMTP session:
///
///   connect -> Policy::onConnect      helo   -> Policy::onHelo
///   envfrom -> Policy::onMail         envrcpt -> Policy::onRcpt
///   header, eoh, body -> the message is kept (only if a rule reads it)
///   eom     -> Policy::onEndOfData    abort  -> Policy::onReset
///
/// and every Verdict becomes a Response in exactly one function,
/// toResponse(). The libmilter glue (milter_server.cpp) turns a Response
/// into SMFIS_* plus smfi_setreply and never looks at a Verdict itself.
///
/// This class knows nothing of SMFICTX: it is fed plain values, so it can be
/// tested without a running MTA.
///
/// Lifetimes: a MilterSession lives from the MTA's option negotiation (or
/// connect) until the connection's close callback (smfi_setpriv holds it).
/// The transaction inside the Policy starts at envfrom and ends at eom, at
/// abort (RSET, or the client left mid-transaction) or when MAIL is refused.
/// The message buffer lives only as long as that transaction.
///
/// Decision log: like the proxy, every refusal and every would-be refusal
/// (monitor rules, dry-run) is logged when it happens, and every message let
/// through at end of data gets one "deliver" line. Lines carry Postfix's
/// queue id (the `{i}` macro) once Postfix has assigned one.
///
/// Thread-safety: libmilter calls the callbacks of one connection one after
/// another, on one thread at a time; a MilterSession is not shared.

#include <libmilter/mfapi.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policies/decision_log.h"
#include "policies/policy.h"
#include "policies/verdict.h"
#include "rules/rule_set.h"

namespace smtpgate::milter {

/// What a callback answers: an SMFIS_* status and, for refusals, the reply
/// that smfi_setreply must carry.
struct Response {
  sfsistat status = SMFIS_CONTINUE;
  std::optional<policies::Reply> reply;
};

/// The one place a Verdict becomes milter output. Continue and Accept keep
/// the MTA talking to us (SMFIS_CONTINUE) before end of data, so that later
/// messages of an accepted session are still logged exactly as the proxy
/// logs them; at end of data both are SMFIS_ACCEPT. Tempfail and Reject carry
/// the rule's reply. Would-be refusals (dry-run, monitor) continue.
Response toResponse(const policies::Verdict& verdict);

/// Reply text as smfi_setreply needs it: the MTA reads it as a printf-style
/// format (Sendmail) or un-doubles '%%' and drops single '%' (Postfix), so
/// each '%' is doubled; CR, LF and other control characters, which would end
/// the reply line early, become spaces. The result is cut (at a UTF-8
/// character boundary) near kMaxReplyTextBytes: libmilter refuses replies
/// longer than 980 bytes, code included.
std::string escapeReplyText(std::string_view text);
inline constexpr std::size_t kMaxReplyTextBytes = 900;

/// The SMFIP_* protocol flags to ask for, given what the MTA offers
/// (`offered`) and whether any loaded rule reads the message. Steps no rule
/// needs are switched off (NOHDRS/NOEOH/NOBODY; NOUNKNOWN and NODATA always,
/// we register no such callbacks); header and end-of-header replies are
/// skipped (NR_HDR/NR_EOH) since we never answer them with anything but
/// "continue"; headers come with their leading space (HDR_LEADSPC) so the
/// message the rules see is byte-exact. Only flags in `offered` are asked for.
unsigned long protocolFlags(unsigned long offered, bool needsMessage);

/// Called with every decision log line.
using LogFunction = std::function<void(const policies::DecisionRecord&)>;

class MilterSession {
 public:
  /// `options` as for every Policy of this process (dry-run, and the DNS
  /// resolver once there is one); its frontend is set to "milter".
  MilterSession(rules::RuleSetPtr rules, policies::PolicyOptions options, LogFunction log);
  MilterSession(const MilterSession&) = delete;
  MilterSession& operator=(const MilterSession&) = delete;

  /// The protocol flags negotiated for this connection (see protocolFlags).
  void setProtocolFlags(unsigned long flags) { protocolFlags_ = flags; }
  [[nodiscard]] unsigned long protocolFlags() const { return protocolFlags_; }

  /// `ip` is nullopt when the MTA does not know the client's address (mail
  /// submitted locally through non_smtpd_milters without one): the client
  /// is then taken to be 127.0.0.1, this host.
  Response connect(const std::optional<rules::IpAddress>& ip, std::uint16_t port,
                   std::uint16_t localPort);
  Response helo(std::string_view name, const policies::TlsInfo& tls);
  /// `args` as libmilter passes them: "<sender>", then ESMTP parameters.
  Response envelopeFrom(const std::vector<std::string_view>& args);
  /// `args` as libmilter passes them: "<recipient>", then ESMTP parameters.
  Response envelopeRecipient(const std::vector<std::string_view>& args);
  /// One header, `value` as the MTA sent it (with its leading space when
  /// HDR_LEADSPC was negotiated; folded lines joined by "\n" or "\r\n").
  void header(std::string_view name, std::string_view value);
  void endOfHeaders();
  /// A body chunk (CRLF line ends). False once the rest of the body is not
  /// needed (no rule reads it, or the transaction was accepted by a rule).
  bool body(std::string_view chunk);
  Response endOfMessage();
  /// The message was aborted (RSET, a new MAIL, the client left): drop the
  /// transaction and its message, keep the session.
  void abort();

  /// Postfix's queue id from the `{i}` macro, when the MTA sends it; the
  /// glue sets it before each envelope and end-of-message call. Cleared at
  /// the end of each transaction.
  void setQueueId(std::string_view queueId) { queueId_ = std::string(queueId); }

  /// True if some rule reads the message (headers, body, size).
  [[nodiscard]] bool needsMessage() const { return policy_.needsMessage(); }
  [[nodiscard]] const policies::Policy& policy() const { return policy_; }
  /// The message as kept so far (for tests).
  [[nodiscard]] const std::string& message() const { return message_; }

 private:
  /// Whether the message of the current transaction must be kept.
  [[nodiscard]] bool keepingMessage() const;
  void log(const policies::Verdict& verdict);
  void logDelivery(const policies::Verdict& verdict);
  void endTransaction();

  policies::Policy policy_;
  LogFunction log_;
  unsigned long protocolFlags_ = 0;
  std::string queueId_;
  std::string message_;  ///< headers and body of the current transaction, CRLF
};

/// The address in `"<a@b>"` (brackets and surrounding blanks removed).
std::string_view stripAngleBrackets(std::string_view arg);

}  // namespace smtpgate::milter
