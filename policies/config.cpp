#include "policies/config.h"

#include <arpa/inet.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <set>
#include <span>
#include <system_error>
#include <type_traits>

#include "policies/cidr_list.h"

namespace smtpgate::policies {

namespace {

namespace fs = std::filesystem;
using rules::Diagnostics;
using rules::SourceLocation;

// ---------------------------------------------------------------------------
// Small syntax checks, shared by the address parsers.

bool isIpv4(std::string_view s) {
  in_addr a{};
  return inet_pton(AF_INET, std::string(s).c_str(), &a) == 1;
}

bool isIpv6(std::string_view s) {
  in6_addr a{};
  return inet_pton(AF_INET6, std::string(s).c_str(), &a) == 1;
}

// RFC 1123 host name: LDH labels of 1-63 bytes, 253 bytes in all, an optional
// final dot. All-numeric dotted strings are IPv4 attempts and checked as such.
bool isDnsName(std::string_view s) {
  if (!s.empty() && s.back() == '.') {
    s.remove_suffix(1);
  }
  if (s.empty() || s.size() > 253) {
    return false;
  }
  std::size_t labelStart = 0;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '.') {
      const std::string_view label = s.substr(labelStart, i - labelStart);
      if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
        return false;
      }
      labelStart = i + 1;
      continue;
    }
    const char c = s[i];
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

bool looksNumeric(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789.") == std::string_view::npos;
}

// A host that is not an IPv6 literal: an IPv4 address or a DNS name.
bool checkHost(std::string_view host, std::string& error) {
  if (host.empty()) {
    error = "missing host";
    return false;
  }
  if (looksNumeric(host)) {
    if (!isIpv4(host)) {
      error = "bad IPv4 address '" + std::string(host) + "'";
      return false;
    }
    return true;
  }
  if (!isDnsName(host)) {
    error = "bad host name '" + std::string(host) + "'";
    return false;
  }
  return true;
}

std::optional<std::uint16_t> parsePort(std::string_view s, std::string& error) {
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || s.size() > 5 || ec != std::errc{} || end != s.data() + s.size() || value == 0 ||
      value > 65535) {
    error = "bad port '" + std::string(s) + "' (must be 1-65535)";
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

bool checkAbsolutePath(std::string_view path, std::string& error) {
  if (path.empty() || path.front() != '/') {
    error = "the socket path must be absolute, like /run/smtpgate/milter.sock";
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Globs: rule file entries are glob(3) patterns.

std::string escapeGlob(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  return out;
}

bool hasGlobMeta(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
    } else if (s[i] == '*' || s[i] == '?' || s[i] == '[') {
      return true;
    }
  }
  return false;
}

std::string unescapeGlob(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      ++i;
    }
    out += s[i];
  }
  return out;
}

// ---------------------------------------------------------------------------
// The parse context: where diagnostics go and how paths resolve.

std::vector<std::string_view> splitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

// toml++ counts columns in code points; diagnostics count bytes.
int byteColumn(std::string_view line, int codepointColumn) {
  std::size_t i = 0;
  for (int cp = 1; cp < codepointColumn && i < line.size(); ++cp) {
    ++i;
    while (i < line.size() && (static_cast<unsigned char>(line[i]) & 0xC0) == 0x80) {
      ++i;
    }
  }
  return static_cast<int>(i) + 1;
}

fs::path currentDir() {
  std::error_code ec;
  fs::path cwd = fs::current_path(ec);
  return ec ? fs::path(".") : cwd;
}

struct Ctx {
  Diagnostics& diags;
  std::string file;
  std::vector<std::string_view> lines;
  fs::path baseDir;

  ValueOrigin origin(const toml::source_region& region) const {
    const int line = static_cast<int>(region.begin.line);
    std::string text;
    int column = static_cast<int>(region.begin.column);
    if (line >= 1 && static_cast<std::size_t>(line) <= lines.size()) {
      text = std::string(lines[line - 1]);
      column = byteColumn(text, column);
    }
    return {SourceLocation{file, line, column}, std::move(text)};
  }

  void error(const toml::source_region& region, std::string message) {
    ValueOrigin o = origin(region);
    diags.error(std::move(o.where), std::move(message), std::move(o.sourceLine));
  }

  void warning(const toml::source_region& region, std::string message) {
    ValueOrigin o = origin(region);
    diags.warning(std::move(o.where), std::move(message), std::move(o.sourceLine));
  }

  std::string resolve(std::string_view path) const {
    fs::path p(path);
    return (p.is_absolute() ? p : baseDir / p).lexically_normal().string();
  }

  // Like resolve(), but the base directory is glob-escaped so only the
  // admin's own * ? [ act as wildcards.
  std::string resolvePattern(std::string_view pattern) const {
    if (!pattern.empty() && pattern.front() == '/') {
      return fs::path(pattern).lexically_normal().string();
    }
    return fs::path(escapeGlob(baseDir.string()) + "/" + std::string(pattern))
        .lexically_normal()
        .string();
  }
};

fs::path baseDirOf(const std::string& sourceName) {
  if (sourceName == kEmbeddedConfigName) {
    return currentDir();
  }
  fs::path dir = fs::path(sourceName).parent_path();
  if (dir.is_absolute()) {
    return dir;
  }
  return (currentDir() / dir).lexically_normal();
}

// ---------------------------------------------------------------------------
// Typed access to values, each reporting "section.key: expected X, got Y".

