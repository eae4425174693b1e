#pragma once
/// Config — smtpgate.toml: parsing, checking, defaults, rule file globs.
///
/// `parseConfig()` turns TOML text into a `Config`, checking every section and
/// key against one table of known keys. It reports ALL problems of a file, each
/// as `file:line:col: error: message` with the source line for a caret:
/// unknown sections and keys (with the list of known ones, against typos),
/// wrong value types, bad sizes and durations, bad addresses, and settings
/// that need each other (`tls_certificate` without `tls_key`, `proxy_protocol`
/// without `trusted_proxies`). Counts and durations are range-checked, so the
/// proxy never sees a zero timeout or a limit that cannot work. A TOML syntax
/// error stops the parse at that point, so it is reported alone. The result is
/// nullopt if there was any error; warnings do not fail a load.
///
/// Path resolution: relative paths in `rules.files` and `log.decisions`
/// resolve against the directory of the config file (for the embedded default
/// and a relative config path: the current directory at load time). The
/// stored paths are absolute, so a later chdir() changes nothing. The entries
/// of `rules.files` are glob(3) patterns: when the base directory contains
/// glob characters they are escaped with backslashes; `expandRuleFiles()`
/// turns the patterns into files.
///
/// Address syntax (one parser each, shared by the proxy, milter and CLI):
///   listen, metrics   HOST:PORT or [IPV6]:PORT, port 1-65535
///   backend           HOST:PORT or smtp:HOST:PORT (lmtp:/path.sock is parsed, then refused)
///   milter socket     inet:PORT@HOST, inet6:PORT@HOST, unix:/absolute/path
///   dns servers       IP or IP:PORT or [IPV6]:PORT (an address, not a name)
/// HOST is an IPv4 address, a bracketed IPv6 address, or a DNS name.
///
/// Thread-safety: all functions are reentrant; none keeps state. A `Config`
/// is a plain value, built once at startup or reload and then read-only.
///
/// Limits: the file is read whole; there is no size limit beyond memory, as
/// the admin, not the network, writes it.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/diagnostic.h"

namespace smtpgate::policies {

enum class RulesMode { Enforce, DryRun };

/// Where a config value was written, for problems found after parsing (a rule
/// file that doesn't exist), so they too point at `file:line:col`.
struct ValueOrigin {
  rules::SourceLocation where;
  std::string sourceLine;
};

/// What the proxy does with a bare LF or bare CR in DATA (proxy::BareLinePolicy).
enum class BareNewlines { Reject, Normalize };

/// TLS from the proxy to its backend (proxy::BackendTls), by the names of
/// Postfix's smtp_tls_security_level.
enum class BackendTlsLevel { None, May, Encrypt, Verify };

struct ProxyConfig {
  std::vector<std::string> listen{"127.0.0.1:2525"};
  std::string backend{"127.0.0.1:25"};
  bool xclient = true;
  std::string hostname;  ///< default: gethostname()
  std::uint64_t maxMessageSize = 50ull << 20;
  /// The message's header section, up to the line that ends it [none: Postfix
  /// cuts each header at header_size_limit = 102400; Exim's header_maxsize = 1M].
  std::uint64_t maxHeaderSize = 1ull << 20;
  std::string tlsCertificate, tlsKey;
  BackendTlsLevel backendTls = BackendTlsLevel::None;  ///< [smtp_tls_security_level]
  std::string backendTlsCaFile;  ///< "verify": trusted CAs; empty: the system's [smtp_tls_CAfile]

