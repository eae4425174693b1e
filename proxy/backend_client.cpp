#include "proxy/backend_client.h"

#include <fmt/core.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <cerrno>
#include <utility>

#include "proxy/dot_stuffer.h"

namespace smtpgate::proxy {

namespace {

// A message is written this much at a time: a spilled 50 MB message is never
// copied whole into memory again, and a small one goes out in one write.
constexpr std::size_t kWriteWindow = 64 * 1024;

// Postfix counts RSET, NOOP, VRFY and ETRN per connection and treats each
// one past smtpd_junk_command_limit (100) as an error: a connection is kept
// for other clients only well below that.
constexpr std::size_t kResetLimit = 50;

// XFORWARD (Postfix XFORWARD_README) is the fallback when the backend does
// not trust us with XCLIENT: it only changes what Postfix logs.
std::string xforwardCommand(const XclientFields& client) {
  std::string line = "XFORWARD ADDR=" + xtextEncode(client.addr);
  if (client.port) {
    line += " PORT=" + std::to_string(*client.port);
  }
  line +=
      " NAME=" + (client.name.empty() ? std::string("[UNAVAILABLE]") : xtextEncode(client.name));
  if (client.helo) {
    line += " HELO=" + xtextEncode(client.helo->substr(0, limits::kXclientValueMax));
  }
  if (client.proto) {
    line += *client.proto == SmtpProtocol::Esmtp ? " PROTO=ESMTP" : " PROTO=SMTP";
  }
  return line;
}

}  // namespace

BackendClient::BackendClient(asio::any_io_executor executor, BackendOptions options)
    : options_(std::move(options)), socket_(executor), watchdog_(executor, [this] {
        boost::system::error_code ignored;
        socket_.cancel(ignored);
      }) {}

std::optional<BackendReply> BackendClient::fail(std::string what) {
  lastError_ = std::move(what);
  close();
  return std::nullopt;
}

void BackendClient::close() {
  boost::system::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  tls_.reset();
  inbuf_.clear();
  parser_.reset();
}

asio::awaitable<std::vector<tcp::endpoint>> BackendClient::endpoints() {
  std::vector<tcp::endpoint> out;
  boost::system::error_code ec;
  auto address = asio::ip::make_address(options_.host, ec);
  if (!ec) {
    out.emplace_back(address, options_.port);
    co_return out;
  }
  // A host name ("localhost", "mx.internal"): asked of the system resolver
  // (/etc/hosts, DNS) for every connection, so a changed address needs no
  // reload, as with Postfix's relayhost.
  tcp::resolver resolver(socket_.get_executor());
  auto [error, results] =
      co_await resolver.async_resolve(options_.host, std::to_string(options_.port), kUseTuple);
  if (error) {
    fail("resolve backend " + options_.host + ": " + error.message());
    co_return out;
  }
  for (const auto& entry : results) {
    out.push_back(entry.endpoint());
  }
  co_return out;
}

asio::awaitable<bool> BackendClient::connect() {
  tls_.reset();
  capabilities_.reset();
  byXclient_ = false;
  refused_ = false;
  resets_ = 0;
  xforward_.clear();
  openedAt_ = std::chrono::steady_clock::now();
  const std::vector<tcp::endpoint> candidates = co_await endpoints();
  if (candidates.empty()) {
    co_return false;  // endpoints() said why
  }
  boost::system::error_code error;
  for (const tcp::endpoint& endpoint : candidates) {
    boost::system::error_code ignored;
    socket_.close(ignored);  // after a failed attempt: the next one opens it afresh
    error = co_await withinNoBytes(watchdog_, socket_.async_connect(endpoint, kUseTuple),
                                   options_.connectTimeout);
    if (!error) {
      // Commands and replies are small and interactive: Nagle would add 40 ms
      // per round trip (Haraka's single-session figure in the proxy issue).
      socket_.set_option(tcp::no_delay(true), ignored);
      co_return true;
    }
  }
  fail("connect to " + options_.host + ":" + std::to_string(options_.port) + ": " +
       error.message());
  co_return false;
}

asio::awaitable<std::optional<BackendReply>> BackendClient::readReply(Duration limit) {
  parser_.reset();
  for (;;) {
    if (!inbuf_.empty()) {
      ParseResult r = parser_.feed(inbuf_);
      inbuf_.erase(0, r.consumed);
      if (r.status == ParseStatus::Complete) {
        refused_ = refused_ || parser_.reply().code >= 400;
        co_return parser_.reply();
      }
      if (r.status == ParseStatus::Error) {
        co_return fail("malformed reply from backend");
      }
    }
    char buf[4096];
    IoResult io;  // (if/else rather than ?: around co_await: see send())
    if (tls_) {
      io = co_await readSome(watchdog_, *tls_, asio::buffer(buf), limit);
    } else {
      io = co_await readSome(watchdog_, socket_, asio::buffer(buf), limit);
    }
    if (!io.ok()) {
      co_return fail(io.timedOut() ? "backend timed out" : "backend read: " + io.error.message());
    }
    inbuf_.append(buf, io.bytes);
  }
}

asio::awaitable<bool> BackendClient::write(std::string_view bytes) {
  if (!connected()) {
    fail("backend not connected");
    co_return false;
  }
  IoResult io = co_await send(bytes, options_.commandTimeout);
  if (!io.ok()) {
    fail("backend write: " + io.error.message());
    co_return false;
  }
  co_return true;
}

asio::awaitable<IoResult> BackendClient::send(std::string_view bytes, Duration limit) {
  // (if/else: g++ 12 runs the wrong arm of `co_return c ? co_await a : co_await b`.)
  if (tls_) {
    co_return co_await writeAll(watchdog_, *tls_, bytes, limit);
  }
  co_return co_await writeAll(watchdog_, socket_, bytes, limit);
}

asio::awaitable<std::optional<BackendReply>> BackendClient::command(std::string_view line) {
  std::string out(line);
  out += "\r\n";
  if (!co_await write(out)) {
    co_return std::nullopt;
  }
  co_return co_await readReply(options_.commandTimeout);
}

asio::awaitable<std::optional<BackendReply>> BackendClient::reset() {
  ++resets_;
  co_return co_await command("RSET");
}

asio::awaitable<std::optional<BackendReply>> BackendClient::mail(std::string_view line) {
  if (xforward_.empty()) {
    co_return co_await command(line);
  }
  // XFORWARD need not end a command group (Postfix's own SMTP client
  // pipelines it with MAIL): with PIPELINING both go out in one write.
  const bool pipelined = capabilities_ && capabilityParams(*capabilities_, "PIPELINING");
  std::string out = xforward_ + "\r\n";
  if (pipelined) {
    out += line;
    out += "\r\n";
  }
  if (!co_await write(out)) {
    co_return std::nullopt;
  }
  auto forwarded = co_await readReply(options_.commandTimeout);
  if (!forwarded) {
    co_return std::nullopt;
  }
  if (forwarded->code != 250) {
    co_return fail("backend refused XFORWARD: " + forwarded->render());
  }
  // (Not a conditional expression: g++ 12 destroys a co_await's class-type
  // result in one too early.)
  if (pipelined) {
    co_return co_await readReply(options_.commandTimeout);
  }
  co_return co_await command(line);
}

asio::awaitable<std::optional<BackendReply>> BackendClient::sendMessage(std::string_view header,
                                                                        std::string_view message) {
  // Stuffed and written a window at a time (kWriteWindow).
  DotStuffer stuffer;
  std::string out;
  stuffer.feed(header, out);
  bool ok = true;
  for (std::size_t at = 0; ok && at < message.size(); at += kWriteWindow) {
    stuffer.feed(message.substr(at, kWriteWindow), out);
    if (out.size() >= kWriteWindow) {
      ok = (co_await send(out, options_.dataTimeout)).ok();
      out.clear();
    }
  }
  if (ok) {
    stuffer.finish(out);
    ok = (co_await send(out, options_.dataTimeout)).ok();
  }
  if (!ok) {
    co_return fail("backend write during DATA failed");
  }
  co_return co_await readReply(options_.dataTimeout);
}

asio::awaitable<std::optional<BackendReply>> BackendClient::sendMessageChunked(
    std::string_view header, std::string_view message) {
  // RFC 3030: the size says where the message ends, so nothing is stuffed
  // and no end-of-data line can be forged; the message is already CRLF only.
  std::string out = "BDAT " + std::to_string(header.size() + message.size()) + " LAST\r\n";
  out += header;
  const std::size_t firstPart = std::min(message.size(), kWriteWindow);
  out += message.substr(0, firstPart);
  bool ok = (co_await send(out, options_.dataTimeout)).ok();
  for (std::size_t at = firstPart; ok && at < message.size(); at += kWriteWindow) {
    ok = (co_await send(message.substr(at, kWriteWindow), options_.dataTimeout)).ok();
  }
  if (!ok) {
    co_return fail("backend write during BDAT failed");
  }
  co_return co_await readReply(options_.dataTimeout);
}

asio::awaitable<std::optional<BackendReply>> BackendClient::ehlo(std::string_view name) {
  auto reply = co_await command("EHLO " + std::string(name));
  if (!reply) {
    co_return std::nullopt;
  }
  if (reply->code != 250) {
    co_return fail("backend refused EHLO: " + reply->render());
  }
  capabilities_ = capabilitiesFromEhlo(*reply);
  co_return reply;
}

asio::awaitable<std::optional<BackendReply>> BackendClient::ownEhlo() {
  auto reply = co_await ehlo(options_.ehloName);
  if (reply) {
    auto offer = capabilityParams(*capabilities_, "XCLIENT");
    xclientOffer_ = offer ? "XCLIENT " + *offer : std::string();
  }
  co_return reply;
}

// Each XCLIENT command answers 220 (Postfix; others 250) and the session
// restarts, so EHLO is due again.
asio::awaitable<BackendClient::Introduction> BackendClient::introduce(
    const XclientFields& client, const std::set<std::string>& offer) {
  for (const auto& line : xclientCommands(client, offer)) {
    auto reply = co_await command(line);
    if (!reply) {
      co_return Introduction::Failed;
    }
    if (reply->code / 100 != 2) {
      lastError_ = "backend refused XCLIENT: " + reply->render();
      co_return Introduction::Refused;
    }
  }
  co_return Introduction::Done;
}

asio::awaitable<BackendClient::Introduction> BackendClient::handOver(
    const XclientFields& client, const std::set<std::string>& offer) {
  const Introduction introduced = co_await introduce(client, offer);
  if (introduced != Introduction::Done) {
    co_return introduced;
  }
  // EHLO for the client, whose answer also tells what this backend offers
  // now (CHUNKING decides how the message goes).
  auto greeted = co_await ehlo(client.helo.value_or(options_.ehloName));
  if (!greeted) {
    co_return Introduction::Failed;
  }
  byXclient_ = true;
  co_return Introduction::Done;
}

// Without XCLIENT or XFORWARD Postfix sees the proxy as the client, which is
// why the xclient setting matters.
asio::awaitable<bool> BackendClient::introduceAfterEhlo(const XclientFields& client) {
  if (!options_.xclient) {
    co_return true;
  }
  if (xclientTakesAddress(*capabilities_)) {
    const Introduction introduced = co_await handOver(client, *capabilities_);
    if (introduced == Introduction::Refused) {
      fail(lastError_);
    }
    co_return introduced == Introduction::Done;
  }
  if (capabilityParams(*capabilities_, "XFORWARD")) {
    xforward_ = xforwardCommand(client);
  }
  co_return true;
}

asio::awaitable<bool> BackendClient::connectAndReadBanner() {
  if (!co_await connect()) {
    co_return false;
  }
  auto banner = co_await readReply(options_.connectTimeout);
  if (!banner) {
    co_return false;
  }
  if (banner->code != 220) {
    fail("backend banner: " + banner->render());
    co_return false;
  }
  co_return true;
}

asio::awaitable<BackendClient::Greeting> BackendClient::greet(BackendTls level) {
  // (A named result: g++ 12 mistranslates `!co_await` on a class-type
  // result, with an illegal instruction at run time.)
  auto greeted = co_await ownEhlo();
  if (!greeted) {
    co_return Greeting::Failed;
  }
  if (level == BackendTls::None) {
    co_return Greeting::Done;
  }
  if (!capabilityParams(*capabilities_, "STARTTLS")) {
    if (level == BackendTls::May) {
      co_return Greeting::Done;  // opportunistic: plaintext it is
    }
    fail("backend offers no STARTTLS, and backend_tls requires it");
    co_return Greeting::Failed;
  }
  co_return co_await startTls(level);
}

asio::awaitable<BackendClient::Greeting> BackendClient::startTls(BackendTls level) {
  auto reply = co_await command("STARTTLS");
  if (!reply) {
    co_return Greeting::Failed;
  }
  if (reply->code != 220) {
    if (level == BackendTls::May) {
      co_return Greeting::Done;  // the session goes on in plaintext
    }
    fail("backend refused STARTTLS: " + reply->render());
    co_return Greeting::Failed;
  }
  // Bytes after the 220 came in plaintext, from anyone on the path (the
  // client side of CVE-2011-0411): they are not read as TLS-protected replies.
  inbuf_.clear();
  tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(socket_, *options_.tlsContext);
  boost::system::error_code notAnAddress;
  asio::ip::make_address(options_.host, notAnAddress);
  if (notAnAddress) {
    SSL_set_tlsext_host_name(tls_->native_handle(), options_.host.c_str());  // SNI
  }
  if (level == BackendTls::Verify) {
    tls_->set_verify_mode(asio::ssl::verify_peer);
    tls_->set_verify_callback(asio::ssl::host_name_verification(options_.host));
  } else {
    tls_->set_verify_mode(asio::ssl::verify_none);
  }
  auto error = co_await withinNoBytes(
      watchdog_, tls_->async_handshake(asio::ssl::stream_base::client, kUseTuple),
      options_.connectTimeout);
  if (error) {
    fail("TLS handshake with the backend: " + error.message());
    co_return level == BackendTls::May ? Greeting::TlsFailed : Greeting::Failed;
  }
  // RFC 3207 section 4.2: what the EHLO before STARTTLS said is forgotten.
  auto greeted = co_await ownEhlo();
  if (!greeted) {
    co_return Greeting::Failed;
  }
  co_return Greeting::Done;
}

asio::awaitable<bool> BackendClient::connectAndGreet() {
  if (!co_await connectAndReadBanner()) {
    co_return false;
  }
  Greeting greeting = co_await greet(options_.tls);
  if (greeting == Greeting::TlsFailed) {
    // Postfix's "may": a TLS failure is no reason not to deliver; a new
    // connection, in plaintext.
    fmt::print(stderr, "smtpgate: backend {}:{}: {}; going on without TLS\n", options_.host,
               options_.port, lastError_);
    if (!co_await connectAndReadBanner()) {
      co_return false;
    }
    greeting = co_await greet(BackendTls::None);
  }
  co_return greeting == Greeting::Done;
}

asio::awaitable<bool> BackendClient::open(const XclientFields& client,
                                          const std::optional<std::string>& xclientOffer) {
  const std::set<std::string> offer{xclientOffer.value_or(std::string())};
  // With the backend's XCLIENT offer known, and no TLS to set up first,
  // XCLIENT follows the banner at once, without the proxy's own EHLO.
  if (options_.tls == BackendTls::None && options_.xclient && xclientTakesAddress(offer)) {
    if (!co_await connectAndReadBanner()) {
      co_return false;
    }
    const Introduction introduced = co_await handOver(client, offer);
    if (introduced != Introduction::Refused) {
      co_return introduced == Introduction::Done;
    }
    // Refused: the backend's offer changed since it was seen; learn it again.
    auto greeted = co_await ownEhlo();
    if (!greeted) {
      co_return false;
    }
  } else if (!co_await connectAndGreet()) {
    co_return false;
  }
  co_return co_await introduceAfterEhlo(client);
}

void BackendClient::reintroduce(const XclientFields& client) {
  if (!xforward_.empty()) {
    xforward_ = xforwardCommand(client);  // goes out with the next MAIL
  }
}

// Postfix refuses XCLIENT after XCLIENT: its check of
// smtpd_authorized_xclient_hosts then applies to the client the first one
// named (and its EHLO answer no longer offers XCLIENT). And it counts
// refusals per connection (smtpd_soft_error_limit delays every reply after
// 10, smtpd_hard_error_limit disconnects after 20): one client's unknown
// recipients, or the RSETs after the messages our rules refused, must not
// slow down or cut off the next client's session.
bool BackendClient::reusable() const {
  return connected() && !byXclient_ && !refused_ && resets_ < kResetLimit;
}

bool BackendClient::quiet() {
  if (!connected() || !inbuf_.empty() || (tls_ && SSL_pending(tls_->native_handle()) > 0)) {
    return false;
  }
  char byte = 0;
  const ssize_t n = ::recv(socket_.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

asio::awaitable<std::optional<std::set<std::string>>> BackendClient::probe() {
  if (!co_await connectAndGreet()) {
    co_return std::nullopt;
  }
  auto caps = capabilities_;
  co_await quit();
  co_return caps;
}

asio::awaitable<void> BackendClient::quit() {
  if (connected()) {
    co_await command("QUIT");
  }
  close();
}

}  // namespace smtpgate::proxy
