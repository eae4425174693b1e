#include "milter/milter_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <fmt/core.h>

#include <atomic>
#include <charconv>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "milter/milter_session.h"

namespace smtpgate::milter {

struct MilterServer::Impl {
  MilterSettings settings;
  policies::DecisionLog* log = nullptr;
  ReloadFunction reload;
  std::string socketSpec;  ///< a mutable copy: smfi_setconn takes char*

  mutable std::mutex rulesMutex;
  rules::RuleSetPtr rules;  // guarded by rulesMutex

  std::atomic<int> openSessions{0};
  std::atomic<bool> stopping{false};
  std::thread signalThread;

  rules::RuleSetPtr currentRules() const {
    std::lock_guard lock(rulesMutex);
    return rules;
  }
  void setRules(rules::RuleSetPtr fresh) {
    std::lock_guard lock(rulesMutex);
    rules = std::move(fresh);
  }
  void writeLog(const policies::DecisionRecord& record) const {
    if (log != nullptr && !log->write(record)) {
      fmt::print(stderr, "smtpgate milter: decision log {}: {}\n", log->path(), log->lastError());
    }
  }
  void signalLoop();
};

namespace {

/// The one server of this process (libmilter callbacks carry no user pointer).
MilterServer::Impl* gServer = nullptr;

char kFilterName[] = "smtpgate";

/// SIGUSR1 (reopen the log) and SIGUSR2 (reload), handled by our thread.
sigset_t ourSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGUSR2);
  return set;
}

MilterSession* sessionOf(SMFICTX* ctx) {
  return static_cast<MilterSession*>(smfi_getpriv(ctx));
}

MilterSession* newSession(SMFICTX* ctx) {
  delete sessionOf(ctx);  // a connection reused by the MTA (SMFIC_QUIT_NC) starts over
  auto* s = new MilterSession(gServer->currentRules(), gServer->settings.policy,
                              [](const policies::DecisionRecord& r) { gServer->writeLog(r); });
  smfi_setpriv(ctx, s);
  return s;
}

MilterSession& sessionFor(SMFICTX* ctx) {
  MilterSession* s = sessionOf(ctx);
  if (s == nullptr) {  // no negotiate callback (an old MTA): start here
    gServer->openSessions.fetch_add(1, std::memory_order_relaxed);
    s = newSession(ctx);
    s->setProtocolFlags(0);
  }
  return *s;
}

std::string_view macro(SMFICTX* ctx, const char* name) {
  const char* value = smfi_getsymval(ctx, const_cast<char*>(name));
  return value == nullptr ? std::string_view() : std::string_view(value);
}

void takeQueueId(SMFICTX* ctx, MilterSession& s) {
  std::string_view id = macro(ctx, "i");
  if (!id.empty()) {
    s.setQueueId(id);
  }
}

std::vector<std::string_view> arguments(char** argv) {
  std::vector<std::string_view> out;
  for (char** p = argv; p != nullptr && *p != nullptr; ++p) {
    out.emplace_back(*p);
  }
  return out;
}

/// The one place a Response becomes libmilter output: the status, and for a
/// refusal the rule's code, enhanced code and text through smfi_setreply.
sfsistat answer(SMFICTX* ctx, const Response& response) {
  if (response.reply) {
    const policies::Reply& r = *response.reply;
    std::string code = std::to_string(r.code);
    std::string esc = r.esc.toString();
    std::string text = escapeReplyText(r.text);
    if (smfi_setreply(ctx, code.data(), esc.data(), text.data()) != MI_SUCCESS) {
      // The MTA then answers with its own reply of the same class.
      fmt::print(stderr, "smtpgate milter: libmilter refused the reply '{} {} {}'\n", code, esc,
                 text);
    }
  }
  return response.status;
}

/// Makes the header changes of an end-of-message Response, in its order.
/// False if libmilter refused one (a lost MTA connection, or an action the
/// MTA did not grant): the caller then fails closed rather than let a forged
/// Authentication-Results through.
bool changeHeaders(SMFICTX* ctx, const std::vector<HeaderChange>& changes) {
  for (const HeaderChange& change : changes) {
    std::string name = change.name;  // libmilter takes char*
    std::string value = change.value;
    int rc = change.kind == HeaderChange::Kind::Delete
                 ? smfi_chgheader(ctx, name.data(), change.index, nullptr)
                 : smfi_insheader(ctx, change.index, name.data(), value.data());
    if (rc != MI_SUCCESS) {
      fmt::print(stderr, "smtpgate milter: libmilter refused to {} header {} #{}\n",
                 change.kind == HeaderChange::Kind::Delete ? "delete" : "insert", name,
                 change.index);
      return false;
    }
  }
  return true;
}

