#include "policies/dns_resolver.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <unbound.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <future>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "policies/config.h"
#include "policies/dns_cache.h"

namespace smtpgate::policies {

namespace {

constexpr int kRcodeNoError = 0;
constexpr int kRcodeNxDomain = 3;
constexpr int kClassIn = 1;
constexpr std::size_t kMaxName = 253;
constexpr std::size_t kMaxLabel = 63;

/// "127.0.0.1:5353" -> "127.0.0.1@5353"; "[::1]:53" -> "::1@53"; "::1" -> "::1".
std::optional<std::string> unboundServer(const std::string& server, std::string& error) {
  in6_addr a6{};
  in_addr a4{};
  if (inet_pton(AF_INET, server.c_str(), &a4) == 1 ||
      inet_pton(AF_INET6, server.c_str(), &a6) == 1) {
    return server;
  }
  std::string err;
  auto hp = parseHostPort(server, err);
  if (!hp || (inet_pton(AF_INET, hp->host.c_str(), &a4) != 1 &&
              inet_pton(AF_INET6, hp->host.c_str(), &a6) != 1)) {
    error = "bad DNS server '" + server + "': must be IP, IP:PORT or [IPV6]:PORT";
    return std::nullopt;
  }
  return hp->host + "@" + std::to_string(hp->port);
}

/// A name libunbound could send: <= 253 bytes, labels 1-63 bytes (a final dot is allowed).
bool plausibleName(std::string_view name) {
  if (!name.empty() && name.back() == '.') {
    name.remove_suffix(1);
  }
  if (name.empty() || name.size() > kMaxName) {
    return false;
  }
  std::size_t start = 0;
  while (start <= name.size()) {
    auto dot = name.find('.', start);
    const std::size_t end = dot == std::string_view::npos ? name.size() : dot;
    if (end == start || end - start > kMaxLabel) {
      return false;
    }
    if (dot == std::string_view::npos) {
      break;
    }
    start = dot + 1;
  }
  return true;
}

/// This thread's cache-only mode (DnsResolver::CacheOnlyScope).
struct CacheOnlyState {
  bool active = false;
  bool quiet = false;   ///< a miss answers TempFail instead of throwing
  bool missed = false;  ///< a lookup in the current scope was not cached
};
thread_local CacheOnlyState tCacheOnly;

const DnsAnswer kNotCached{DnsStatus::TempFail, {}, "not cached (cache-only attempt)"};

/// How long our cache may keep `answer`, from the message libunbound got.
std::chrono::seconds cacheTtl(const DnsAnswer& answer, const ub_result* result) {
  if (result == nullptr || answer.tempFailed() || result->bogus != 0) {
    return std::chrono::seconds::zero();
  }
  if (answer.ok()) {
    return std::chrono::seconds(std::max(result->ttl, 0));
  }
  if (result->answer_packet == nullptr || result->answer_len <= 0) {
    return DnsCache::kNegativeTtlWithoutSoa;
  }
  return DnsCache::negativeTtl(std::string_view(static_cast<const char*>(result->answer_packet),
                                                static_cast<std::size_t>(result->answer_len)));
}

DnsAnswer fromUnbound(int err, ub_result* result) {
  DnsAnswer a;
  if (err != 0 || result == nullptr) {
    a.status = DnsStatus::TempFail;
    a.error = std::string("resolver error: ") + ub_strerror(err);
    return a;
  }
  if (result->rcode == kRcodeNxDomain || result->nxdomain != 0) {
    a.status = DnsStatus::NxDomain;
    return a;
  }
  if (result->rcode != kRcodeNoError) {
    static constexpr const char* kRcodes[] = {"NOERROR",  "FORMERR", "SERVFAIL",
                                              "NXDOMAIN", "NOTIMP",  "REFUSED"};
    a.status = DnsStatus::TempFail;
    a.error = result->rcode >= 0 && result->rcode < 6 ? kRcodes[result->rcode]
                                                      : "rcode " + std::to_string(result->rcode);
    return a;
  }
  if (result->havedata == 0 || result->data == nullptr) {
    a.status = DnsStatus::NoData;
    return a;
  }
  a.status = DnsStatus::Answer;
  for (int i = 0; result->data[i] != nullptr; ++i) {
    a.rdata.emplace_back(result->data[i], static_cast<std::size_t>(result->len[i]));
  }
  return a;
}

}  // namespace

std::string_view toString(DnsStatus status) {
  switch (status) {
    case DnsStatus::Answer:
      return "answer";
    case DnsStatus::NxDomain:
      return "nxdomain";
    case DnsStatus::NoData:
      return "nodata";
    case DnsStatus::TempFail:
      return "tempfail";
  }
  return "?";
}

/// One query in flight. Owned by shared_ptr: the pending list holds one, and
/// the heap `Holder` handed to libunbound as `mydata` holds another until the
/// callback ran or the query was cancelled.
struct Pending {
  DnsResolver::Impl* owner = nullptr;
  std::string name;  ///< for the cache
  DnsType type = DnsType::A;
  DnsResolver::Clock::time_point deadline;
  DnsResolver::Callback done;
  int asyncId = 0;
  bool idKnown = false;
  void* holder = nullptr;  ///< the Holder given to libunbound (a Holder*)
  bool finished = false;   ///< the callback was taken (answered, timed out or shut down)
};
using PendingPtr = std::shared_ptr<Pending>;
using Holder = PendingPtr;  // `new Holder(p)` is libunbound's mydata

struct DnsResolver::Impl {
  ub_ctx* ctx = nullptr;
  std::chrono::milliseconds timeout{5000};
  std::function<void(std::chrono::duration<double>)> observeLatency;
  std::string description;
  DnsCache cache;
  int wakeRead = -1;
  int wakeWrite = -1;
  std::thread pump;

