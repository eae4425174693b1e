#include "proxy/smtp_session.h"

#include <fmt/core.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>

#include "policies/authentication_results.h"
#include "proxy/extensions.h"
#include "proxy/proxy_protocol.h"
#include "proxy/spill_sink.h"

namespace smtpgate::proxy {

namespace {

using policies::Action;
using policies::Verdict;

constexpr std::size_t kReadChunk = 16 * 1024;

/// The command table (STYLE.md G3/G11): what each verb needs before it may run.
struct CommandSpec {
  Verb verb;
  bool needsHelo;
  bool needsMail;
  bool needsRcpt;
  bool needsEhlo = false;  ///< an ESMTP extension's command (BDAT: CHUNKING)
};

constexpr CommandSpec kCommands[] = {
    {Verb::Helo, false, false, false},     {Verb::Ehlo, false, false, false},
    {Verb::Mail, true, false, false},      {Verb::Rcpt, true, true, false},
    {Verb::Data, true, true, true},        {Verb::Rset, false, false, false},
    {Verb::Noop, false, false, false},     {Verb::Quit, false, false, false},
    {Verb::Help, false, false, false},     {Verb::Vrfy, false, false, false},
    {Verb::Expn, false, false, false},     {Verb::StartTls, false, false, false},
    {Verb::Auth, false, false, false},     {Verb::Xclient, false, false, false},
    {Verb::Xforward, false, false, false}, {Verb::Bdat, true, true, true, true},
};

const CommandSpec* specFor(Verb verb) {
  for (const auto& spec : kCommands) {
    if (spec.verb == verb) {
      return &spec;
    }
  }
  return nullptr;
}

std::string rcptAddress(const ParsedCommand& c) {
  return c.path.address;
}

/// Runs a stage with the DNS resolver in cache-only mode: the verdict if
/// every lookup was answered from the cache, nullopt if one was not (the
/// Policy left nothing behind; run the stage again where it may block).
template <typename StageFunction>
std::optional<Verdict> runFromCache(StageFunction& run) {
  policies::DnsResolver::CacheOnlyScope cacheOnly;
  try {
    return run();
  } catch (const policies::DnsResolver::WouldBlock&) {
    return std::nullopt;
  }
}

/// The config key (or the fixed limit) behind a DataError, for the decision
/// log's rule column.
std::string_view limitName(DataError error) {
  switch (error) {
    case DataError::BareLf:
    case DataError::BareCr:
      return policies::limit_rule::kBareNewlines;
    case DataError::TooBig:
      return policies::limit_rule::kMaxMessageSize;
    case DataError::LineTooLong:
      return policies::limit_rule::kMessageLineLength;
    case DataError::HeaderTooBig:
      return policies::limit_rule::kMaxHeaderSize;
    case DataError::None:
      break;
  }
  return {};
}

}  // namespace

/// A message being received: its framer (DATA or BDAT) and where it is held.
struct HeldMessage {
  HeldMessage(const ProxySettings& settings, std::uint64_t sizeLimit, Framing framing)
      : framer(limitsFor(settings, sizeLimit), framing),
        sink(settings.messageMemoryLimit, settings.spoolDirectory) {}

  static DataLimits limitsFor(const ProxySettings& settings, std::uint64_t sizeLimit) {
    DataLimits limits;
    limits.maxSize = sizeLimit ? sizeLimit : UINT64_MAX;
    limits.maxHeader = settings.maxHeaderSize;
    limits.bareLines = settings.bareLines;
    return limits;
  }

  /// Why the message is refused, if its content or its storage failed.
  [[nodiscard]] std::optional<MessageRefusal> refusal() const {
    if (sink.failed()) {
      return MessageRefusal{{452, {4, 3, 1}, "Error: insufficient system storage"},
                            policies::limit_rule::kSpool};
    }
    if (framer.error() != DataError::None) {
      return MessageRefusal{replyFor(framer.error()), limitName(framer.error())};
    }
    return std::nullopt;
  }