std::string_view typeName(toml::node_type t) {
  switch (t) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a floating-point number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

void typeError(Ctx& c, const toml::node& n, std::string_view key, std::string_view expected) {
  c.error(n.source(), std::string(key) + ": expected " + std::string(expected) + ", got " +
                          std::string(typeName(n.type())));
}

std::optional<std::string> getString(Ctx& c, const toml::node& n, std::string_view key) {
  if (const auto* s = n.as_string()) {
    return s->get();
  }
  typeError(c, n, key, "a string");
  return std::nullopt;
}

struct Item {
  std::string value;
  const toml::node* node;
};

// A string or an array of strings; every non-string element is reported.
std::optional<std::vector<Item>> getStringList(Ctx& c, const toml::node& n, std::string_view key) {
  if (const auto* s = n.as_string()) {
    return std::vector<Item>{{s->get(), &n}};
  }
  const auto* arr = n.as_array();
  if (arr == nullptr) {
    typeError(c, n, key, "an array of strings");
    return std::nullopt;
  }
  std::vector<Item> items;
  bool ok = true;
  for (const toml::node& el : *arr) {
    if (const auto* s = el.as_string()) {
      items.push_back({s->get(), &el});
    } else {
      typeError(c, el, std::string(key) + " element", "a string");
      ok = false;
    }
  }
  return ok ? std::optional(std::move(items)) : std::nullopt;
}

std::string quote(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

// The value as the admin wrote it, for messages: "50MB", -5.
std::string valueText(const toml::node& n) {
  if (const auto* s = n.as_string()) {
    return quote(s->get());
  }
  if (const auto* i = n.as_integer()) {
    return std::to_string(i->get());
  }
  return std::string(typeName(n.type()));
}

// A duration string, more than zero ("0s" would make every wait fail at once).
std::optional<std::chrono::milliseconds> getDuration(Ctx& c, const toml::node& n,
                                                     std::string_view key) {
  const auto* s = n.as_string();
  if (s == nullptr) {
    typeError(c, n, key, "a duration string like \"5s\"");
    return std::nullopt;
  }
  auto d = parseDuration(s->get());
  if (!d || d->count() == 0) {
    c.error(n.source(), std::string(key) + ": bad duration " + quote(s->get()) +
                            "; use a positive number with a unit: ms, s, m, h or d, like \"5s\"");
    return std::nullopt;
  }
  return d;
}

// ---------------------------------------------------------------------------
// One function per key. Each checks the value and stores it into the Config.

void checkListenList(Ctx& c, const toml::node& n, std::string_view key,
                     std::vector<std::string>& out) {
  auto items = getStringList(c, n, key);
  if (!items) {
    return;
  }
  if (items->empty()) {
    c.error(n.source(), std::string(key) + ": must list at least one address");
    return;
  }
  out.clear();
  for (const auto& item : *items) {
    std::string err;
    if (!parseHostPort(item.value, err)) {
      c.error(item.node->source(),
              std::string(key) + ": bad address " + quote(item.value) + ": " + err);
    }
    out.push_back(item.value);
  }
}

void applyProxyListen(Ctx& c, const toml::node& n, Config& cfg) {
  checkListenList(c, n, "proxy.listen", cfg.proxy.listen);
}

void applyProxyBackend(Ctx& c, const toml::node& n, Config& cfg) {
  if (auto v = getString(c, n, "proxy.backend")) {
    std::string err;
    auto backend = parseBackendAddress(*v, err);
    if (!backend) {
      c.error(n.source(), "proxy.backend: bad address " + quote(*v) + ": " + err);
    } else if (backend->protocol == BackendAddress::Protocol::Lmtp) {
      // Refused here rather than failing every message at run time. LMTP
      // answers the end of data once per recipient, which one SMTP reply to
      // the client cannot carry without a queue of our own.
      c.error(n.source(),
              "proxy.backend: LMTP backends are not supported; give the MTA in "
              "front of the mailbox server as HOST:PORT (e.g. Postfix on "
              "127.0.0.1:10025)");
    }
    cfg.proxy.backend = *v;
  }
}

void applyProxyXclient(Ctx& c, const toml::node& n, Config& cfg) {
  if (const auto* b = n.as_boolean()) {
    cfg.proxy.xclient = b->get();
  } else {
    typeError(c, n, "proxy.xclient", "a boolean (true or false)");
  }
}

void applyProxyHostname(Ctx& c, const toml::node& n, Config& cfg) {
  if (auto v = getString(c, n, "proxy.hostname")) {
    if (!isDnsName(*v) || looksNumeric(*v)) {
      c.error(n.source(), "proxy.hostname: " + quote(*v) +
                              " is not a host name (letters, digits, '-' and dots)");
    }
    cfg.proxy.hostname = *v;
  }
}

/// A positive size in bytes: a whole number, or text with an optional K, M,
/// G or T suffix ("50M").
struct SizeKey {
  std::string_view name;
  std::uint64_t ProxyConfig::*member;
};

template <const SizeKey& K>
void applySizeKey(Ctx& c, const toml::node& n, Config& cfg) {
  std::optional<std::uint64_t> size;
  if (const auto* i = n.as_integer()) {
    if (i->get() >= 0) {
      size = static_cast<std::uint64_t>(i->get());
    }
  } else if (const auto* s = n.as_string()) {
    size = parseSize(s->get());
  } else {
    typeError(c, n, K.name, "a size like \"50M\"");
    return;
  }
  if (!size || *size == 0) {
    c.error(n.source(), std::string(K.name) + ": bad size " + valueText(n) +
                            "; use a positive number of bytes with an optional K, M, G or T "
                            "suffix, like \"50M\"");
    return;
  }
  cfg.proxy.*K.member = *size;
}

constexpr SizeKey kMaxMessageSize{"proxy.max_message_size", &ProxyConfig::maxMessageSize};
constexpr SizeKey kMaxHeaderSize{"proxy.max_header_size", &ProxyConfig::maxHeaderSize};

void applyProxyTlsCertificate(Ctx& c, const toml::node& n, Config& cfg) {
  if (auto v = getString(c, n, "proxy.tls_certificate")) {
    cfg.proxy.tlsCertificate = c.resolve(*v);  // relative to the config file, like rule files
  }
}

void applyProxyTlsKey(Ctx& c, const toml::node& n, Config& cfg) {
  if (auto v = getString(c, n, "proxy.tls_key")) {
    cfg.proxy.tlsKey = c.resolve(*v);
  }
}

// Limits and timeouts of the proxy: one descriptor per key (name, field,
// bounds), one generic function per value type.

/// A whole number within [min, max]. The bounds keep every limit workable
/// (0 recipients or 0 connections would refuse all mail) and every buffer or
/// count sized by it bounded.
template <typename T>
struct CountKey {
  std::string_view name;
  T ProxyConfig::*member;
  std::int64_t min;
  std::int64_t max;
};

template <const auto& K>
void applyCount(Ctx& c, const toml::node& n, Config& cfg) {
  const auto* i = n.as_integer();
  if (i == nullptr) {
    typeError(c, n, K.name, "a whole number");
    return;
  }
  if (i->get() < K.min || i->get() > K.max) {
    c.error(n.source(), std::string(K.name) + ": " + valueText(n) +
                            " is out of range; use a whole number from " + std::to_string(K.min) +
                            " to " + std::to_string(K.max));
    return;
  }
  using T = std::remove_cvref_t<decltype(cfg.proxy.*K.member)>;
  cfg.proxy.*K.member = static_cast<T>(i->get());
}

/// A positive duration, at most a day for every key: that bounds every wait,
/// and keeps deadlines (now + duration, in nanoseconds) far from overflow.
struct DurationKey {
  std::string_view name;
  std::chrono::milliseconds ProxyConfig::*member;
};
constexpr std::chrono::milliseconds kDurationMax = std::chrono::hours(24);
constexpr std::string_view kDurationMaxText = "1d";

template <const DurationKey& K>
void applyDurationKey(Ctx& c, const toml::node& n, Config& cfg) {
  auto d = getDuration(c, n, K.name);
  if (!d) {
    return;
  }
  if (*d > kDurationMax) {
    c.error(n.source(), std::string(K.name) + ": " + valueText(n) + " is too long; at most " +
                            quote(kDurationMaxText));
    return;
  }
  cfg.proxy.*K.member = *d;
}

constexpr std::int64_t kMaxConnectionsLimit = 1'000'000;
constexpr CountKey<std::size_t> kMaxRecipients{"proxy.max_recipients", &ProxyConfig::maxRecipients,
                                               1, 100'000};
constexpr CountKey<std::size_t> kMaxErrors{"proxy.max_errors", &ProxyConfig::maxErrors, 1, 10'000};
constexpr CountKey<std::size_t> kMaxConnections{
    "proxy.max_connections", &ProxyConfig::maxConnections, 1, kMaxConnectionsLimit};
constexpr CountKey<std::size_t> kMaxConnectionsPerIp{
    "proxy.max_connections_per_ip", &ProxyConfig::maxConnectionsPerIp, 1, kMaxConnectionsLimit};
// RFC 5321 4.5.3.1.4: servers must take 512-byte command lines; 1 MiB is the
// proxy's own cap on any line (limits::kDataLineMax).
constexpr CountKey<std::size_t> kMaxLineLength{"proxy.max_line_length", &ProxyConfig::maxLineLength,
                                               512, 1 << 20};
constexpr CountKey<std::size_t> kBackendIdleConnections{
    "proxy.backend_idle_connections", &ProxyConfig::backendIdleConnections, 0, 100000};
constexpr CountKey<unsigned> kThreads{"proxy.threads", &ProxyConfig::threads, 0, 1024};

constexpr DurationKey kCommandTimeout{"proxy.command_timeout", &ProxyConfig::commandTimeout};
constexpr DurationKey kDataTimeout{"proxy.data_timeout", &ProxyConfig::dataTimeout};
constexpr DurationKey kSessionLifetime{"proxy.session_lifetime", &ProxyConfig::sessionLifetime};
constexpr DurationKey kShutdownGrace{"proxy.shutdown_grace", &ProxyConfig::shutdownGrace};
constexpr DurationKey kBackendConnectTimeout{"proxy.backend_connect_timeout",
                                             &ProxyConfig::backendConnectTimeout};
constexpr DurationKey kBackendTimeout{"proxy.backend_timeout", &ProxyConfig::backendTimeout};
constexpr DurationKey kBackendIdleTime{"proxy.backend_idle_time", &ProxyConfig::backendIdleTime};
constexpr DurationKey kBackendReuseTime{"proxy.backend_reuse_time", &ProxyConfig::backendReuseTime};
constexpr DurationKey kTlsHandshakeTimeout{"proxy.tls_handshake_timeout",
                                           &ProxyConfig::tlsHandshakeTimeout};

void applyProxyBareNewlines(Ctx& c, const toml::node& n, Config& cfg) {
  auto v = getString(c, n, "proxy.bare_newlines");
  if (!v) {
    return;
  }
  if (*v == "reject") {
    cfg.proxy.bareNewlines = BareNewlines::Reject;
  } else if (*v == "normalize") {
    cfg.proxy.bareNewlines = BareNewlines::Normalize;
  } else {
    c.error(n.source(),
            "proxy.bare_newlines: must be \"reject\" or \"normalize\", got " + quote(*v));
  }
}

void applyProxyBackendTls(Ctx& c, const toml::node& n, Config& cfg) {
  auto v = getString(c, n, "proxy.backend_tls");
  if (!v) {
    return;
  }
  static constexpr std::pair<std::string_view, BackendTlsLevel> kLevels[] = {
      {"none", BackendTlsLevel::None},
      {"may", BackendTlsLevel::May},
      {"encrypt", BackendTlsLevel::Encrypt},
      {"verify", BackendTlsLevel::Verify},
  };
  for (const auto& [name, level] : kLevels) {
    if (*v == name) {
      cfg.proxy.backendTls = level;
      return;
    }
  }
  c.error(
      n.source(),
      "proxy.backend_tls: must be \"none\", \"may\", \"encrypt\" or \"verify\", got " + quote(*v));
}

void applyProxyBackendTlsCaFile(Ctx& c, const toml::node& n, Config& cfg) {
  if (auto v = getString(c, n, "proxy.backend_tls_ca_file")) {
    cfg.proxy.backendTlsCaFile = c.resolve(*v);
  }
}

void applyProxyProxyProtocol(Ctx& c, const toml::node& n, Config& cfg) {
  if (const auto* b = n.as_boolean()) {
    cfg.proxy.proxyProtocol = b->get();
  } else {
    typeError(c, n, "proxy.proxy_protocol", "a boolean (true or false)");
  }
}

// Checked with CidrList itself, the parser the listener will use, so lint
// accepts exactly what the proxy can match against.
void applyProxyTrustedProxies(Ctx& c, const toml::node& n, Config& cfg) {
  constexpr std::string_view kKey = "proxy.trusted_proxies";
  auto items = getStringList(c, n, kKey);
  if (!items) {
    return;
  }
  cfg.proxy.trustedProxies.clear();
  CidrList networks;
  for (const auto& item : *items) {
    ValueOrigin o = c.origin(item.node->source());
    Diagnostics found;
    networks.add(rules::ListEntry{item.value, std::move(o.where), std::move(o.sourceLine)}, found);
    for (rules::Diagnostic d : found.items()) {
      d.message = std::string(kKey) + ": " + d.message;
      c.diags.add(std::move(d));
    }
    cfg.proxy.trustedProxies.push_back(item.value);
  }
}

// A PROXY header names the client; accepted from anyone, it would let any
// peer pick the address every rule and the backend see.
void finishProxyProtocol(Ctx& c, const toml::table& t) {
  const toml::node* enabled = t.get("proxy_protocol");
  const toml::node* trusted = t.get("trusted_proxies");
  const bool on = enabled != nullptr && enabled->value<bool>().value_or(false);
  const bool listed = trusted != nullptr && !(trusted->is_array() && trusted->as_array()->empty());
  if (on && !listed) {
    c.error(enabled->source(),
            "proxy.proxy_protocol = true needs proxy.trusted_proxies: list the load "
            "balancers (CIDRs) allowed to send a PROXY header, or anyone could forge "
            "their client address");
  } else if (!on && listed) {
    c.warning(trusted->source(),
              "proxy.trusted_proxies has no effect unless proxy.proxy_protocol = true");
  }
}

// Settings that only make sense together.
void finishProxy(Ctx& c, const toml::table& t) {
  finishProxyProtocol(c, t);
  const toml::node* caFile = t.get("backend_tls_ca_file");
  const toml::node* level = t.get("backend_tls");
  if (caFile != nullptr &&
      (level == nullptr || level->value_or(std::string_view()) != std::string_view("verify"))) {
    c.warning(caFile->source(),
              "proxy.backend_tls_ca_file has no effect unless proxy.backend_tls = \"verify\"");
  }
  const toml::node* cert = t.get("tls_certificate");
  const toml::node* key = t.get("tls_key");
  if (cert != nullptr && key == nullptr) {
    c.error(cert->source(),
            "proxy.tls_certificate is set but proxy.tls_key is not; STARTTLS "
            "needs both");
  } else if (key != nullptr && cert == nullptr) {
    c.error(key->source(),
            "proxy.tls_key is set but proxy.tls_certificate is not; STARTTLS "
            "needs both");
  }
}

void applyMilterSocket(Ctx& c, const toml::node& n, Config& cfg) {
  if (auto v = getString(c, n, "milter.socket")) {
    std::string err;
    if (!parseMilterSocket(*v, err)) {
      c.error(n.source(), "milter.socket: bad socket " + quote(*v) + ": " + err);
    }
    cfg.milter.socket = *v;
  }
}

// A DNS server is an address: a name would need DNS to be found.
bool checkDnsServer(std::string_view s, std::string& error) {
  if (isIpv4(s) || isIpv6(s)) {
    return true;
  }
  std::string err;
  auto hp = parseHostPort(s, err);
  if (hp && (isIpv4(hp->host) || isIpv6(hp->host))) {
    return true;
  }
  error = err.starts_with("bad port")
              ? err
              : "must be an IP address, optionally with :PORT, like 127.0.0.1:5353 or [::1]:53";
  return false;
}

void applyDnsServers(Ctx& c, const toml::node& n, Config& cfg) {
  auto items = getStringList(c, n, "dns.servers");
  if (!items) {
    return;
  }
  cfg.dns.servers.clear();
  for (const auto& item : *items) {
    std::string err;
    if (!checkDnsServer(item.value, err)) {
      c.error(item.node->source(), "dns.servers: bad server " + quote(item.value) + ": " + err);
    }
    cfg.dns.servers.push_back(item.value);
  }
}

void applyDnsTimeout(Ctx& c, const toml::node& n, Config& cfg) {
  if (auto d = getDuration(c, n, "dns.timeout")) {
    cfg.dns.timeout = *d;
  }
}

void applyFailureDns(Ctx& c, const toml::node& n, Config& cfg) {
  auto v = getString(c, n, "failure.dns");
  if (!v) {
    return;
  }
  if (*v == "tempfail") {
    cfg.failure.dns = DnsFailureMode::Tempfail;
  } else if (*v == "rules") {
    cfg.failure.dns = DnsFailureMode::Rules;
  } else {
    c.error(n.source(), "failure.dns: must be \"tempfail\" or \"rules\", got " + quote(*v));
  }
}

void applyDkimMaxSignatures(Ctx& c, const toml::node& n, Config& cfg) {
  const auto* i = n.as_integer();
  if (i == nullptr) {
    typeError(c, n, "dkim.max_signatures", "a whole number");
    return;
  }
  if (i->get() < 1 || i->get() > 50) {
    c.error(n.source(), "dkim.max_signatures: " + valueText(n) +
                            " is out of range; use a whole number from 1 to 50");
    return;
  }
  cfg.dkim.maxSignatures = static_cast<std::size_t>(i->get());
}

void applyHeadersSpamScore(Ctx& c, const toml::node& n, Config& cfg) {
  if (const auto* b = n.as_boolean()) {
    cfg.headers.spamScore = b->get();
  } else {
    typeError(c, n, "headers.spam_score", "a boolean (true or false)");
  }
}

void applyAuthServId(Ctx& c, const toml::node& n, Config& cfg) {
  auto v = getString(c, n, "auth.authserv_id");
  if (!v) {
    return;
  }
  if (v->empty() || v->find_first_of(" \t\r\n;()\"\\") != std::string::npos) {
    c.error(n.source(), "auth.authserv_id: " + quote(*v) +
                            " must be a host name or another word without spaces, ';', '(' or "
                            "quotes, like \"mx.example.com\"");
    return;
  }
  cfg.auth.authservId = *v;
}

void applyRulesFiles(Ctx& c, const toml::node& n, Config& cfg) {
  auto items = getStringList(c, n, "rules.files");
  if (!items) {
    return;
  }
  cfg.rules.files.clear();
  cfg.rules.filesOrigin.clear();
  for (const auto& item : *items) {
    if (item.value.empty()) {
      c.error(item.node->source(), "rules.files: empty path");
      continue;
    }
    cfg.rules.files.push_back(c.resolvePattern(item.value));
    cfg.rules.filesOrigin.push_back(c.origin(item.node->source()));
  }
}

void applyRulesMode(Ctx& c, const toml::node& n, Config& cfg) {
  auto v = getString(c, n, "rules.mode");
  if (!v) {
    return;
  }
  if (*v == "enforce") {
    cfg.rules.mode = RulesMode::Enforce;
  } else if (*v == "dry-run") {
    cfg.rules.mode = RulesMode::DryRun;
  } else {
    c.error(n.source(), "rules.mode: must be \"enforce\" or \"dry-run\", got " + quote(*v));
  }
}

void applyRulesWatch(Ctx& c, const toml::node& n, Config& cfg) {
  if (const auto* b = n.as_boolean()) {
    cfg.rules.watch = b->get();
  } else {
    typeError(c, n, "rules.watch", "a boolean (true or false)");
  }
}

void applyLogDecisions(Ctx& c, const toml::node& n, Config& cfg) {
  if (auto v = getString(c, n, "log.decisions")) {
    if (v->empty()) {
      c.error(n.source(), "log.decisions: empty path");
      return;
    }
    cfg.log.decisions = *v;  // resolved against the config directory at the end
  }
}

void applyMetricsListen(Ctx& c, const toml::node& n, Config& cfg) {
  if (auto v = getString(c, n, "metrics.listen")) {
    std::string err;
    if (!v->empty() && !parseHostPort(*v, err)) {
      c.error(n.source(), "metrics.listen: bad address " + quote(*v) + ": " + err);
    }
    cfg.metrics.listen = *v;
  }
}

// ---------------------------------------------------------------------------
// The table of sections and keys: the one place a new setting is declared.

using ApplyFn = void (*)(Ctx&, const toml::node&, Config&);
using FinishFn = void (*)(Ctx&, const toml::table&);

struct KeySpec {
  std::string_view name;
  ApplyFn apply;
};

struct SectionSpec {
  std::string_view name;
  std::span<const KeySpec> keys;
  FinishFn finish = nullptr;
};

constexpr KeySpec kProxyKeys[] = {
    {"listen", applyProxyListen},
    {"backend", applyProxyBackend},
    {"xclient", applyProxyXclient},
    {"hostname", applyProxyHostname},
    {"max_message_size", applySizeKey<kMaxMessageSize>},
    {"max_header_size", applySizeKey<kMaxHeaderSize>},
    {"tls_certificate", applyProxyTlsCertificate},
    {"tls_key", applyProxyTlsKey},
    {"backend_tls", applyProxyBackendTls},
    {"backend_tls_ca_file", applyProxyBackendTlsCaFile},
    {"max_recipients", applyCount<kMaxRecipients>},
    {"max_errors", applyCount<kMaxErrors>},
    {"command_timeout", applyDurationKey<kCommandTimeout>},
    {"data_timeout", applyDurationKey<kDataTimeout>},
    {"session_lifetime", applyDurationKey<kSessionLifetime>},
    {"max_connections", applyCount<kMaxConnections>},
    {"max_connections_per_ip", applyCount<kMaxConnectionsPerIp>},
    {"max_line_length", applyCount<kMaxLineLength>},
    {"bare_newlines", applyProxyBareNewlines},
    {"shutdown_grace", applyDurationKey<kShutdownGrace>},
    {"backend_connect_timeout", applyDurationKey<kBackendConnectTimeout>},
    {"backend_timeout", applyDurationKey<kBackendTimeout>},
    {"backend_idle_connections", applyCount<kBackendIdleConnections>},
    {"backend_idle_time", applyDurationKey<kBackendIdleTime>},
    {"backend_reuse_time", applyDurationKey<kBackendReuseTime>},
    {"threads", applyCount<kThreads>},
    {"proxy_protocol", applyProxyProxyProtocol},
    {"trusted_proxies", applyProxyTrustedProxies},
    {"tls_handshake_timeout", applyDurationKey<kTlsHandshakeTimeout>},
};
constexpr KeySpec kMilterKeys[] = {{"socket", applyMilterSocket}};
constexpr KeySpec kDnsKeys[] = {{"servers", applyDnsServers}, {"timeout", applyDnsTimeout}};
constexpr KeySpec kFailureKeys[] = {{"dns", applyFailureDns}};
constexpr KeySpec kDkimKeys[] = {{"max_signatures", applyDkimMaxSignatures}};
constexpr KeySpec kAuthKeys[] = {{"authserv_id", applyAuthServId}};
constexpr KeySpec kHeadersKeys[] = {{"spam_score", applyHeadersSpamScore}};
constexpr KeySpec kRulesKeys[] = {
    {"files", applyRulesFiles}, {"mode", applyRulesMode}, {"watch", applyRulesWatch}};
constexpr KeySpec kLogKeys[] = {{"decisions", applyLogDecisions}};
constexpr KeySpec kMetricsKeys[] = {{"listen", applyMetricsListen}};

constexpr SectionSpec kSections[] = {
    {"proxy", kProxyKeys, finishProxy},
    {"milter", kMilterKeys},
    {"dns", kDnsKeys},
    {"rules", kRulesKeys},
    {"log", kLogKeys},
    {"metrics", kMetricsKeys},
    {"failure", kFailureKeys},
    {"dkim", kDkimKeys},
    {"auth", kAuthKeys},
    {"headers", kHeadersKeys},
};

template <typename T>
std::string joinNames(std::span<const T> specs) {
  std::string out;
  for (const auto& s : specs) {
    out += (out.empty() ? "" : ", ") + std::string(s.name);
  }
  return out;
}

void applySection(Ctx& c, const SectionSpec& spec, const toml::table& table, Config& cfg) {
  for (auto&& [key, node] : table) {
    const auto it = std::find_if(spec.keys.begin(), spec.keys.end(),
                                 [&](const KeySpec& k) { return k.name == key.str(); });
    if (it == spec.keys.end()) {
      c.error(key.source(), "unknown key '" + std::string(key.str()) + "' in [" +
                                std::string(spec.name) + "]; known keys: " + joinNames(spec.keys));
      continue;
    }
    it->apply(c, node, cfg);
  }
  if (spec.finish != nullptr) {
    spec.finish(c, table);
  }
}

void applyDocument(Ctx& c, const toml::table& root, Config& cfg) {
  const std::span<const SectionSpec> sections(kSections);
  for (auto&& [key, node] : root) {
    const auto it = std::find_if(sections.begin(), sections.end(),
                                 [&](const SectionSpec& s) { return s.name == key.str(); });
    const std::string name(key.str());
    if (it == sections.end()) {
      c.error(key.source(), (node.is_table() ? "unknown section [" + name + "]"
                                             : "unknown key '" + name + "' outside any section") +
                                "; known sections: " + joinNames(sections));
      continue;
    }
    const auto* table = node.as_table();
    if (table == nullptr) {
      c.error(node.source(), "'" + name + "' must be a section [" + name + "], got " +
                                 std::string(typeName(node.type())));
      continue;
    }
    applySection(c, *it, *table, cfg);
  }
}

std::string localHostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') {
    return "localhost";
  }
  return buf;
}

// std::map iteration in toml++ visits keys alphabetically; the admin reads
// diagnostics top to bottom, so restore file order.
void appendInFileOrder(const Diagnostics& found, Diagnostics& out) {
  std::vector<rules::Diagnostic> items = found.items();
  std::stable_sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
    return std::pair(a.where.line, a.where.column) < std::pair(b.where.line, b.where.column);
  });
  for (auto& d : items) {
    out.add(std::move(d));
  }
}