  std::mutex mutex;
  bool stopping = false;
  std::vector<PendingPtr> pending;      ///< not finished, by submission order
  std::unordered_set<Holder*> holders;  ///< mydata libunbound still owns a callback for

  ~Impl() {
    if (pump.joinable()) {
      {
        std::lock_guard lock(mutex);
        stopping = true;
      }
      wake();
      pump.join();
    }
    if (ctx != nullptr) {
      ub_ctx_delete(ctx);  // no callback runs after this
    }
    std::vector<Callback> orphans;
    {
      std::lock_guard lock(mutex);
      for (const auto& p : pending) {
        if (!p->finished) {
          p->finished = true;
          orphans.push_back(std::move(p->done));
        }
      }
      pending.clear();
      for (Holder* h : holders) {
        delete h;
      }
      holders.clear();
    }
    for (auto& cb : orphans) {
      cb(DnsAnswer{DnsStatus::TempFail, {}, "resolver shut down"});
    }
    if (wakeRead >= 0) {
      ::close(wakeRead);
      ::close(wakeWrite);
    }
  }

  void wake() const {
    const char c = 1;
    [[maybe_unused]] auto n = ::write(wakeWrite, &c, 1);  // full pipe: already woken
  }

  explicit Impl(std::size_t cacheEntries) : cache(cacheEntries) {}

  /// Hands a (valid, uncached) query to libunbound.
  void submit(std::string_view name, DnsType type, Clock::time_point deadline, Callback done);

  static void onResult(void* mydata, int err, ub_result* result) {
    auto* holder = static_cast<Holder*>(mydata);
    PendingPtr p = *holder;
    DnsAnswer answer = fromUnbound(err, result);
    Impl& self = *p->owner;
    // Late answers too: a query that timed out for its caller still warms the cache.
    self.cache.store(p->name, p->type, answer, cacheTtl(answer, result), Clock::now());
    if (result != nullptr) {
      ub_resolve_free(result);
    }
    Callback done;
    {
      std::lock_guard lock(self.mutex);
      self.holders.erase(holder);
      delete holder;
      if (p->finished) {
        return;  // timed out earlier; this late answer only warms the caches
      }
      p->finished = true;
      done = std::move(p->done);
      std::erase(self.pending, p);
    }
    done(std::move(answer));
  }

