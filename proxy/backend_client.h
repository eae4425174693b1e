#pragma once
/// BackendClient — the proxy's SMTP client to the backend MTA (Postfix).
///
/// Connected lazily at a client session's first MAIL (a session refused
/// earlier never costs a backend connection), and kept between sessions by
/// BackendPool. `open()` connects, reads the banner and hands over the real
/// client, so Postfix logs and applies its restrictions to the real client;
/// the proxy needs no place in the backend's mynetworks:
/// - XCLIENT (only if it takes ADDR), then EHLO with the client's HELO name.
///   When the backend's XCLIENT offer is known already (the start-up probe,
///   an earlier session), XCLIENT follows the banner at once, without the
///   proxy's own EHLO; if the backend refuses it now, the offer has changed,
///   and open() falls back to EHLO first (XCLIENT may come at any time
///   outside a transaction, Postfix XCLIENT_README).
/// - Otherwise XFORWARD (logging only), before every MAIL: Postfix forgets
///   XFORWARD attributes at the end of each transaction. It goes out with
///   MAIL in one write when the backend offers PIPELINING (Postfix's own
///   SMTP client pipelines it the same way).
/// `reintroduce()` hands the next session's client over on a kept
/// connection by XFORWARD, without connect, banner, EHLO or QUIT (XCLIENT
/// connections are not kept: Postfix takes XCLIENT once per connection).
/// Afterwards `command()` and `mail()` send one line and return the backend's
/// reply, parsed strictly (a malformed reply is a failure, never relayed).
/// `sendMessage()` writes an already dot-stuffed message and returns the
/// final reply.
///
/// STARTTLS (BackendOptions::tls, Postfix's smtp_tls_security_level): after
/// the banner the proxy says EHLO, STARTTLS, and EHLO again over TLS (RFC
/// 3207: what was learnt before is forgotten), and only then hands the
/// client over, so XCLIENT's attributes never cross the wire in plaintext.
/// "may" goes on in plaintext when the backend offers no STARTTLS, refuses
/// it, or the handshake fails (on a new connection, as Postfix does);
/// "encrypt" and "verify" fail instead, "verify" also when the certificate
/// does not chain to a trusted CA or name the backend's host.
///
/// Every operation has a deadline; any failure (refused connection, timeout,
/// bad reply, EOF, cancellation) leaves the client closed and is reported as
/// nullopt with `lastError()` saying what happened. So a connection still
/// open between operations is at a command boundary, with no reply pending:
/// what makes it safe to keep for another session. Runs on the session's
/// executor (one thread).
///
/// SECURITY: backend replies are untrusted bytes too: bounded by
/// ReplyParser's limits; lines we send never contain CR or LF except as the
/// terminator (commands come from the validated client line or from xtext).

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "proxy/reply_parser.h"
#include "proxy/timed_io.h"
#include "proxy/xtext.h"

namespace smtpgate::proxy {

/// TLS to the backend, by Postfix's smtp_tls_security_level names.
enum class BackendTls {
  None,     ///< plaintext
  May,      ///< STARTTLS when offered and working, else plaintext; no verification
  Encrypt,  ///< STARTTLS or no delivery; the certificate is not checked
  Verify,   ///< as Encrypt, and the certificate must chain to a trusted CA and name the host
};

struct BackendOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 25;
  std::string ehloName = "localhost";  ///< our name, for the first EHLO
  bool xclient = true;                 ///< hand over the client with XCLIENT/XFORWARD
  Duration connectTimeout = std::chrono::seconds(30);
  Duration commandTimeout = std::chrono::seconds(300);  ///< Postfix smtp_*_timeout = 300s
  Duration dataTimeout = std::chrono::seconds(600);     ///< smtp_data_done_timeout = 600s
  BackendTls tls = BackendTls::None;
  /// The client TLS context (protocol versions, trusted CAs); set whenever
  /// tls is not None. Shared by every connection.
  std::shared_ptr<asio::ssl::context> tlsContext;

  /// Same backend, reached the same way (a reload that changes any of this,
  /// or makes a new TLS context, retires connections kept under the old).
  friend bool operator==(const BackendOptions&, const BackendOptions&) = default;
};

class BackendClient {
 public:
  BackendClient(asio::any_io_executor executor, BackendOptions options);

  /// What this connection was made with.
  [[nodiscard]] const BackendOptions& options() const { return options_; }

  /// Connects and introduces the client. `xclientOffer` is the backend's
  /// "XCLIENT ..." capability as last seen (see xclientOffer()), if known.
  /// False on any failure (lastError() says which).
  asio::awaitable<bool> open(const XclientFields& client,
                             const std::optional<std::string>& xclientOffer = std::nullopt);
  /// Connects, says EHLO, returns the capabilities and says QUIT.
  asio::awaitable<std::optional<std::set<std::string>>> probe();

  /// For a connection kept from an earlier session (see reusable()): hands
  /// `client` over instead of the one before, by the XFORWARD the next MAIL
  /// carries (or not at all, as before). BackendPool keeps only connections
  /// that can do this.
  void reintroduce(const XclientFields& client);