  DataFramer framer;
  SpillSink sink;
};

SmtpSession::SmtpSession(tcp::socket socket, ProxyContext& context, BackendPool& backends,
                         const Peer& peer)
    : socket_(std::move(socket)),
      watchdog_(socket_.get_executor(),
                [this] {
                  boost::system::error_code ignored;
                  socket_.cancel(ignored);
                }),
      context_(context),
      config_(context.current()),
      settings_(config_->settings),
      backends_(backends),
      policy_(config_->rules, policies::newSessionId(), settings_.policy),
      lines_(settings_.maxLineLength) {
  auto address = peer.remote.address();
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  }
  clientIp_ = address.to_string();
  clientPort_ = peer.remote.port();
  localPort_ = peer.localPort;
  context_.metrics.sessionOpened();
}

SmtpSession::~SmtpSession() {
  releaseAdmission();
  context_.metrics.sessionClosed();
}

asio::awaitable<void> SmtpSession::run() {
  using namespace asio::experimental::awaitable_operators;
  bool failed = false;
  try {
    asio::steady_timer lifetime(socket_.get_executor(), settings_.sessionLifetime);
    auto result = co_await (serve() || lifetime.async_wait(kUseTuple));
    if (result.index() == 1) {
      outbuf_.clear();
      reply("421 4.4.2 " + settings_.hostname + " Error: session too long, closing");
      co_await flush();
    }
  } catch (const std::exception&) {
    failed = true;  // G8: anything escaping closes this session with 421, never the server
  }
  if (failed && socket_.is_open()) {
    outbuf_ = "421 4.3.0 " + settings_.hostname + " Error: internal error, closing\r\n";
    co_await flush();
  }
  // close() alone: a shutdown() first would cost a system call and do
  // nothing more (the descriptor is ours alone; by now the client has
  // usually closed its end after QUIT).
  boost::system::error_code ignored;
  socket_.close(ignored);
  // The client is gone: its connection slot is free now, not after the
  // backend's QUIT round trip (a client reconnecting at once must not hear 421).
  releaseAdmission();
  co_await releaseBackend(failed);
}

asio::awaitable<void> SmtpSession::releaseBackend(bool failed) {
  if (!backend_) {
    co_return;
  }
  if (failed) {
    co_await backend_->quit();  // where it stands is not known
    co_return;
  }
  co_await resetBackend();  // the client left inside a transaction
  if (backend_->connected()) {
    co_await backends_.park(std::move(backend_));
  }
}

void SmtpSession::releaseAdmission() {
  if (admitted_) {
    admitted_ = false;
    context_.release(clientIp_);
  }
}

asio::awaitable<void> SmtpSession::serve() {
  if (co_await greet() == Next::Close) {
    co_await flush();
    co_return;
  }
  CommandLine line;
  while (co_await readCommand(line)) {
    ParsedCommand command = parseCommand(line.text);
    Next next = command.ok() ? co_await dispatch(command, line.text) : refuseSyntax(command);
    if (next == Next::Close) {
      break;
    }
  }
  co_await flush();
}

template <typename StageFunction>
asio::awaitable<Verdict> SmtpSession::decide(rules::Stage stage, StageFunction run) {
  asio::thread_pool* pool = context_.blockingPool();
  if (pool == nullptr || !policy_.mayBlockAt(stage)) {
    co_return run();
  }
  // Optimistically first, right here: when every answer the stage needs is
  // in the resolver's cache (a returning client, a busy sender domain) it
  // costs no hand-off to the pool and back. A lookup that would wait aborts
  // the attempt before it changed anything; then the pool, as always.
  if (std::optional<Verdict> fromCache = runFromCache(run)) {
    context_.metrics.dnsStage(true);
    co_return std::move(*fromCache);
  }
  context_.metrics.dnsStage(false);
  // The session's coroutine waits here until the stage is done (a cancelled
  // parallel group still waits for its branches), so `stage` may safely use
  // the session's members by reference; nothing else touches them meanwhile.
  co_return co_await asio::co_spawn(
      pool->get_executor(), [&]() -> asio::awaitable<Verdict> { co_return run(); },
      asio::use_awaitable);
}