bool readFile(const std::string& path, std::string& out, std::string& error) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    error = "is a directory, not a config file";
    return false;
  }
  std::FILE* f = std::fopen(path.c_str(), "rbe");
  if (f == nullptr) {
    error = std::system_category().message(errno);
    return false;
  }
  char buf[8192];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    out.append(buf, n);
  }
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (failed) {
    error = std::system_category().message(err);
    return false;
  }
  return true;
}

constexpr std::string_view kEmbeddedDefault =
    R"(# smtpgate embedded default: used when no -c is given and
# /etc/smtpgate/smtpgate.toml does not exist. Good for one machine.

[proxy]
listen = ["127.0.0.1:2525"]
backend = "127.0.0.1:25"
xclient = true
max_message_size = "50M"

[milter]
socket = "inet:8891@127.0.0.1"

[dns]
servers = []          # empty: use /etc/resolv.conf
timeout = "5s"

[failure]
dns = "tempfail"      # a DNS lookup a rule needs fails: 451, the client retries

[dkim]
max_signatures = 5    # signatures checked per message; the rest are ignored

[auth]
# authserv_id = "mx.example.com"   # Authentication-Results id; default: the host name

[rules]
files = []            # no rules: every message is accepted and logged
mode = "enforce"

[log]
decisions = "smtpgate-decisions.jsonl"   # in the current directory
)";

}  // namespace

