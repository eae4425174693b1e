#pragma once
/// SmtpSession — one client connection of the proxy, as one coroutine.
///
/// Speaks RFC 5321 to the client, asks the Policy at every stage, and relays
/// what the Policy lets through to the backend over a BackendClient, opened
/// at the session's first MAIL. The invariant: the client hears 250 for a
/// message only after the backend said 250 for it. The message, by DATA or
/// by BDAT chunks (RFC 3030), is held (memory, then a temporary file; bounded
/// by the size limit), checked at its end, and written to the backend by the
/// proxy itself, by BDAT or re-dot-stuffed DATA with CRLF line ends, so the
/// backend never sees a different end of data than the proxy saw.
///
/// Lifetime: created by the Server for an accepted socket, runs on the one
/// thread of its io_context (so its handlers never run concurrently), ends when the client quits,
/// errs too often, times out, or the session lifetime passes (421). Every read and write has a
/// deadline. Replies to pipelined commands are queued and written in order, in one write, when the
/// proxy would otherwise wait for the client.
///
/// SECURITY: every client byte is hostile until parsed: command lines are
/// bounded (LineReader), commands parsed by one parser, DATA framed by
/// DataFramer (bare CR/LF refused or normalised, CVE-2023-51764), XCLIENT and
/// XFORWARD from the client refused, and nothing the client sends reaches
/// the backend except validated command lines and the re-stuffed message.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "policies/policy.h"
#include "proxy/backend_client.h"
#include "proxy/backend_pool.h"
#include "proxy/command_parser.h"
#include "proxy/line_reader.h"
#include "proxy/proxy_context.h"

namespace smtpgate::proxy {

/// Who an accepted connection came from, and the listener's port.
struct Peer {
  tcp::endpoint remote;
  std::uint16_t localPort = 0;
};

struct HeldMessage;

/// Why a held message is refused: the reply, and the limit that refused it
/// (a config key such as "max_message_size"), named in the decision log.
struct MessageRefusal {
  policies::Reply reply;
  std::string_view limit;
};

class SmtpSession {
 public:
  /// `backends`: the pool of the io_context `socket` belongs to. The socket
  /// comes from a listener with TCP_NODELAY set, which it inherits.
  SmtpSession(tcp::socket socket, ProxyContext& context, BackendPool& backends, const Peer& peer);
  ~SmtpSession();
  SmtpSession(const SmtpSession&) = delete;
  SmtpSession& operator=(const SmtpSession&) = delete;

  /// Serves the client until the session ends; never throws.
  asio::awaitable<void> run();
  /// The session's executor (its io_context's; one thread runs it).
  [[nodiscard]] asio::any_io_executor executor() { return socket_.get_executor(); }

 private:
  enum class Next { Continue, Close };

  asio::awaitable<void> serve();
  asio::awaitable<Next> greet();
  /// Reads the PROXY protocol header a trusted load balancer sends first and
  /// takes the real client's address from it; false: close without a reply.
  asio::awaitable<bool> readProxyHeader();
  asio::awaitable<bool> readCommand(CommandLine& line);
  asio::awaitable<bool> fill(Duration limit);
  asio::awaitable<bool> flush();
  asio::awaitable<Next> dispatch(const ParsedCommand& command, const std::string& line);