asio::awaitable<SmtpSession::Next> SmtpSession::greet() {
  if (settings_.proxyProtocol && !co_await readProxyHeader()) {
    co_return Next::Close;
  }
  admitted_ = context_.admit(clientIp_);
  if (!admitted_) {
    reply("421 4.7.0 " + settings_.hostname + " Error: too many connections, try again later");
    co_return Next::Close;
  }
  // A client that talks before the banner is a spam bot more often than not
  // (postscreen's pregreet test); rules decide what it means.
  boost::system::error_code ec;
  bool pregreet = !inbuf_.empty() || socket_.available(ec) > 0;
  policies::ConnectInfo info{*rules::IpAddress::parse(clientIp_), clientPort_, localPort_,
                             pregreet};
  Verdict v = co_await decide(rules::Stage::Connect, [&] { return policy_.onConnect(info); });
  logDecision(v);
  if (v.action == Action::Tempfail) {
    reply("421 " + v.reply->esc.toString() + " " + v.reply->text);
    co_return Next::Close;
  }
  if (v.action == Action::Reject) {
    // RFC 5321 3.1: after a 554 banner, wait for QUIT and refuse the rest.
    refusedAtConnect_ = true;
    reply("554 " + v.reply->esc.toString() + " " + v.reply->text);
    co_return Next::Continue;
  }
  reply("220 " + settings_.hostname + " ESMTP smtpgate");
  co_return Next::Continue;
}

asio::awaitable<bool> SmtpSession::readProxyHeader() {
  const std::string peer = clientIp_;
  auto refuse = [&](std::string_view why) {
    fmt::print(stderr, "smtpgate: PROXY header from {} refused: {}\n", peer, why);
    return false;
  };
  // Whoever sends the header chooses the address every rule sees: only the
  // configured balancers may, and the spec says to close without a reply.
  if (!config_->trustsProxy(peer)) {
    co_return refuse("not in proxy.trusted_proxies");
  }
  ProxyHeaderParser parser;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(limits::kProxyHeaderTimeoutSeconds);
  for (;;) {
    if (!inbuf_.empty()) {
      ParseResult r = parser.feed(inbuf_);
      inbuf_.erase(0, r.consumed);  // what follows the header is the client's SMTP
      if (r.status == ParseStatus::Error) {
        co_return refuse(describe(parser.error()));
      }
      if (r.status == ParseStatus::Complete) {
        const ProxyHeader& header = parser.result();
        if (!header.local) {  // LOCAL/UNKNOWN: the connection's own address stands
          clientIp_ = header.sourceIp;
          clientPort_ = header.sourcePort;
          localPort_ = header.destPort;
        }
        co_return true;
      }
    }
    auto left = std::chrono::duration_cast<Duration>(deadline - std::chrono::steady_clock::now());
    char buf[limits::kProxyV2HeaderMax];
    IoResult io = left.count() > 0 ? co_await readSome(watchdog_, socket_, asio::buffer(buf), left)
                                   : IoResult{asio::error::timed_out, 0};
    if (!io.ok()) {
      co_return refuse(io.timedOut() ? "no header in time" : io.error.message());
    }
    inbuf_.append(buf, io.bytes);
  }
}

asio::awaitable<bool> SmtpSession::fill(Duration limit) {
  char buf[kReadChunk];
  IoResult io = tls_ ? co_await readSome(watchdog_, *tls_, asio::buffer(buf), limit)
                     : co_await readSome(watchdog_, socket_, asio::buffer(buf), limit);
  if (!io.ok()) {
    if (io.timedOut()) {
      reply("421 4.4.2 " + settings_.hostname + " Error: timeout exceeded");
      co_await flush();
    }
    co_return false;
  }
  inbuf_.append(buf, io.bytes);
  co_return true;
}

asio::awaitable<bool> SmtpSession::flush() {
  if (outbuf_.empty() || !socket_.is_open()) {
    co_return true;
  }
  std::string out = std::move(outbuf_);
  outbuf_.clear();
  IoResult io = tls_ ? co_await writeAll(watchdog_, *tls_, out, settings_.commandTimeout)
                     : co_await writeAll(watchdog_, socket_, out, settings_.commandTimeout);
  co_return io.ok();
}