  /// Milliseconds to the earliest deadline, -1 if none.
  int pollTimeout() {
    std::lock_guard lock(mutex);
    if (pending.empty()) {
      return -1;
    }
    auto earliest = pending.front()->deadline;
    for (const auto& p : pending) {
      earliest = std::min(earliest, p->deadline);
    }
    auto left = std::chrono::ceil<std::chrono::milliseconds>(earliest - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, 60'000));
  }

  void expire() {
    struct Expired {
      Callback done;
      Holder* holder = nullptr;  ///< to free if libunbound accepted the cancel
      int asyncId = 0;
    };
    std::vector<Expired> expired;
    const auto now = Clock::now();
    {
      std::lock_guard lock(mutex);
      for (auto it = pending.begin(); it != pending.end();) {
        Pending& p = **it;
        if (p.deadline > now) {
          ++it;
          continue;
        }
        p.finished = true;
        Expired e{std::move(p.done), nullptr, p.asyncId};
        auto* h = static_cast<Holder*>(p.holder);
        if (p.idKnown && holders.count(h) != 0) {
          e.holder = h;
        }
        expired.push_back(std::move(e));
        it = pending.erase(it);
      }
    }
    for (auto& e : expired) {
      // Callbacks only run on this thread, inside ub_process(), so between
      // the lock above and here none can have freed the holder.
      if (e.holder != nullptr && ub_cancel(ctx, e.asyncId) == UB_NOERROR) {
        std::lock_guard lock(mutex);
        holders.erase(e.holder);
        delete e.holder;
      }
      e.done(DnsAnswer{
          DnsStatus::TempFail, {}, "timed out after " + std::to_string(timeout.count()) + " ms"});
    }
  }

  void run() {
    for (;;) {
      pollfd fds[2] = {{ub_fd(ctx), POLLIN, 0}, {wakeRead, POLLIN, 0}};
      const int n = ::poll(fds, 2, pollTimeout());
      {
        std::lock_guard lock(mutex);
        if (stopping) {
          return;
        }
      }
      if (n > 0 && (fds[1].revents & POLLIN) != 0) {
        char buf[64];
        while (::read(wakeRead, buf, sizeof buf) > 0) {
        }
      }
      if (n > 0 && (fds[0].revents & POLLIN) != 0) {
        ub_process(ctx);
      }
      expire();
    }
  }
};

DnsResolver::DnsResolver(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DnsResolver::~DnsResolver() = default;

std::shared_ptr<DnsResolver> DnsResolver::create(const DnsResolverOptions& options,
                                                 std::string& error) {
  auto impl = std::make_unique<Impl>(options.cacheEntries);
  impl->timeout = options.timeout;
  impl->observeLatency = options.observeLatency;
  impl->ctx = ub_ctx_create();
  if (impl->ctx == nullptr) {
    error = "cannot create the libunbound context";
    return nullptr;
  }
  ub_ctx* ctx = impl->ctx;
  auto set = [&](const char* option, const char* value) {
    int rc = ub_ctx_set_option(ctx, option, value);
    if (rc != 0) {
      error = std::string("libunbound option ") + option + " " + value + ": " + ub_strerror(rc);
    }
    return rc == 0;
  };
  // Forwarding to a resolver on loopback is what tests (and a local unbound) do.
  // Private reverse zones (10.in-addr.arpa, ...) go to the servers too,
  // instead of libunbound's built-in empty answers.
  if (!set("do-not-query-localhost:", "no") || !set("unblock-lan-zones:", "yes") ||
      !set("insecure-lan-zones:", "yes")) {
    return nullptr;
  }
  if (options.servers.empty()) {
    int rc = ub_ctx_resolvconf(ctx, options.resolvConf.c_str());
    if (rc != 0) {
      error = "cannot read " + options.resolvConf + ": " + ub_strerror(rc);
      return nullptr;
    }
    impl->description = "nameservers of " + options.resolvConf;
  }
  for (const auto& server : options.servers) {
    auto addr = unboundServer(server, error);
    if (!addr) {
      return nullptr;
    }
    int rc = ub_ctx_set_fwd(ctx, addr->c_str());
    if (rc != 0) {
      error = "DNS server '" + server + "': " + ub_strerror(rc);
      return nullptr;
    }
    impl->description += (impl->description.empty() ? "" : ", ") + server;
  }
  // Threads, not a forked process, serve the asynchronous queries.
  if (int rc = ub_ctx_async(ctx, 1); rc != 0) {
    error = std::string("libunbound async: ") + ub_strerror(rc);
    return nullptr;
  }
  // (Last: adding a zone finalizes the context's settings.)
  // libunbound answers the reverse zones of the documentation ranges and the
  // RFC 6761 "test." domain itself (NXDOMAIN, RFC 6303); ask the servers
  // instead, like any other name, so a lab or test DNS that serves them is heard.
  for (const char* zone : {"2.0.192.in-addr.arpa", "100.51.198.in-addr.arpa",
                           "113.0.203.in-addr.arpa", "8.b.d.0.1.0.0.2.ip6.arpa", "test"}) {
    if (int rc = ub_ctx_zone_add(ctx, zone, "nodefault"); rc != 0) {
      error = std::string("libunbound local-zone ") + zone + ": " + ub_strerror(rc);
      return nullptr;
    }
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    error = "pipe: " + std::string(std::strerror(errno));
    return nullptr;
  }
  impl->wakeRead = fds[0];
  impl->wakeWrite = fds[1];
  Impl* raw = impl.get();
  impl->pump = std::thread([raw] { raw->run(); });
  return std::shared_ptr<DnsResolver>(new DnsResolver(std::move(impl)));
}

void DnsResolver::queryAsync(std::string_view name, DnsType type, Clock::time_point deadline,
                             Callback done) {
  if (!plausibleName(name)) {
    done(DnsAnswer{DnsStatus::NxDomain, {}, "not a valid domain name"});
    return;
  }
  if (auto cached = impl_->cache.find(name, type, Clock::now())) {
    done(std::move(*cached));
    return;
  }
  if (tCacheOnly.active) {
    tCacheOnly.missed = true;
    done(kNotCached);
    return;
  }
  impl_->submit(name, type, deadline, std::move(done));
}

DnsAnswer DnsResolver::query(std::string_view name, DnsType type, Clock::time_point deadline) {
  if (!plausibleName(name)) {
    return DnsAnswer{DnsStatus::NxDomain, {}, "not a valid domain name"};
  }
  if (auto cached = impl_->cache.find(name, type, Clock::now())) {
    return std::move(*cached);
  }
  if (tCacheOnly.active) {
    tCacheOnly.missed = true;
    if (!tCacheOnly.quiet) {
      throw WouldBlock{};
    }
    return kNotCached;
  }
  auto promise = std::make_shared<std::promise<DnsAnswer>>();
  auto future = promise->get_future();
  impl_->submit(name, type, deadline,
                [promise](DnsAnswer answer) { promise->set_value(std::move(answer)); });
  return future.get();
}

void DnsResolver::Impl::submit(std::string_view name, DnsType type, Clock::time_point deadline,
                               Callback done) {
  Impl& self = *this;
  auto p = std::make_shared<Pending>();
  p->owner = &self;
  p->name = std::string(name);
  p->type = type;
  p->deadline = std::min(deadline, Clock::now() + self.timeout);
  if (self.observeLatency) {
    done = [observe = self.observeLatency, started = Clock::now(),
            inner = std::move(done)](DnsAnswer answer) {
      observe(Clock::now() - started);
      inner(std::move(answer));
    };
  }
  p->done = std::move(done);
  auto* holder = new Holder(p);
  p->holder = holder;
  {
    std::lock_guard lock(self.mutex);
    if (self.stopping) {
      delete holder;
      p->finished = true;
      // fall through to answer outside the lock
    } else {
      self.pending.push_back(p);
      self.holders.insert(holder);
    }
  }
  if (p->finished) {
    p->done(DnsAnswer{DnsStatus::TempFail, {}, "resolver shut down"});
    return;
  }
  const std::string text(name);
  int id = 0;
  int rc = ub_resolve_async(self.ctx, text.c_str(), static_cast<int>(type), kClassIn, holder,
                            &Impl::onResult, &id);
  Callback failed;
  {
    std::lock_guard lock(self.mutex);
    if (rc != 0) {
      // libunbound took nothing: the holder is ours to free.
      self.holders.erase(holder);
      delete holder;
      if (!p->finished) {
        p->finished = true;
        failed = std::move(p->done);
        std::erase(self.pending, p);
      }
    } else {
      p->asyncId = id;
      p->idKnown = true;
    }
  }
  if (failed) {
    failed(DnsAnswer{rc == UB_SYNTAX ? DnsStatus::NxDomain : DnsStatus::TempFail,
                     {},
                     std::string("resolver error: ") + ub_strerror(rc)});
    return;
  }
  self.wake();  // the pump recomputes its poll timeout
}

DnsAnswer DnsResolver::query(std::string_view name, DnsType type) {
  return query(name, type, Clock::now() + impl_->timeout);
}

std::chrono::milliseconds DnsResolver::timeout() const {
  return impl_->timeout;
}

std::string DnsResolver::describe() const {
  return impl_->description;
}

const DnsCache& DnsResolver::cache() const {
  return impl_->cache;
}

DnsResolver::CacheOnlyScope::CacheOnlyScope()
    : savedActive_(tCacheOnly.active),
      savedQuiet_(tCacheOnly.quiet),
      savedMissed_(tCacheOnly.missed) {
  tCacheOnly = CacheOnlyState{true, false, false};
}

DnsResolver::CacheOnlyScope::~CacheOnlyScope() {
  tCacheOnly = CacheOnlyState{savedActive_, savedQuiet_, savedMissed_};
}

bool DnsResolver::CacheOnlyScope::missed() const {
  return tCacheOnly.missed;
}

DnsResolver::QuietMissScope::QuietMissScope() : savedQuiet_(tCacheOnly.quiet) {
  tCacheOnly.quiet = true;
}

DnsResolver::QuietMissScope::~QuietMissScope() {
  tCacheOnly.quiet = savedQuiet_;
}

bool DnsResolver::cacheMissedOnThisThread() {
  return tCacheOnly.active && tCacheOnly.missed;
}

void DnsResolver::throwIfCacheMissed() {
  if (cacheMissedOnThisThread()) {
    throw WouldBlock{};
  }
}

std::optional<rules::IpAddress> parseAddressRdata(std::string_view rdata) {
  std::array<std::uint8_t, 16> bytes{};
  if (rdata.size() == 4) {
    bytes[10] = 0xff;
    bytes[11] = 0xff;
    std::copy(rdata.begin(), rdata.end(), bytes.begin() + 12);
    return rules::IpAddress::fromBytes16(bytes);
  }
  if (rdata.size() == 16) {
    std::copy(rdata.begin(), rdata.end(), bytes.begin());
    return rules::IpAddress::fromBytes16(bytes);
  }
  return std::nullopt;
}

std::optional<std::string> parseNameRdata(std::string_view rdata) {
  std::string name;
  std::size_t i = 0;
  while (i < rdata.size()) {
    const auto len = static_cast<unsigned char>(rdata[i]);
    if (len == 0) {
      return name;  // the root label ends the name
    }
    if (len > kMaxLabel || i + 1 + len > rdata.size()) {
      return std::nullopt;  // a compression pointer or truncated data
    }
    if (!name.empty()) {
      name += '.';
    }
    name.append(rdata.substr(i + 1, len));
    i += 1 + len;
  }
  return std::nullopt;
}

std::optional<std::string> parseMxRdata(std::string_view rdata) {
  if (rdata.size() < 3) {
    return std::nullopt;
  }
  return parseNameRdata(rdata.substr(2));
}

std::optional<std::string> parseTxtRdata(std::string_view rdata) {
  std::string text;
  std::size_t i = 0;
  while (i < rdata.size()) {
    const auto len = static_cast<unsigned char>(rdata[i]);
    if (i + 1 + len > rdata.size()) {
      return std::nullopt;
    }
    text.append(rdata.substr(i + 1, len));
    i += 1 + len;
  }
  return text;
}

std::string reverseName(const rules::IpAddress& addr) {
  static constexpr char kHex[] = "0123456789abcdef";
  const auto& b = addr.bytes();
  std::string name;
  if (addr.isV4()) {
    for (int i = 15; i >= 12; --i) {
      name += std::to_string(b[i]) + '.';
    }
    return name + "in-addr.arpa";
  }
  for (int i = 15; i >= 0; --i) {
    name += kHex[b[i] & 0xFU];
    name += '.';
    name += kHex[b[i] >> 4];
    name += '.';
  }
  return name + "ip6.arpa";
}

}  // namespace smtpgate::policies