  // Limits and timeouts. The defaults are those of proxy/limits.h and
  // proxy::ProxySettings (policies/ cannot include proxy/; a test in
  // tests/proxy checks that the two agree). Postfix equivalents in brackets.
  std::size_t maxRecipients = 1000;      ///< [smtpd_recipient_limit = 1000]
  std::size_t maxErrors = 20;            ///< [smtpd_hard_error_limit = 20]
  std::size_t maxConnections = 1000;     ///< [default_process_limit = 100]
  std::size_t maxConnectionsPerIp = 50;  ///< [smtpd_client_connection_count_limit = 50]
  std::size_t maxLineLength = 2048;      ///< command text, CRLF not counted [line_length_limit]
  BareNewlines bareNewlines = BareNewlines::Reject;  ///< [smtpd_forbid_bare_newline]
  unsigned threads = 0;                              ///< I/O threads; 0 = one per core
  /// Idle time while a command is due [smtpd_timeout = 300s].
  std::chrono::milliseconds commandTimeout = std::chrono::seconds(300);
  /// The whole message after 354 [none: smtpd_timeout is per read].
  std::chrono::milliseconds dataTimeout = std::chrono::minutes(10);
  /// Age at which a session is closed with 421 [none].
  std::chrono::milliseconds sessionLifetime = std::chrono::hours(1);
  /// Time open sessions get to finish after SIGTERM [none].
  std::chrono::milliseconds shutdownGrace = std::chrono::seconds(30);
  /// [smtp_connect_timeout = 30s]
  std::chrono::milliseconds backendConnectTimeout = std::chrono::seconds(30);
  /// Each backend reply but the one after the message [smtp_mail_timeout = 300s, ...].
  std::chrono::milliseconds backendTimeout = std::chrono::seconds(300);
  /// Backend connections kept open between client sessions for reuse; 0:
  /// none [the SMTP client's connection cache; smtpd processes it holds].
  std::size_t backendIdleConnections = 100;
  /// How long a kept connection waits for a session [smtp_connection_cache_time_limit = 2s].
  std::chrono::milliseconds backendIdleTime = std::chrono::seconds(2);
  /// Age after which a connection is no longer kept [smtp_connection_reuse_time_limit = 300s].
  std::chrono::milliseconds backendReuseTime = std::chrono::seconds(300);
  /// After STARTTLS [smtpd_starttls_timeout = 300s; 10s under stress].
  std::chrono::milliseconds tlsHandshakeTimeout = std::chrono::seconds(10);
  /// Read a PROXY protocol header first on every listener, from peers in
  /// trustedProxies only [smtpd_upstream_proxy_protocol = haproxy].
  bool proxyProtocol = false;
  std::vector<std::string> trustedProxies;  ///< CIDRs, as written; checked with CidrList
};

struct MilterConfig {
  std::string socket{"inet:8891@127.0.0.1"};
};

struct DnsConfig {
  std::vector<std::string> servers;  ///< empty: /etc/resolv.conf
  std::chrono::milliseconds timeout{5000};
};

/// What a stage answers when a DNS lookup a rule needed failed (timeout,
/// SERVFAIL) and no rule decided: `Tempfail` (default) answers 451 4.4.3 so
/// the client retries; `Rules` leaves it to rules such as
/// `spf == temperror` (issue 4, point 8). Never accept-by-accident, never 5xx.
enum class DnsFailureMode { Tempfail, Rules };

struct FailureConfig {
  DnsFailureMode dns = DnsFailureMode::Tempfail;
};

/// [dkim]: how DKIM signatures are verified (policies/dkim.h).
struct DkimConfig {
  std::size_t maxSignatures = 5;  ///< signatures checked per message, in order; the rest ignored
};

/// [auth]: the Authentication-Results header (RFC 8601).
struct AuthConfig {
  std::string authservId;  ///< empty: proxy.hostname, else the system's host name
};

/// [headers]: header fields added to the messages let through.
struct HeadersConfig {
  /// X-Spam-Score and X-Spam-Rules (the transaction's score and the score
  /// rules that added to it); incoming ones are removed.
  bool spamScore = false;
};

struct RulesConfig {
  std::vector<std::string> files;  ///< absolute glob(3) patterns, in file order
  RulesMode mode = RulesMode::Enforce;
  /// Reload when the config, a rule or a list file changes (inotify), as on
  /// SIGHUP (proxy) / SIGUSR2 (milter).
  bool watch = true;
  std::vector<ValueOrigin> filesOrigin;  ///< parallel to `files` when parsed; may be empty
};

struct LogConfig {
  std::string decisions{"smtpgate-decisions.jsonl"};  ///< absolute after parsing
};

struct MetricsConfig {
  std::string listen;  ///< empty: no metrics endpoint
};

struct Config {
  ProxyConfig proxy;
  MilterConfig milter;
  DnsConfig dns;
  FailureConfig failure;
  DkimConfig dkim;
  AuthConfig auth;
  HeadersConfig headers;
  RulesConfig rules;
  LogConfig log;
  MetricsConfig metrics;
  std::string source;  ///< path of the file, or kEmbeddedConfigName
};

/// `Config::source` and diagnostics file name of the embedded default.
inline constexpr std::string_view kEmbeddedConfigName = "(embedded default)";
/// The config used when no -c is given, if it exists.
inline constexpr std::string_view kSystemConfigPath = "/etc/smtpgate/smtpgate.toml";

/// Parses TOML text; `sourceName` is used in diagnostics and to resolve
/// relative paths (relative to its directory; for kEmbeddedConfigName, the
/// current directory). Nullopt if any error was reported into `diags`.
std::optional<Config> parseConfig(std::string_view text, const std::string& sourceName,
                                  rules::Diagnostics& diags);

/// Reads and parses `path`. A missing or unreadable file is one clear error.
std::optional<Config> loadConfig(const std::string& path, rules::Diagnostics& diags);

/// The TOML text of the embedded default: listen 127.0.0.1:2525, backend
/// 127.0.0.1:25, no rule files, log "smtpgate-decisions.jsonl" in the current
/// directory.
std::string_view embeddedDefaultConfig();

/// The config an admin gets with no -c: `systemPath` if it exists, else the
/// embedded default. (The parameter exists for tests.)
std::optional<Config> loadDefaultConfig(
    rules::Diagnostics& diags, const std::string& systemPath = std::string(kSystemConfigPath));

/// Expands the `rules.files` patterns with glob(3): matches of one pattern
/// sorted bytewise, patterns in order, a file matched twice kept once. A
/// literal path (no * ? [) that doesn't exist or is a directory is an error;
/// a glob matching nothing is a warning.
std::vector<std::string> expandRuleFiles(const Config& config, rules::Diagnostics& diags);

/// "50M", "512K", "1G", "2T", "1000": bytes with binary multiples (K = 1024),
/// suffix case-insensitive. Nullopt on bad syntax or overflow.
std::optional<std::uint64_t> parseSize(std::string_view text);

/// "300ms", "5s", "2m", "1h", "1d": one number and one unit. A bare number is
/// rejected (seconds or milliseconds? the admin must say). Nullopt on bad
/// syntax or overflow.
std::optional<std::chrono::milliseconds> parseDuration(std::string_view text);

/// HOST:PORT with the host unbracketed (an IPv6 address without [ ]).
struct HostPort {
  std::string host;
  std::uint16_t port = 0;

  friend bool operator==(const HostPort&, const HostPort&) = default;
};

/// Parses HOST:PORT or [IPV6]:PORT, port 1-65535. On failure sets `error` to a
/// short reason (without the input) and returns nullopt.
std::optional<HostPort> parseHostPort(std::string_view text, std::string& error);

struct BackendAddress {
  enum class Protocol { Smtp, Lmtp };
  Protocol protocol = Protocol::Smtp;
  HostPort tcp;          ///< set for SMTP
  std::string unixPath;  ///< set for LMTP (always a unix socket)
};

/// Parses `HOST:PORT`, `smtp:HOST:PORT` or `lmtp:/path.sock`.
std::optional<BackendAddress> parseBackendAddress(std::string_view text, std::string& error);

struct MilterSocket {
  enum class Family { Inet, Inet6, Unix };
  Family family = Family::Inet;
  HostPort tcp;          ///< for Inet and Inet6
  std::string unixPath;  ///< for Unix
};

/// Parses libmilter's `inet:PORT@HOST`, `inet6:PORT@HOST` or `unix:/path`.
std::optional<MilterSocket> parseMilterSocket(std::string_view text, std::string& error);

}  // namespace smtpgate::policies