asio::awaitable<bool> SmtpSession::readCommand(CommandLine& line) {
  for (;;) {
    if (!inbuf_.empty()) {
      ParseResult r = lines_.feed(inbuf_);
      inbuf_.erase(0, r.consumed);
      if (r.status == ParseStatus::Complete) {
        line = lines_.line();
        co_return true;
      }
      if (r.status == ParseStatus::Error) {
        if (error(replyFor(lines_.error()).line()) == Next::Close) {
          co_await flush();
          co_return false;
        }
        continue;
      }
    }
    // Nothing complete is buffered: answer what was pipelined, then wait.
    if (!co_await flush() || !co_await fill(settings_.commandTimeout)) {
      co_return false;
    }
  }
}

asio::awaitable<SmtpSession::Next> SmtpSession::dispatch(const ParsedCommand& command,
                                                         const std::string& line) {
  if (command.verb == Verb::Bdat) {
    co_return co_await onBdat(command);  // reads its chunk even to refuse it
  }
  if (auto refusal = outOfOrder(command.verb)) {
    co_return error(*refusal);
  }
  switch (command.verb) {
    case Verb::Helo:
    case Verb::Ehlo:
      co_return co_await onHelo(command, command.verb == Verb::Ehlo);
    case Verb::Mail:
      co_return co_await onMail(command, line);
    case Verb::Rcpt:
      co_return co_await onRcpt(command, line);
    case Verb::Data:
      co_return co_await onData();
    case Verb::Rset:
      co_return co_await onRset();
    case Verb::Noop:
      reply("250 2.0.0 Ok");
      co_return Next::Continue;
    case Verb::Quit:
      // Free the slot before the client can see 221: a client that reconnects
      // the moment it reads it must find its slot free.
      releaseAdmission();
      reply("221 2.0.0 Bye");
      co_return Next::Close;
    case Verb::Help:
      reply("214 2.0.0 See RFC 5321");
      co_return Next::Continue;
    case Verb::Vrfy:
      reply("252 2.0.0 Send some mail, I'll try my best");
      co_return Next::Continue;
    case Verb::Xclient:
    case Verb::Xforward:
      co_return error("550 5.7.0 Error: insufficient authorization");
    case Verb::StartTls:
      co_return co_await onStartTls(command);
    case Verb::Auth:
      co_return error("503 5.5.1 Error: authentication not enabled");
    case Verb::Expn:
      // Refused on purpose: it would hand list members to address harvesters
      // (RFC 5321 section 7.3), and the backend is not asked.
      co_return error("502 5.5.1 EXPN command is disabled");
    default:  // verbs handled before the switch (BDAT) or without a table entry
      co_return error("500 5.5.2 Error: command not recognized");
  }
}

std::optional<std::string_view> SmtpSession::outOfOrder(Verb verb) const {
  if (refusedAtConnect_ && verb != Verb::Quit) {
    return "503 5.7.0 Error: access denied, send QUIT";
  }
  const CommandSpec* spec = specFor(verb);
  if (spec == nullptr) {
    return "500 5.5.2 Error: command not recognized";
  }
  if (spec->needsHelo && !heloSeen_) {
    return "503 5.5.1 Error: send HELO/EHLO first";
  }
  if (spec->needsMail && !inTransaction_) {
    return "503 5.5.1 Error: need MAIL command";
  }
  if (spec->needsRcpt && rcpts_ == 0) {
    return "554 5.5.1 Error: no valid recipients";
  }
  if (spec->needsEhlo && !esmtp_) {
    return "503 5.5.1 Error: send EHLO first";
  }
  // RFC 3030 section 2: a transaction that began sending BDAT chunks ends
  // with the LAST one (or RSET); Postfix's wording.
  if (chunks_ && verb == Verb::Data) {
    return "503 5.5.1 Error: DATA after BDAT";
  }
  if (chunks_ && verb == Verb::Rcpt) {
    return "503 5.5.1 Error: RCPT after BDAT";
  }
  return std::nullopt;
}

SmtpSession::Next SmtpSession::refuseSyntax(const ParsedCommand& command) {
  const policies::Reply r = replyFor(command.error);
  if (r.code == 521) {  // the server will not go on (RFC 7504): a BDAT of unknown length
    reply(r);
    return Next::Close;
  }
  return error(r.line());
}