/// Exceptions must not cross into C: a failing callback tempfails (fail
/// closed; Postfix retries later), and says why on stderr.
template <typename F>
sfsistat guarded(const char* step, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    fmt::print(stderr, "smtpgate milter: {}: {}\n", step, e.what());
  } catch (...) {
    fmt::print(stderr, "smtpgate milter: {}: unknown exception\n", step);
  }
  return SMFIS_TEMPFAIL;
}

std::uint16_t parsePort(std::string_view text, std::uint16_t fallback) {
  std::uint16_t port = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  return ec == std::errc{} && end == text.data() + text.size() && port != 0 ? port : fallback;
}

// ---------------------------------------------------------------------------
// The callbacks, in protocol order.

sfsistat onNegotiate(SMFICTX* ctx, unsigned long f0, unsigned long f1, unsigned long, unsigned long,
                     unsigned long* pf0, unsigned long* pf1, unsigned long* pf2,
                     unsigned long* pf3) {
  return guarded("negotiate", [&] {
    if (sessionOf(ctx) == nullptr) {
      gServer->openSessions.fetch_add(1, std::memory_order_relaxed);
    }
    MilterSession* s = newSession(ctx);
    // Header changes (our Authentication-Results added, forged ones deleted)
    // need the actions and the header fields, whatever the rules read.
    const bool edits = s->policy().editsHeaders();
    s->setProtocolFlags(protocolFlags(f1, s->needsMessage(), edits));
    s->setActionFlags(actionFlags(f0, edits));
    if (edits && s->actionFlags() != (SMFIF_ADDHDRS | SMFIF_CHGHDRS)) {
      static std::atomic<bool> warned{false};
      if (!warned.exchange(true)) {
        const bool add = (s->actionFlags() & SMFIF_ADDHDRS) != 0;
        const bool del = (s->actionFlags() & SMFIF_CHGHDRS) != 0;
        fmt::print(stderr, "smtpgate milter: warning: the MTA does not let milters {}{}{}\n",
                   add ? "" : "add header fields (no Authentication-Results is added)",
                   add || del ? "" : ", nor ",
                   del ? "" : "delete header fields (forged Authentication-Results stay)");
      }
    }
    *pf0 = s->actionFlags();
    *pf1 = s->protocolFlags();
    *pf2 = 0;
    *pf3 = 0;
    return SMFIS_CONTINUE;
  });
}

sfsistat onConnect(SMFICTX* ctx, char* /*hostname*/, _SOCK_ADDR* addr) {
  return guarded("connect", [&] {
    MilterSession& s = sessionFor(ctx);
    std::optional<rules::IpAddress> ip;
    std::uint16_t port = 0;
    char text[INET6_ADDRSTRLEN] = {};
    if (addr != nullptr && addr->sa_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
      inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
      port = ntohs(in->sin_port);
      ip = rules::IpAddress::parse(text);
    } else if (addr != nullptr && addr->sa_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
      inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
      port = ntohs(in6->sin6_port);
      std::string_view t(text);
      if (t.starts_with("::ffff:") && t.find('.') != std::string_view::npos) {
        t.remove_prefix(7);  // a v4-mapped address is the v4 client
      }
      ip = rules::IpAddress::parse(t);
    }
    // Postfix sends {daemon_port} when milter_connect_macros lists it.
    std::uint16_t localPort = parsePort(macro(ctx, "{daemon_port}"), 25);
    return answer(ctx, s.connect(ip, port, localPort));
  });
}

sfsistat onHelo(SMFICTX* ctx, char* helo) {
  return guarded("helo", [&] {
    policies::TlsInfo tls;
    tls.version = std::string(macro(ctx, "{tls_version}"));
    tls.cipher = std::string(macro(ctx, "{cipher}"));
    tls.active = !tls.version.empty();
    return answer(ctx, sessionFor(ctx).helo(helo == nullptr ? "" : helo, tls));
  });
}