// ---------------------------------------------------------------------------
// Public API.

std::optional<Config> parseConfig(std::string_view text, const std::string& sourceName,
                                  rules::Diagnostics& diags) {
  Diagnostics found;
  Ctx c{found, sourceName, splitLines(text), baseDirOf(sourceName)};
  toml::table root;
  try {
    root = toml::parse(text, sourceName);
  } catch (const toml::parse_error& e) {
    c.error(e.source(), "TOML syntax error: " + std::string(e.description()));
    appendInFileOrder(found, diags);
    return std::nullopt;
  }
  Config cfg;
  cfg.source = sourceName;
  applyDocument(c, root, cfg);
  if (cfg.proxy.hostname.empty()) {
    cfg.proxy.hostname = localHostName();
  }
  cfg.log.decisions = c.resolve(cfg.log.decisions);
  appendInFileOrder(found, diags);
  if (found.hasErrors()) {
    return std::nullopt;
  }
  return cfg;
}

std::optional<Config> loadConfig(const std::string& path, rules::Diagnostics& diags) {
  std::string text;
  std::string error;
  if (!readFile(path, text, error)) {
    diags.error(SourceLocation{path, 0, 0}, "cannot read config file: " + error);
    return std::nullopt;
  }
  return parseConfig(text, path, diags);
}