asio::awaitable<SmtpSession::Next> SmtpSession::onHelo(const ParsedCommand& command,
                                                       bool extended) {
  co_await resetTransaction();  // HELO/EHLO resets any transaction (RFC 5321 4.1.4)
  Verdict v = co_await decide(rules::Stage::Helo,
                              [&] { return policy_.onHelo(command.argument, tlsInfo_); });
  logDecision(v);
  if (v.refuses()) {
    replyVerdict(v);
    co_return Next::Continue;
  }
  heloSeen_ = true;
  esmtp_ = extended;
  auto backendCaps = context_.backendCapabilities();
  sizeLimit_ = effectiveSizeLimit(backendCaps, settings_.maxMessageSize);
  if (!extended) {
    reply("250 " + settings_.hostname);
    co_return Next::Continue;
  }
  extensions_ = advertisedExtensions(backendCaps,
                                     {settings_.maxMessageSize, config_->tls != nullptr && !tls_});
  std::string out = "250-" + settings_.hostname + "\r\n";
  for (std::size_t i = 0; i < extensions_.size(); ++i) {
    out += (i + 1 == extensions_.size() ? "250 " : "250-") + extensions_[i] + "\r\n";
  }
  outbuf_ += out;
  co_return Next::Continue;
}

asio::awaitable<SmtpSession::Next> SmtpSession::onMail(const ParsedCommand& command,
                                                       const std::string& line) {
  if (inTransaction_) {
    co_return error("503 5.5.1 Error: nested MAIL command");
  }
  if (command.size && sizeLimit_ && *command.size > sizeLimit_) {
    const policies::Reply tooBig{552, {5, 3, 4}, "Message size exceeds fixed limit"};
    logLimit(rules::Stage::Mail, tooBig, policies::limit_rule::kMaxMessageSize,
             command.path.address);
    co_return error(tooBig.line());
  }
  if ((command.smtputf8 && !advertises(extensions_, "SMTPUTF8")) ||
      (command.body == BodyType::EightBitMime && !advertises(extensions_, "8BITMIME")) ||
      (!command.params.empty() && !esmtp_)) {
    co_return error("555 5.5.4 Unsupported option");
  }
  Verdict v = co_await decide(rules::Stage::Mail, [&] {
    return policy_.onMail(command.path.address,
                          command.size ? static_cast<double>(*command.size) : 0);
  });
  logDecision(v);
  if (v.refuses()) {
    replyVerdict(v);
    co_return Next::Continue;
  }
  if (!co_await ensureBackend()) {
    policy_.onReset();
    co_return error("451 4.4.1 Error: the mail server is unavailable, try again later");
  }
  auto answer = co_await backend_->mail(line);
  if (!answer) {
    policy_.onReset();
    context_.metrics.backendError();
    co_return error("451 4.4.2 Error: lost connection to the mail server, try again later");
  }
  relay(*answer);
  if (answer->code / 100 == 2) {
    inTransaction_ = true;
    smtputf8_ = command.smtputf8;
    rcpts_ = 0;
  } else {
    policy_.onReset();
  }
  co_return Next::Continue;
}

asio::awaitable<SmtpSession::Next> SmtpSession::onRcpt(const ParsedCommand& command,
                                                       const std::string& line) {
  if (rcpts_ >= settings_.maxRecipients) {
    const policies::Reply tooMany{452, {4, 5, 3}, "Error: too many recipients"};
    logLimit(rules::Stage::Rcpt, tooMany, policies::limit_rule::kMaxRecipients,
             rcptAddress(command));
    reply(tooMany);
    co_return Next::Continue;
  }
  if (command.path.needsSmtputf8 && !smtputf8_) {
    co_return error(replyFor(SyntaxError::RecipientNeedsSmtputf8).line());
  }
  Verdict v =
      co_await decide(rules::Stage::Rcpt, [&] { return policy_.onRcpt(rcptAddress(command)); });
  logDecision(v);
  if (v.refuses()) {
    replyVerdict(v);
    co_return Next::Continue;
  }
  auto answer = co_await backend_->command(line);
  if (!answer) {
    endTransaction();
    context_.metrics.backendError();
    co_return error("451 4.4.2 Error: lost connection to the mail server, try again later");
  }
  relay(*answer);
  if (answer->code / 100 == 2) {
    ++rcpts_;
  } else {
    policy_.dropLastRcpt();  // the backend's own checks refused it (unknown user, ...)
  }
  co_return Next::Continue;
}