sfsistat onEnvelopeFrom(SMFICTX* ctx, char** argv) {
  return guarded("envfrom", [&] {
    MilterSession& s = sessionFor(ctx);
    takeQueueId(ctx, s);
    return answer(ctx, s.envelopeFrom(arguments(argv)));
  });
}

sfsistat onEnvelopeRecipient(SMFICTX* ctx, char** argv) {
  return guarded("envrcpt", [&] {
    MilterSession& s = sessionFor(ctx);
    takeQueueId(ctx, s);
    return answer(ctx, s.envelopeRecipient(arguments(argv)));
  });
}

sfsistat onHeader(SMFICTX* ctx, char* name, char* value) {
  return guarded("header", [&] {
    MilterSession& s = sessionFor(ctx);
    s.header(name == nullptr ? "" : name, value == nullptr ? "" : value);
    return (s.protocolFlags() & SMFIP_NR_HDR) != 0 ? SMFIS_NOREPLY : SMFIS_CONTINUE;
  });
}

sfsistat onEndOfHeaders(SMFICTX* ctx) {
  return guarded("eoh", [&] {
    MilterSession& s = sessionFor(ctx);
    s.endOfHeaders();
    return (s.protocolFlags() & SMFIP_NR_EOH) != 0 ? SMFIS_NOREPLY : SMFIS_CONTINUE;
  });
}

sfsistat onBody(SMFICTX* ctx, unsigned char* chunk, size_t length) {
  return guarded("body", [&] {
    MilterSession& s = sessionFor(ctx);
    bool more = s.body({reinterpret_cast<const char*>(chunk), length});
    return !more && (s.protocolFlags() & SMFIP_SKIP) != 0 ? SMFIS_SKIP : SMFIS_CONTINUE;
  });
}

sfsistat onEndOfMessage(SMFICTX* ctx) {
  return guarded("eom", [&] {
    MilterSession& s = sessionFor(ctx);
    takeQueueId(ctx, s);
    Response r = s.endOfMessage();
    // Header changes are only allowed here, before the final answer; the
    // Response lists them in order (forged Authentication-Results deleted
    // from the last index to the first, then ours inserted).
    if (!changeHeaders(ctx, r.headerChanges)) {
      return SMFIS_TEMPFAIL;
    }
    return answer(ctx, r);
  });
}

sfsistat onAbort(SMFICTX* ctx) {
  return guarded("abort", [&] {
    if (MilterSession* s = sessionOf(ctx)) {
      s->abort();
    }
    return SMFIS_CONTINUE;
  });
}

sfsistat onClose(SMFICTX* ctx) {
  if (MilterSession* s = sessionOf(ctx)) {
    smfi_setpriv(ctx, nullptr);
    delete s;
    gServer->openSessions.fetch_sub(1, std::memory_order_relaxed);
  }
  return SMFIS_CONTINUE;
}

/// Sets TCP_NODELAY on our listening TCP socket(s); accepted sockets inherit
/// it on Linux. libmilter does not expose the descriptor, so it is found in
/// /proc/self/fd: the only listening socket this process has at this point.
int setNoDelayOnListeners() {
  int count = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) {
    return 0;
  }
  int self = ::dirfd(dir);
  while (dirent* entry = ::readdir(dir)) {
    int fd = std::atoi(entry->d_name);
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9' || fd == self) {
      continue;
    }
    int listening = 0;
    socklen_t len = sizeof listening;
    sockaddr_storage addr{};
    socklen_t alen = sizeof addr;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) != 0 ||
        (addr.ss_family != AF_INET && addr.ss_family != AF_INET6)) {
      continue;
    }
    int one = 1;
    if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0) {
      ++count;
    }
  }
  ::closedir(dir);
  return count;
}

}  // namespace