std::string_view embeddedDefaultConfig() {
  return kEmbeddedDefault;
}

std::optional<Config> loadDefaultConfig(rules::Diagnostics& diags, const std::string& systemPath) {
  std::error_code ec;
  if (fs::exists(systemPath, ec)) {
    return loadConfig(systemPath, diags);
  }
  return parseConfig(kEmbeddedDefault, std::string(kEmbeddedConfigName), diags);
}

namespace {

// Adds the matches of one glob pattern, sorted, skipping directories and
// files already added.
void expandOnePattern(const std::string& pattern, const ValueOrigin& origin,
                      std::set<std::string>& seen, std::vector<std::string>& out,
                      Diagnostics& diags) {
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), GLOB_MARK, nullptr, &g);
  if (rc == GLOB_NOMATCH) {
    diags.warning(origin.where, "rules.files: no file matches " + quote(pattern),
                  origin.sourceLine);
  } else if (rc != 0) {
    diags.error(origin.where,
                "rules.files: cannot expand " + quote(pattern) +
                    (rc == GLOB_NOSPACE ? ": out of memory" : ": read error"),
                origin.sourceLine);
  } else {
    std::vector<std::string> matches(g.gl_pathv, g.gl_pathv + g.gl_pathc);
    std::sort(matches.begin(), matches.end());
    for (auto& m : matches) {
      if (!m.empty() && m.back() != '/' && seen.insert(m).second) {
        out.push_back(std::move(m));
      }
    }
  }
  ::globfree(&g);
}