asio::awaitable<SmtpSession::Next> SmtpSession::onData() {
  reply("354 End data with <CR><LF>.<CR><LF>");
  HeldMessage message(settings_, sizeLimit_, Framing::DotTerminated);
  auto deadline = std::chrono::steady_clock::now() + settings_.dataTimeout;
  for (;;) {
    ParseResult r = message.framer.feed(inbuf_, message.sink);
    inbuf_.erase(0, r.consumed);
    if (r.status == ParseStatus::Complete) {
      break;
    }
    if (!co_await awaitMessageBytes(deadline)) {
      co_await resetTransaction();  // client gone mid-DATA: nothing is delivered
      co_return Next::Close;
    }
  }
  co_return co_await deliverHeld(message);
}

// RFC 3030. Whatever the reply, the chunk's bytes follow the command: they
// are read first (and thrown away if the command is refused), so that none
// of them is ever taken for a command. A chunk that fails (size, bare line
// end, storage) ends the transaction; chunks the client pipelined behind it
// then meet "need MAIL command", their bytes thrown away in turn.
asio::awaitable<SmtpSession::Next> SmtpSession::onBdat(const ParsedCommand& command) {
  if (std::optional<std::string_view> refusal = outOfOrder(Verb::Bdat)) {
    if (!co_await receiveChunk(command.chunkSize, nullptr)) {
      co_return Next::Close;
    }
    co_return error(*refusal);
  }
  if (!chunks_) {
    chunks_ = std::make_unique<HeldMessage>(settings_, sizeLimit_, Framing::Chunks);
  }
  if (!co_await receiveChunk(command.chunkSize, chunks_.get())) {
    co_await resetTransaction();  // client gone mid-message: nothing is delivered
    co_return Next::Close;
  }
  if (auto failed = chunks_->refusal()) {
    co_return co_await refuseMessage(*failed);
  }
  if (!command.lastChunk) {
    reply(fmt::format("250 2.0.0 Ok: {} bytes", command.chunkSize));
    co_return Next::Continue;
  }
  std::unique_ptr<HeldMessage> message = std::move(chunks_);
  message->framer.finish(message->sink);
  co_return co_await deliverHeld(*message);
}

asio::awaitable<bool> SmtpSession::receiveChunk(std::uint64_t size, HeldMessage* into) {
  const auto deadline = std::chrono::steady_clock::now() + settings_.dataTimeout;
  for (;;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(size, inbuf_.size()));
    if (into != nullptr) {
      into->framer.feed(std::string_view(inbuf_).substr(0, n), into->sink);
    }
    inbuf_.erase(0, n);
    size -= n;
    if (size == 0) {
      co_return true;
    }
    if (!co_await awaitMessageBytes(deadline)) {
      co_return false;
    }
  }
}

asio::awaitable<bool> SmtpSession::awaitMessageBytes(
    std::chrono::steady_clock::time_point deadline) {
  if (!co_await flush()) {
    co_return false;
  }
  auto left = deadline - std::chrono::steady_clock::now();
  if (left <= Duration::zero()) {
    co_return false;
  }
  co_return co_await fill(std::min<Duration>(left, settings_.commandTimeout));
}

asio::awaitable<SmtpSession::Next> SmtpSession::deliverHeld(HeldMessage& message) {
  std::string_view whole = message.sink.view();  // maps a spilled message: may fail too
  if (auto refusal = message.refusal()) {
    co_return co_await refuseMessage(*refusal);
  }
  co_return co_await relayMessage(whole);
}

asio::awaitable<SmtpSession::Next> SmtpSession::refuseMessage(const MessageRefusal& refusal) {
  // Logged before the reset, so that the line names the envelope.
  logLimit(rules::Stage::Data, refusal.reply, refusal.limit);
  co_await resetTransaction();
  co_return error(refusal.reply.line());
}

