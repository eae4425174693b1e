#pragma once
/// MilterSession — one Postfix milter connection, as calls on one Policy.
///
/// Postfix sequences SMTP; the milter only adapts callbacks (STYLE.md G3).
/// Each milter command of a connection becomes one method here, in the
/// same order and onto the same Policy stages as the proxy's SMTP session:
///
///   connect -> Policy::onConnect      helo   -> Policy::onHelo
///   envfrom -> Policy::onMail         envrcpt -> Policy::onRcpt
///   header, eoh, body -> the message is kept (only if a rule reads it)
///   eom     -> Policy::onEndOfData    abort  -> Policy::onReset
///
/// and every Verdict becomes a Response in exactly one function,
/// toResponse(). The protocol engine (milter_conversation.cpp) turns a
/// Response into reply packets and never looks at a Verdict itself.
///
/// Header changes. A message let through at end of message (accepted, or a
/// would-be refusal in dry-run) gets the Policy's headersToAdd()
/// (Authentication-Results) inserted at the top, and loses the incoming
/// Authentication-Results that claim our authserv-id, like in the proxy.
/// The header callback remembers the 1-based index, among the fields named
/// Authentication-Results, of each forged one (the protocol counts per field
/// name, as does Postfix); the end-of-message Response lists the changes in
/// the order the engine must send them: the deletions from the LAST index to
/// the first — deleting front to back would shift the later indexes down
/// and let forged fields survive — and then the insertions. Deleting first
/// also keeps our own field out of the count.
///
/// Where ours goes: at kInsertIndex (1), just below the MTA's own Received
/// header, like the proxy's (Postfix puts its Received above what the proxy
/// relays) and like opendkim's. Postfix does not show its Received header to
/// milters, but counts it in smfi_insheader's index: index 0 would put our
/// field above it (tests/integration/milter_test.cpp checks where it lands).
///
/// This class knows nothing of the wire protocol: it is fed plain values, so it can be
/// tested without a running MTA.
///
/// Lifetimes: a MilterSession lives from the MTA's option negotiation (or
/// connect) until the connection ends or the MTA reuses it for another SMTP session.
/// The transaction inside the Policy starts at envfrom and ends at eom, at
/// abort (RSET, or the client left mid-transaction) or when MAIL is refused.
/// The message buffer lives only as long as that transaction.
///
/// Decision log: like the proxy, every refusal and every would-be refusal
/// (monitor rules, dry-run) is logged when it happens, and every message let
/// through at end of data gets one "deliver" line. Lines carry Postfix's
/// queue id (the `{i}` macro) once Postfix has assigned one.
///
/// Thread-safety: the engine calls the methods of one connection one after
/// another, on one thread at a time; a MilterSession is not shared.

#include <libmilter/mfapi.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policies/decision_log.h"
#include "policies/policy.h"
#include "policies/verdict.h"
#include "rules/rule_set.h"

namespace smtpgate::milter {

/// One header change at end of message: smfi_chgheader(name, index, NULL)
/// for Delete, smfi_insheader(index, name, value) for Insert.
struct HeaderChange {
  enum class Kind { Delete, Insert };
  Kind kind = Kind::Insert;
  std::string name;
  /// Delete: 1-based among the fields called `name`. Insert: the position
  /// among all fields, 0 = the very top.
  int index = 0;
  /// Insert: the value as the MTA wants it (with the leading space when
  /// HDR_LEADSPC was negotiated); one line.
  std::string value;
};

/// smfi_insheader's index for the fields we add: just below the MTA's own
/// Received header (see the top of this file).
inline constexpr int kInsertIndex = 1;

/// What a callback answers: an SMFIS_* status and, for refusals, the reply
/// that smfi_setreply must carry; at end of message, the header changes to
/// make before answering, in order.
struct Response {
  sfsistat status = SMFIS_CONTINUE;
  std::optional<policies::Reply> reply;
  std::vector<HeaderChange> headerChanges = {};  // initialised: {status, reply} stays warning-free
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
/// (`offered`), whether any loaded rule reads the message and whether the
/// header fields must be seen anyway (`editsHeaders`: to find forged
/// Authentication-Results). Steps nobody needs are switched off
/// (NOHDRS/NOEOH/NOBODY; NOUNKNOWN always, we register no such callback;
/// but never NODATA, see "Nagle" in milter_server.h); header and end-of-header replies are skipped
/// (NR_HDR/NR_EOH) since we never answer them with anything but "continue"; headers come with their
/// leading space (HDR_LEADSPC) so the message the rules see is byte-exact. Only flags in `offered`
/// are asked for.
unsigned long protocolFlags(unsigned long offered, bool needsMessage, bool editsHeaders);

/// The SMFIF_* actions to ask for: ADDHDRS and CHGHDRS when the Policy
/// edits headers, as far as the MTA offers them (`offered`).
unsigned long actionFlags(unsigned long offered, bool editsHeaders);

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
  /// The actions negotiated for this connection (see actionFlags): header
  /// changes the MTA did not allow are left out of every Response.
  void setActionFlags(unsigned long flags) { actionFlags_ = flags; }
  [[nodiscard]] unsigned long actionFlags() const { return actionFlags_; }

  /// `ip` is nullopt when the MTA does not know the client's address (mail
  /// submitted locally through non_smtpd_milters without one): the client
  /// is then taken to be 127.0.0.1, this host.
  Response connect(const std::optional<rules::IpAddress>& ip, std::uint16_t port,
                   std::uint16_t localPort);
  Response helo(std::string_view name, const policies::TlsInfo& tls);
  /// `args` as the MTA sends them: "<sender>", then ESMTP parameters.
  Response envelopeFrom(const std::vector<std::string_view>& args);
  /// `args` as the MTA sends them: "<recipient>", then ESMTP parameters.
  Response envelopeRecipient(const std::vector<std::string_view>& args);
  /// One header, `value` as the MTA sent it (with its leading space when
  /// HDR_LEADSPC was negotiated; folded lines joined by "\n" or "\r\n").
  /// A forged Authentication-Results is remembered for deletion.
  void header(std::string_view name, std::string_view value);
  void endOfHeaders();
  /// A body chunk (CRLF line ends). False once the rest of the body is not
  /// needed (no rule reads it, or the transaction was accepted by a rule).
  bool body(std::string_view chunk);
  /// The verdict of end of data; for a message let through, with the
  /// header changes (see the top of this file).
  Response endOfMessage();
  /// The message was aborted (RSET, a new MAIL, the client left): drop the
  /// transaction and its message, keep the session.
  void abort();

  /// Postfix's queue id from the `{i}` macro, when the MTA sends it; the
  /// engine sets it before each envelope and end-of-message call. Cleared at
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
  [[nodiscard]] std::vector<HeaderChange> headerChanges() const;
  void endTransaction();

  policies::Policy policy_;
  LogFunction log_;
  unsigned long protocolFlags_ = 0;
  unsigned long actionFlags_ = 0;
  std::string queueId_;
  std::string message_;  ///< headers and body of the current transaction, CRLF
  /// Header fields of the current message seen so far, per lower-cased
  /// name, and those to delete at end of message (Policy::removesIncoming:
  /// forged Authentication-Results, incoming X-Spam-*) as (name, 1-based
  /// index among that name's fields), in the order seen.
  std::map<std::string, int> fieldsSeen_;
  std::vector<std::pair<std::string, int>> removedFields_;
};

/// The address in `"<a@b>"` (brackets and surrounding blanks removed).
std::string_view stripAngleBrackets(std::string_view arg);

}  // namespace smtpgate::milter