void addLiteralFile(const std::string& path, const ValueOrigin& origin, std::set<std::string>& seen,
                    std::vector<std::string>& out, Diagnostics& diags) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    diags.error(
        origin.where,
        "rules.files: cannot use " + quote(path) + ": " + std::system_category().message(errno),
        origin.sourceLine);
  } else if (S_ISDIR(st.st_mode)) {
    diags.error(origin.where,
                "rules.files: " + quote(path) + " is a directory; to load its rule files write " +
                    quote(path + "/*.rules"),
                origin.sourceLine);
  } else if (seen.insert(path).second) {
    out.push_back(path);
  }
}

}  // namespace

std::vector<std::string> expandRuleFiles(const Config& config, rules::Diagnostics& diags) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (std::size_t i = 0; i < config.rules.files.size(); ++i) {
    const std::string& pattern = config.rules.files[i];
    const ValueOrigin origin = i < config.rules.filesOrigin.size()
                                   ? config.rules.filesOrigin[i]
                                   : ValueOrigin{SourceLocation{config.source, 0, 0}, {}};
    if (hasGlobMeta(pattern)) {
      expandOnePattern(pattern, origin, seen, out, diags);
    } else {
      addLiteralFile(unescapeGlob(pattern), origin, seen, out, diags);
    }
  }
  return out;
}