asio::awaitable<SmtpSession::Next> SmtpSession::relayMessage(std::string_view message) {
  Verdict v = co_await decide(rules::Stage::Data, [&] { return policy_.onEndOfData(message); });
  if (v.refuses()) {
    logDecision(v);
    replyVerdict(v);
    co_await resetBackend();
    endTransaction();
    co_return Next::Continue;
  }
  logDecision(v);  // would-* verdicts of monitor rules and dry-run
  // Our header fields (Authentication-Results, X-Spam-*) go on top; incoming
  // Authentication-Results claiming our authserv-id are forged (RFC 8601
  // section 5), and incoming X-Spam-* go when we add ours: only the header
  // block is rewritten, the body goes from the spill buffer as it is.
  std::string head = traceHeader();
  for (const policies::AddedHeader& field : policy_.headersToAdd()) {
    head += field.line();
  }
  std::string_view rest = message;
  auto cleaned =
      policies::withoutHeaderFields(message, [this](std::string_view name, std::string_view value) {
        return policy_.removesIncoming(name, value);
      });
  if (cleaned.removed > 0) {
    head += cleaned.headers;
    rest = message.substr(cleaned.headerLength);
  }
  // By BDAT where the backend takes it (Postfix since 3.4): one round trip
  // less than DATA and its 354 per message.
  const bool chunking = backend_->chunking();
  std::optional<BackendReply> done;
  if (chunking) {
    done = co_await backend_->sendMessageChunked(head, rest);
  } else {
    auto go = co_await backend_->command("DATA");
    if (!go || go->code != 354) {
      if (go) {
        relay(*go);
      } else {
        reply("451 4.4.2 Error: lost connection to the mail server, try again later");
      }
      // A backend that refuses DATA keeps its envelope (Postfix does): reset it,
      // or the client's next MAIL would meet "503 nested MAIL command" there.
      co_await resetBackend();
      endTransaction();
      co_return Next::Continue;
    }
    done = co_await backend_->sendMessage(head, rest);
  }
  if (!done) {
    context_.metrics.backendError();
    reply("451 4.4.2 Error: lost connection to the mail server during DATA, try again later");
    endTransaction();
    co_return Next::Continue;
  }
  relay(*done);
  if (done->code / 100 != 2) {
    if (chunking) {
      // A refused BDAT leaves ending the transaction to the client (RFC 3030
      // section 4.2), as a refused DATA does.
      co_await resetBackend();
    }
    endTransaction();
    co_return Next::Continue;
  }
  // The backend has the message now. If the client never hears our 250 it
  // will send again: log that, so the admin can explain the duplicate.
  bool replyLost = !co_await flush();
  context_.metrics.messageDelivered();
  if (replyLost) {
    context_.metrics.possibleDuplicate();
  }
  logDelivery(v, queueIdFromReply(*done), replyLost);
  endTransaction();
  co_return replyLost ? Next::Close : Next::Continue;
}

asio::awaitable<void> SmtpSession::resetTransaction() {
  co_await resetBackend();
  endTransaction();
}

asio::awaitable<SmtpSession::Next> SmtpSession::onRset() {
  co_await resetTransaction();
  reply("250 2.0.0 Ok");
  co_return Next::Continue;
}

// RFC 3207. CVE-2011-0411: whatever the client pipelined after STARTTLS
// arrived in plaintext and must not be executed inside the TLS session, so
// the input buffer is thrown away; the session then starts over (EHLO again).
asio::awaitable<SmtpSession::Next> SmtpSession::onStartTls(const ParsedCommand& command) {
  if (config_->tls == nullptr) {
    co_return error("454 4.7.0 TLS not available");
  }
  if (tls_) {
    co_return error("503 5.5.1 Error: TLS already active");
  }
  if (!command.argument.empty()) {
    co_return error("501 5.5.4 Syntax: STARTTLS");
  }
  reply("220 2.0.0 Ready to start TLS");
  if (!co_await flush()) {
    co_return Next::Close;
  }
  inbuf_.clear();
  lines_.reset();
  tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(socket_, *config_->tls);
  auto ec = co_await withinNoBytes(watchdog_,
                                   tls_->async_handshake(asio::ssl::stream_base::server, kUseTuple),
                                   settings_.tlsHandshakeTimeout);
  if (ec) {
    tls_.reset();  // the socket now holds half a TLS session: nothing sane can follow
    co_return Next::Close;
  }
  SSL* ssl = tls_->native_handle();
  tlsInfo_ = {true, SSL_get_version(ssl), SSL_get_cipher_name(ssl)};
  co_await resetTransaction();
  heloSeen_ = false;
  esmtp_ = false;
  co_return Next::Continue;
}

