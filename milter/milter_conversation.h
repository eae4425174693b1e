#pragma once
/// MilterConversation — one MTA connection at the protocol level: packets
/// in, reply bytes out, every command handed to a MilterSession.
///
/// It keeps what the protocol keeps per connection: the negotiated flags,
/// the macros of each stage (looked up newest stage first, "{i}" and "i"
/// alike, as libmilter's smfi_getsymval does), and the MilterSession of the
/// SMTP session in progress. It does no I/O, so the tests drive it with
/// packets (tests/milter/milter_conversation_test.cpp); serveConnection()
/// feeds it from a socket.
///
/// Replies, per command (the flags are what protocolFlags() asked for):
///   OPTNEG                  our version, actions and protocol flags
///   CONNECT HELO MAIL RCPT  the session's Response (SMFIR_REPLYCODE with the
///                           rule's reply for a refusal)
///   DATA UNKNOWN            continue
///   HEADER EOH              continue, or nothing with NR_HDR / NR_EOH
///   BODY                    nothing with NR_BODY; else continue, or skip once
///                           the session needs no more (SMFIP_SKIP)
///   BODYEOB                 the header changes, then the final Response
///   MACRO ABORT QUIT_NC     nothing
///   QUIT                    nothing; the connection ends
/// A refusal reply's code must be 5xx for reject and 4xx for tempfail, as
/// libmilter requires; otherwise the plain SMFIR_REJECT/SMFIR_TEMPFAIL is
/// sent and the MTA uses its own text.
///
/// Errors: a malformed packet or an unknown command throws
/// protocol::ProtocolError (the caller closes the connection; the MTA applies
/// milter_default_action). An exception from the Policy fails closed: that
/// command is answered with tempfail, and the reason goes to stderr; for a
/// command negotiated without reply (a header, end of headers) the
/// connection is closed instead.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "milter/milter_protocol.h"
#include "milter/milter_session.h"

namespace smtpgate::milter {

using SessionFactory = std::function<std::unique_ptr<MilterSession>()>;

class MilterConversation {
 public:
  explicit MilterConversation(SessionFactory newSession);

  /// Handles one packet, appending any reply to `out`. False when the MTA
  /// ended the connection (SMFIC_QUIT).
  bool handle(const protocol::Packet& packet, std::string& out);

  /// The value of macro `name` from the newest stage that defined it, or "".
  [[nodiscard]] std::string_view macro(std::string_view name) const;
  /// The session in progress, or null before the first command.
  [[nodiscard]] const MilterSession* session() const { return session_.get(); }

 private:
  MilterSession& sessionFor();
  void negotiate(const protocol::Negotiation& offered, std::string& out);
  void connect(const protocol::ConnectInfo& info, std::string& out);
  void endOfMessage(std::string_view lastChunk, std::string& out);
  void takeQueueId();
  /// `response`, unless it is a tempfail for a command negotiated without
  /// reply: then throws ProtocolError, so that the connection ends.
  Response failClosedWithoutReply(const Response& response, unsigned long noReplyFlag) const;
  void forgetTransactionMacros();
  [[nodiscard]] bool negotiated(unsigned long flag) const { return (protocol_ & flag) != 0; }

  SessionFactory newSession_;
  std::unique_ptr<MilterSession> session_;
  unsigned long protocol_ = 0;  ///< SMFIP_* agreed with the MTA
  unsigned long actions_ = 0;   ///< SMFIF_* agreed with the MTA
  /// Macros by stage (the command code they were sent with).
  std::map<char, std::vector<std::pair<std::string, std::string>>> macros_;
};

/// Appends the reply packets of `response`: its header changes, in order,
/// then its status (nothing for SMFIS_NOREPLY).
void appendResponse(std::string& out, const Response& response);

/// Serves one accepted connection (blocking I/O on `fd`, which the caller
/// owns and closes) until the MTA quits, the connection drops or breaks the
/// protocol. Never throws; problems go to stderr.
void serveConnection(int fd, MilterConversation& conversation);

}  // namespace smtpgate::milter