std::optional<std::uint64_t> parseSize(std::string_view text) {
  std::uint64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [p, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || p == text.data()) {
    return std::nullopt;
  }
  const std::string_view suffix(p, static_cast<std::size_t>(end - p));
  static constexpr std::pair<std::string_view, int> kSuffixes[] = {{"", 0},   {"K", 10}, {"k", 10},
                                                                   {"M", 20}, {"m", 20}, {"G", 30},
                                                                   {"g", 30}, {"T", 40}, {"t", 40}};
  const auto it = std::find_if(std::begin(kSuffixes), std::end(kSuffixes),
                               [&](const auto& s) { return s.first == suffix; });
  if (it == std::end(kSuffixes)) {
    return std::nullopt;
  }
  const int shift = it->second;
  if (value > (std::numeric_limits<std::uint64_t>::max() >> shift)) {
    return std::nullopt;
  }
  return value << shift;
}

std::optional<std::chrono::milliseconds> parseDuration(std::string_view text) {
  struct Unit {
    std::string_view name;
    std::int64_t millis;
  };
  static constexpr Unit kUnits[] = {
      {"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}};
  std::int64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [p, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || p == text.data() || value < 0) {
    return std::nullopt;
  }
  const std::string_view unit(p, static_cast<std::size_t>(end - p));
  for (const auto& u : kUnits) {
    if (u.name == unit) {
      if (value > std::numeric_limits<std::int64_t>::max() / u.millis) {
        return std::nullopt;
      }
      return std::chrono::milliseconds(value * u.millis);
    }
  }
  return std::nullopt;
}

std::optional<HostPort> parseHostPort(std::string_view text, std::string& error) {
  if (text.empty()) {
    error = "empty address";
    return std::nullopt;
  }
  std::string_view host;
  std::string_view port;
  if (text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) {
      error = "missing ']' after the IPv6 address";
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      error = "missing port (use [IPV6]:PORT)";
      return std::nullopt;
    }
    port = rest.substr(1);
    if (!isIpv6(host)) {
      error = "bad IPv6 address '" + std::string(host) + "'";
      return std::nullopt;
    }
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      error = "missing port (use HOST:PORT)";
      return std::nullopt;
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      error = "an IPv6 address needs brackets, like [::1]:25";
      return std::nullopt;
    }
    if (!checkHost(host, error)) {
      return std::nullopt;
    }
  }
  const auto portNumber = parsePort(port, error);
  if (!portNumber) {
    return std::nullopt;
  }
  return HostPort{std::string(host), *portNumber};
}