// XCLIENT has no attribute for TLS, so without this Postfix would record the
// mail as received in plaintext: the proxy adds its own trace line under TLS.
std::string SmtpSession::traceHeader() const {
  if (!tlsInfo_.active) {
    return {};
  }
  return "Received: from " + policy_.session().helo + " ([" + clientIp_ + "])\r\n\tby " +
         settings_.hostname + " (smtpgate) with ESMTPS (" + tlsInfo_.version + " cipher " +
         tlsInfo_.cipher + ") id " + policy_.session().id + "\r\n";
}

XclientFields SmtpSession::clientFields() const {
  XclientFields client;
  client.addr = clientIp_;
  client.port = clientPort_;
  client.helo = policy_.session().helo;
  client.proto = esmtp_ ? SmtpProtocol::Esmtp : SmtpProtocol::Smtp;
  return client;
}

asio::awaitable<bool> SmtpSession::ensureBackend() {
  if (backend_ && backend_->connected()) {
    co_return true;
  }
  const XclientFields client = clientFields();
  std::unique_ptr<BackendClient> kept = backends_.take(settings_.backend);
  if (kept) {
    kept->reintroduce(client);
    backend_ = std::move(kept);
    context_.metrics.backendSession(true);
    co_return true;
  }
  backend_ = std::make_unique<BackendClient>(socket_.get_executor(), settings_.backend);
  if (!co_await backend_->open(client, context_.backendXclientOffer())) {
    fmt::print(stderr, "smtpgate: session {}: backend: {}\n", policy_.session().id,
               backend_->lastError());
    context_.metrics.backendError();
    co_return false;
  }
  context_.metrics.backendSession(false);
  context_.learnBackend(settings_.backend, backend_->capabilities(), backend_->xclientOffer());
  co_return true;
}

asio::awaitable<void> SmtpSession::resetBackend() {
  if (backend_ && backend_->connected() && inTransaction_) {
    auto answer = co_await backend_->reset();
    if (!answer || answer->code != 250) {
      backend_->close();  // a backend that won't reset gets a fresh connection next time
    }
  }
}

void SmtpSession::endTransaction() {
  inTransaction_ = false;
  chunks_.reset();
  smtputf8_ = false;
  rcpts_ = 0;
  policy_.onReset();
}

SmtpSession::Next SmtpSession::error(std::string_view line) {
  reply(line);
  if (++errors_ >= settings_.maxErrors) {
    reply("421 4.7.0 " + settings_.hostname + " Error: too many errors");
    return Next::Close;
  }
  return Next::Continue;
}

void SmtpSession::replyVerdict(const Verdict& verdict) {
  if (verdict.reply) {
    reply(*verdict.reply);
  }
}

void SmtpSession::reply(const policies::Reply& r) {
  reply(r.line());
}

void SmtpSession::reply(std::string_view line) {
  outbuf_.append(line);
  outbuf_ += "\r\n";
}

void SmtpSession::relay(const BackendReply& r) {
  outbuf_ += r.render();
}

void SmtpSession::logDecision(const Verdict& verdict) {
  if (verdict.refuses() || verdict.wouldBe) {
    context_.log(policy_.record(verdict));
  }
}

void SmtpSession::logLimit(rules::Stage stage, const policies::Reply& reply, std::string_view limit,
                           std::string_view address) {
  Verdict v;
  v.action = reply.code / 100 == 4 ? policies::Action::Tempfail : policies::Action::Reject;
  v.stage = stage;
  v.reply = reply;
  v.ruleId = limit;
  policies::DecisionRecord record = policy_.record(v);
  if (stage == rules::Stage::Mail) {
    record.sender = address;  // the Policy never saw this MAIL FROM
  } else if (stage == rules::Stage::Rcpt) {
    record.rcpts = {std::string(address)};
  }
  context_.log(record);
}

void SmtpSession::logDelivery(const Verdict& verdict, std::string queueId, bool replyLost) {
  policies::DecisionRecord record = policy_.record(verdict);
  record.action = replyLost ? "possible-duplicate" : "deliver";
  record.queueId = std::move(queueId);
  context_.log(record);
}

}  // namespace smtpgate::proxy