  /// Sends one command line (without CRLF) and reads the reply.
  asio::awaitable<std::optional<BackendReply>> command(std::string_view line);
  /// RSET and its reply (counted: see reusable()).
  asio::awaitable<std::optional<BackendReply>> reset();
  /// MAIL (`line`, without CRLF) and its reply, after XFORWARD where the
  /// client is handed over that way (a refused XFORWARD is a failure).
  asio::awaitable<std::optional<BackendReply>> mail(std::string_view line);
  /// After the backend's 354: writes `header` (lines the proxy adds, CRLF
  /// ended) and `message`, dot-stuffed and terminated, and reads the final reply.
  asio::awaitable<std::optional<BackendReply>> sendMessage(std::string_view header,
                                                           std::string_view message);
  /// For a backend that offers CHUNKING, instead of DATA and sendMessage():
  /// one `BDAT <size> LAST` with `header` and `message` (CRLF only, not
  /// dot-stuffed) and its reply, the final one: one round trip less than
  /// DATA's 354 and the message.
  asio::awaitable<std::optional<BackendReply>> sendMessageChunked(std::string_view header,
                                                                  std::string_view message);
  /// QUIT, politely, ignoring the answer; then close.
  asio::awaitable<void> quit();

  [[nodiscard]] bool connected() const { return socket_.is_open(); }
  /// Whether this connection can serve another client: open, not handed
  /// over by XCLIENT (Postfix takes it once per connection), no reply on it
  /// was a refusal and fewer than kResetLimit RSETs went over it (Postfix
  /// counts errors and junk commands per connection).
  [[nodiscard]] bool reusable() const;
  /// Whether the backend has said nothing since its last reply (an idle
  /// connection it closed, or timed out with 421, has): one non-blocking peek.
  [[nodiscard]] bool quiet();
  [[nodiscard]] std::chrono::steady_clock::time_point openedAt() const { return openedAt_; }
  /// The extensions in this connection's last EHLO reply (nullopt before
  /// open() has seen one).
  [[nodiscard]] const std::optional<std::set<std::string>>& capabilities() const {
    return capabilities_;
  }
  /// Whether this connection's EHLO answer offered CHUNKING: then messages
  /// go by sendMessageChunked(). Never judged on an older answer: a backend
  /// without BDAT would run the message's lines as commands.
  [[nodiscard]] bool chunking() const {
    return capabilities_ && capabilityParams(*capabilities_, "CHUNKING").has_value();
  }
  /// Whether the backend answered the proxy's own EHLO (open() without a
  /// usable offer, probe()), and the "XCLIENT ..." capability in that answer
  /// (empty if none). Postfix offers XCLIENT to the proxy only, never after
  /// it: the EHLO that follows XCLIENT speaks for the real client.
  [[nodiscard]] std::optional<std::string> xclientOffer() const { return xclientOffer_; }
  [[nodiscard]] const std::string& lastError() const { return lastError_; }
  void close();

 private:
  enum class Greeting { Done, Failed, TlsFailed };
  /// The backend's address, or the host name's addresses; empty (and
  /// lastError() set) if the name does not resolve.
  asio::awaitable<std::vector<tcp::endpoint>> endpoints();
  asio::awaitable<bool> connect();
  /// connect() and the banner; false (closed, lastError() set) on failure.
  asio::awaitable<bool> connectAndReadBanner();
  /// After the banner: our EHLO and, as `level` asks, STARTTLS and EHLO again.
  /// TlsFailed: the handshake failed with `level` May (the connection is
  /// closed; a refused or absent STARTTLS leaves May in plaintext, Done).
  asio::awaitable<Greeting> greet(BackendTls level);
  /// STARTTLS and the handshake on a connection whose EHLO offered it.
  asio::awaitable<Greeting> startTls(BackendTls level);
  /// Connects and greets as BackendOptions::tls asks; with "may", once more
  /// in plaintext if TLS failed.
  asio::awaitable<bool> connectAndGreet();
  asio::awaitable<std::optional<BackendReply>> readReply(Duration limit);
  /// Writes `bytes` within the command timeout; false (closed) on failure.
  asio::awaitable<bool> write(std::string_view bytes);
  /// Writes `bytes` within `limit`, through TLS once it is on.
  asio::awaitable<IoResult> send(std::string_view bytes, Duration limit);
  asio::awaitable<std::optional<BackendReply>> ehlo(std::string_view name);
  /// EHLO with our own name (not the one said for the real client after
  /// XCLIENT); remembers the XCLIENT offer in it.
  asio::awaitable<std::optional<BackendReply>> ownEhlo();
  enum class Introduction { Done, Refused, Failed };
  /// XCLIENT lines for the attributes `offer` names; Refused (connection
  /// kept, refusal in lastError()) on the first reply that is not 2xx.
  asio::awaitable<Introduction> introduce(const XclientFields& client,
                                          const std::set<std::string>& offer);
  /// After the proxy's own EHLO: XCLIENT when it takes the client's address,
  /// else XFORWARD for every transaction, else nothing.
  asio::awaitable<bool> introduceAfterEhlo(const XclientFields& client);
  /// XCLIENT for `client` (by `offer`), then EHLO with the client's name.
  asio::awaitable<Introduction> handOver(const XclientFields& client,
                                         const std::set<std::string>& offer);
  std::optional<BackendReply> fail(std::string what);

  BackendOptions options_;
  tcp::socket socket_;
  IoWatchdog watchdog_;  ///< after socket_: it cancels socket_'s operations
  /// After STARTTLS: all I/O goes through it.
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls_;
  ReplyParser parser_;
  std::string inbuf_;
  std::optional<std::set<std::string>> capabilities_;
  std::optional<std::string> xclientOffer_;
  /// How the client was handed over: by XCLIENT, or (when xforward_ is not
  /// empty) by XFORWARD before each MAIL, or not at all.
  bool byXclient_ = false;
  bool refused_ = false;    ///< a 4xx or 5xx reply came on this connection
  std::size_t resets_ = 0;  ///< RSETs sent on this connection
  std::string xforward_;    ///< the XFORWARD command for every transaction
  std::chrono::steady_clock::time_point openedAt_;
  std::string lastError_;
};

}  // namespace smtpgate::proxy