void MilterServer::Impl::signalLoop() {
  sigset_t set = ourSignals();
  for (;;) {
    int signo = 0;
    if (sigwait(&set, &signo) != 0) {
      continue;
    }
    if (stopping.load()) {
      return;
    }
    if (signo == SIGUSR1) {
      if (log != nullptr) {
        log->requestReopen();
      }
    } else if (signo == SIGUSR2) {
      if (auto fresh = reload ? reload() : nullptr) {
        setRules(fresh);
        fmt::print(stderr, "smtpgate milter: reloaded rules, ruleset {}\n", fresh->hash());
      } else {
        fmt::print(stderr, "smtpgate milter: reload failed, keeping the current rules\n");
      }
    }
  }
}

MilterServer::MilterServer(MilterSettings settings, rules::RuleSetPtr rules,
                           policies::DecisionLog* log, ReloadFunction reload)
    : impl_(new Impl) {
  impl_->settings = std::move(settings);
  impl_->rules = std::move(rules);
  impl_->log = log;
  impl_->reload = std::move(reload);
  impl_->socketSpec = impl_->settings.socket;
}

MilterServer::~MilterServer() {
  if (impl_ != nullptr && impl_->openSessions.load() == 0) {
    if (gServer == impl_) {
      gServer = nullptr;
    }
    delete impl_;
  }
}

bool MilterServer::open() {
  if (gServer != nullptr && gServer != impl_) {
    fmt::print(stderr, "smtpgate milter: only one milter per process\n");
    return false;
  }
  gServer = impl_;
  smfiDesc desc{};
  desc.xxfi_name = kFilterName;
  desc.xxfi_version = SMFI_VERSION;
  desc.xxfi_flags = SMFIF_NONE;
  desc.xxfi_connect = onConnect;
  desc.xxfi_helo = onHelo;
  desc.xxfi_envfrom = onEnvelopeFrom;
  desc.xxfi_envrcpt = onEnvelopeRecipient;
  desc.xxfi_header = onHeader;
  desc.xxfi_eoh = onEndOfHeaders;
  desc.xxfi_body = onBody;
  desc.xxfi_eom = onEndOfMessage;
  desc.xxfi_abort = onAbort;
  desc.xxfi_close = onClose;
  desc.xxfi_negotiate = onNegotiate;
  if (smfi_setconn(impl_->socketSpec.data()) != MI_SUCCESS) {
    fmt::print(stderr, "smtpgate milter: bad socket {}\n", impl_->settings.socket);
    return false;
  }
  if (smfi_register(desc) != MI_SUCCESS) {
    fmt::print(stderr, "smtpgate milter: smfi_register failed\n");
    return false;
  }
  if (smfi_opensocket(true) != MI_SUCCESS) {
    fmt::print(stderr,
               "smtpgate milter: cannot listen on {} (in use? permissions? libmilter logs the "
               "reason to syslog)\n",
               impl_->settings.socket);
    return false;
  }
  if (!impl_->settings.socket.starts_with("unix:") && setNoDelayOnListeners() == 0) {
    fmt::print(stderr, "smtpgate milter: warning: could not set TCP_NODELAY on {}\n",
               impl_->settings.socket);
  }
  return true;
}

void MilterServer::blockServerSignals() {
  sigset_t set = ourSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int MilterServer::run() {
  // Block our signals before any thread starts, so that all of them
  // (libmilter's included) inherit the mask and only signalThread takes them.
  blockServerSignals();
  impl_->signalThread = std::thread([impl = impl_] { impl->signalLoop(); });

  fmt::print(stderr, "smtpgate milter: listening on {}, ruleset {}{}\n", impl_->settings.socket,
             impl_->currentRules()->hash(), impl_->settings.policy.dryRun ? ", dry-run" : "");
  int rc = smfi_main();

  impl_->stopping.store(true);
  pthread_kill(impl_->signalThread.native_handle(), SIGUSR2);
  impl_->signalThread.join();

  // SIGTERM/SIGHUP let open connections finish; wait for them up to the
  // grace. Past it, the process exits under them (Postfix applies
  // milter_default_action) and the Impl is leaked rather than freed under
  // their feet.
  auto deadline = std::chrono::steady_clock::now() + impl_->settings.shutdownGrace;
  while (impl_->openSessions.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  int left = impl_->openSessions.load();
  fmt::print(stderr, "smtpgate milter: stopped{}\n",
             left > 0 ? fmt::format(", {} connection(s) still open", left) : std::string());
  return rc == MI_SUCCESS ? 0 : 1;
}

}  // namespace smtpgate::milter