  asio::awaitable<Next> onHelo(const ParsedCommand& command, bool extended);
  asio::awaitable<Next> onMail(const ParsedCommand& command, const std::string& line);
  asio::awaitable<Next> onRcpt(const ParsedCommand& command, const std::string& line);
  asio::awaitable<Next> onData();
  asio::awaitable<Next> onBdat(const ParsedCommand& command);
  /// Reads exactly `size` bytes of a BDAT chunk into `into` (nullptr: they
  /// are thrown away); false if the client went away or took too long.
  asio::awaitable<bool> receiveChunk(std::uint64_t size, HeldMessage* into);
  /// More of a message: answers what is pending, then reads within the
  /// message's deadline (each read within the command timeout); false if
  /// the client went away or took too long.
  asio::awaitable<bool> awaitMessageBytes(std::chrono::steady_clock::time_point deadline);
  /// The end of a held message: refused if its content or storage failed,
  /// else checked and relayed.
  asio::awaitable<Next> deliverHeld(HeldMessage& message);
  /// Logs the refusal as a data-stage decision, ends the transaction, replies.
  asio::awaitable<Next> refuseMessage(const MessageRefusal& refusal);
  /// Why `verb` may not run now (its reply), or nullopt.
  std::optional<std::string_view> outOfOrder(Verb verb) const;
  /// A command that did not parse: its reply; a 521 one (BDAT) closes the session.
  Next refuseSyntax(const ParsedCommand& command);
  asio::awaitable<Next> onRset();
  asio::awaitable<Next> onStartTls(const ParsedCommand& command);
  std::string traceHeader() const;
  asio::awaitable<Next> relayMessage(std::string_view message);
  asio::awaitable<bool> ensureBackend();
  /// The real client, as XCLIENT or XFORWARD hand it to the backend.
  XclientFields clientFields() const;
  /// At the session's end: the backend connection goes back to the pool
  /// (reset first if a transaction is open), or QUIT after a failure.
  asio::awaitable<void> releaseBackend(bool failed);
  asio::awaitable<void> resetBackend();
  asio::awaitable<void> resetTransaction();

  /// Runs one Policy stage. With DNS on and a rule of the stage that may
  /// look it up, first here in cache-only mode (DnsResolver::CacheOnlyScope),
  /// and only if some answer is not cached on the context's blocking pool (a
  /// lookup may block), resuming on the session's executor afterwards.
  template <typename StageFunction>
  asio::awaitable<policies::Verdict> decide(rules::Stage stage, StageFunction run);

  /// The one place a Verdict becomes a reply line (STYLE.md G3).
  void replyVerdict(const policies::Verdict& verdict);
  void reply(std::string_view line);
  void reply(const policies::Reply& r);
  void relay(const BackendReply& r);
  Next error(std::string_view line);
  void endTransaction();
  void logDecision(const policies::Verdict& verdict);
  /// Logs a refusal by a limit rather than a rule like a rule's, `limit`
  /// (a config key) in the rule column; `address`: the MAIL FROM or RCPT TO
  /// address refused at those stages.
  void logLimit(rules::Stage stage, const policies::Reply& reply, std::string_view limit,
                std::string_view address = {});
  void logDelivery(const policies::Verdict& verdict, std::string queueId, bool replyLost);
  /// Frees this client's connection slot (per IP and global); idempotent.
  void releaseAdmission();

  tcp::socket socket_;
  IoWatchdog watchdog_;  ///< the deadline of every client read, write and handshake
  /// Set after a successful STARTTLS; from then on all client I/O goes through it.
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls_;
  policies::TlsInfo tlsInfo_;
  ProxyContext& context_;
  /// The config in force when the session was accepted; a reload does not
  /// change it under the session.
  const ServingConfigPtr config_;
  const ProxySettings& settings_;  ///< config_'s
  BackendPool& backends_;
  std::string clientIp_;
  std::uint16_t clientPort_ = 0;
  std::uint16_t localPort_ = 0;
  policies::Policy policy_;
  std::unique_ptr<BackendClient> backend_;
  /// The message of a BDAT transaction, from its first chunk to the LAST.
  std::unique_ptr<HeldMessage> chunks_;
  std::vector<std::string> extensions_;
  std::string inbuf_;
  std::string outbuf_;
  LineReader lines_;
  std::size_t errors_ = 0;
  bool admitted_ = false;
  bool refusedAtConnect_ = false;  ///< 554 banner: only QUIT is served
  bool heloSeen_ = false;
  bool esmtp_ = false;
  bool inTransaction_ = false;
  bool smtputf8_ = false;
  std::size_t rcpts_ = 0;
  std::uint64_t sizeLimit_ = 0;
};

}  // namespace smtpgate::proxy