std::optional<BackendAddress> parseBackendAddress(std::string_view text, std::string& error) {
  BackendAddress out;
  if (text.starts_with("lmtp:")) {
    out.protocol = BackendAddress::Protocol::Lmtp;
    out.unixPath = std::string(text.substr(5));
    if (!checkAbsolutePath(out.unixPath, error)) {
      error = "lmtp: needs an absolute unix socket path, like lmtp:/run/dovecot/lmtp";
      return std::nullopt;
    }
    return out;
  }
  if (text.starts_with("smtp:")) {
    text.remove_prefix(5);
  }
  auto hp = parseHostPort(text, error);
  if (!hp) {
    return std::nullopt;
  }
  out.tcp = std::move(*hp);
  return out;
}

namespace {

// libmilter's "PORT@HOST" (no brackets around IPv6 hosts).
std::optional<HostPort> parsePortAtHost(std::string_view text, bool inet6, std::string& error) {
  const auto at = text.find('@');
  if (at == std::string_view::npos) {
    error = inet6 ? "missing @HOST (use inet6:PORT@HOST)" : "missing @HOST (use inet:PORT@HOST)";
    return std::nullopt;
  }
  const auto port = parsePort(text.substr(0, at), error);
  if (!port) {
    return std::nullopt;
  }
  const std::string_view host = text.substr(at + 1);
  if (inet6) {
    if (!isIpv6(host) && !isDnsName(host)) {
      error = "bad IPv6 address or host name '" + std::string(host) + "' (no brackets)";
      return std::nullopt;
    }
  } else if (host.find(':') != std::string_view::npos) {
    error = "an IPv6 address needs inet6:PORT@HOST";
    return std::nullopt;
  } else if (!checkHost(host, error)) {
    return std::nullopt;
  }
  return HostPort{std::string(host), *port};
}

}  // namespace

std::optional<MilterSocket> parseMilterSocket(std::string_view text, std::string& error) {
  MilterSocket out;
  if (text.starts_with("unix:")) {
    out.family = MilterSocket::Family::Unix;
    out.unixPath = std::string(text.substr(5));
    if (!checkAbsolutePath(out.unixPath, error)) {
      return std::nullopt;
    }
    return out;
  }
  const bool inet6 = text.starts_with("inet6:");
  if (!inet6 && !text.starts_with("inet:")) {
    error = "use inet:PORT@HOST, inet6:PORT@HOST or unix:/path";
    return std::nullopt;
  }
  out.family = inet6 ? MilterSocket::Family::Inet6 : MilterSocket::Family::Inet;
  auto hp = parsePortAtHost(text.substr(inet6 ? 6 : 5), inet6, error);
  if (!hp) {
    return std::nullopt;
  }
  out.tcp = std::move(*hp);
  return out;
}

}  // namespace smtpgate::policies
