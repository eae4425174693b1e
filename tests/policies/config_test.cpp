#include "policies/config.h"

#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace smtpgate::policies {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "config_test.XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void writeFile(const fs::path& p, std::string_view text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

std::string allMessages(const rules::Diagnostics& diags) {
  return rules::format(diags);
}

// The example of DESIGN.md "Configuration", kept verbatim.
constexpr std::string_view kDesignExample = R"([proxy]
listen  = ["0.0.0.0:25", "[::]:25"]
backend = "127.0.0.1:10025"      # or smtp:HOST:PORT
xclient = true                    # tell Postfix the real client (smtpd_authorized_xclient_hosts)
hostname = "mx.example.com"
max_message_size = "50M"
tls_certificate = "/etc/ssl/certs/mx.pem"
tls_key = "/etc/ssl/private/mx.key"

[milter]
socket = "inet:8891@127.0.0.1"

[dns]
servers = []                      # empty: /etc/resolv.conf; tests use ["127.0.0.1:5353"]
timeout = "5s"

[rules]
files = ["/etc/smtpgate/rules/*.rules"]
mode  = "enforce"                 # or "dry-run": decide and log, never refuse

[log]
decisions = "/var/log/smtpgate/decisions.jsonl"

[metrics]
listen = "127.0.0.1:9425"         # Prometheus text format
)";

TEST_CASE("config: the embedded default parses with no diagnostics", "[config]") {
  rules::Diagnostics diags;
  auto cfg = parseConfig(embeddedDefaultConfig(), std::string(kEmbeddedConfigName), diags);
  INFO(allMessages(diags));
  REQUIRE(cfg);
  CHECK(diags.empty());
  CHECK(cfg->source == kEmbeddedConfigName);
  CHECK(cfg->proxy.listen == std::vector<std::string>{"127.0.0.1:2525"});
  CHECK(cfg->proxy.backend == "127.0.0.1:25");
  CHECK(cfg->proxy.maxMessageSize == 50ull << 20);
  CHECK_FALSE(cfg->proxy.hostname.empty());  // gethostname()
  CHECK(cfg->milter.socket == "inet:8891@127.0.0.1");
  CHECK(cfg->rules.files.empty());
  CHECK(cfg->rules.mode == RulesMode::Enforce);
  CHECK(cfg->dns.timeout == 5s);
  CHECK(cfg->log.decisions == (fs::current_path() / "smtpgate-decisions.jsonl").string());
  CHECK(cfg->metrics.listen.empty());
}

TEST_CASE("config: the DESIGN.md example parses", "[config]") {
  rules::Diagnostics diags;
  auto cfg = parseConfig(kDesignExample, "/etc/smtpgate/smtpgate.toml", diags);
  INFO(allMessages(diags));
  REQUIRE(cfg);
  CHECK(diags.empty());
  CHECK(cfg->proxy.listen == std::vector<std::string>{"0.0.0.0:25", "[::]:25"});
  CHECK(cfg->proxy.backend == "127.0.0.1:10025");
  CHECK(cfg->proxy.hostname == "mx.example.com");
  CHECK(cfg->proxy.tlsCertificate == "/etc/ssl/certs/mx.pem");
  CHECK(cfg->proxy.tlsKey == "/etc/ssl/private/mx.key");
  CHECK(cfg->rules.files == std::vector<std::string>{"/etc/smtpgate/rules/*.rules"});
  CHECK(cfg->log.decisions == "/var/log/smtpgate/decisions.jsonl");
  CHECK(cfg->metrics.listen == "127.0.0.1:9425");
}

// CI has ../shared beside the clone; keep the design's example honest there.
TEST_CASE("config: the example in ../shared/DESIGN.md itself parses", "[config]") {
  std::ifstream in(fs::path(SMTPGATE_SOURCE_DIR) / ".." / "shared" / "DESIGN.md");
  if (!in) {
    WARN("../shared/DESIGN.md not found; skipped");
    return;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  const auto section = doc.find("## Configuration");
  REQUIRE(section != std::string::npos);
  const auto begin = doc.find("```toml\n", section);
  REQUIRE(begin != std::string::npos);
  const auto end = doc.find("```", begin + 8);
  REQUIRE(end != std::string::npos);
  rules::Diagnostics diags;
  CHECK(parseConfig(doc.substr(begin + 8, end - begin - 8), "DESIGN.md", diags));
  INFO(allMessages(diags));
  CHECK(diags.empty());
}

/// One bad config: exactly one error, at line:column, containing `fragment`.
struct ErrorRow {
  std::string text;
  int line;
  int column;
  std::string fragment;
};

void checkOneError(const ErrorRow& row) {
  CAPTURE(row.text);
  rules::Diagnostics diags;
  CHECK_FALSE(parseConfig(row.text, "/etc/smtpgate/smtpgate.toml", diags));
  INFO(allMessages(diags));
  REQUIRE(diags.errorCount() == 1);
  const auto& d = diags.items().front();
  CHECK(d.where.file == "/etc/smtpgate/smtpgate.toml");
  CHECK(d.where.line == row.line);
  CHECK(d.where.column == row.column);
  CHECK_THAT(d.message, Catch::Contains(row.fragment));
  // The source line is attached so lint can draw a caret under the column.
  std::vector<std::string> lines;
  std::istringstream in(row.text);
  for (std::string l; std::getline(in, l);) {
    lines.push_back(l);
  }
  REQUIRE(row.line <= static_cast<int>(lines.size()));
  CHECK(d.sourceLine == lines[row.line - 1]);
}

TEST_CASE("config: each bad input is reported at file:line:col", "[config]") {
  using Row = ErrorRow;
  const Row rows[] = {
      {"[proxy]\nlistn = [\"127.0.0.1:25\"]\n", 2, 1,
       "unknown key 'listn' in [proxy]; known keys: listen, backend, xclient, hostname, "
       "max_message_size, max_header_size, tls_certificate, tls_key, backend_tls, "
       "backend_tls_ca_file, "
       "max_recipients, max_errors, "
       "command_timeout, data_timeout, session_lifetime, max_connections, "
       "max_connections_per_ip, max_line_length, bare_newlines, shutdown_grace, "
       "backend_connect_timeout, backend_timeout, backend_idle_connections, "
       "backend_idle_time, backend_reuse_time, threads, proxy_protocol, trusted_proxies, "
       "tls_handshake_timeout"},
      {"[prxy]\n", 1, 2, "unknown section [prxy]; known sections: proxy, milter, dns, rules"},
      {"listen = \"127.0.0.1:25\"\n", 1, 1, "unknown key 'listen' outside any section"},
      {"proxy = 5\n", 1, 9, "'proxy' must be a section [proxy], got an integer"},
      {"[[proxy]]\nlisten = []\n", 1, 1, "'proxy' must be a section [proxy], got an array"},
      {"[proxy.tls]\ncert = \"x\"\n", 1, 8, "unknown key 'tls' in [proxy]"},
      {"[proxy]\nxclient = \"yes\"\n", 2, 11, "proxy.xclient: expected a boolean"},
      {"[proxy]\nlisten = 25\n", 2, 10,
       "proxy.listen: expected an array of strings, got an integer"},
      {"[proxy]\nlisten = [\"127.0.0.1:25\", 26]\n", 2, 27,
       "proxy.listen element: expected a string, got an integer"},
      {"[proxy]\nlisten = []\n", 2, 10, "proxy.listen: must list at least one address"},
      {"[proxy]\nlisten = [\"0.0.0.0\"]\n", 2, 11, "bad address \"0.0.0.0\": missing port"},
      {"[proxy]\nlisten = [\"::1:25\"]\n", 2, 11, "needs brackets, like [::1]:25"},
      {"[proxy]\nlisten = [\"127.0.0.1:0\"]\n", 2, 11, "bad port '0' (must be 1-65535)"},
      {"[proxy]\nlisten = [\"127.0.0.1:65536\"]\n", 2, 11, "bad port '65536'"},
      {"[proxy]\nlisten = [\"127.0.0.1:smtp\"]\n", 2, 11, "bad port 'smtp'"},
      {"[proxy]\nlisten = [\"[::1]:25\", \"[fe80::zz]:25\"]\n", 2, 23,
       "bad IPv6 address 'fe80::zz'"},
      {"[proxy]\nlisten = [\"[::1]25\"]\n", 2, 11, "missing port (use [IPV6]:PORT)"},
      {"[proxy]\nlisten = [\"300.1.2.3:25\"]\n", 2, 11, "bad IPv4 address '300.1.2.3'"},
      {"[proxy]\nbackend = \"lmtp:dovecot.sock\"\n", 2, 11, "lmtp: needs an absolute"},
      {"[proxy]\nbackend = \"lmtp:/run/dovecot/lmtp\"\n", 2, 11, "LMTP backends are not supported"},
      {"[proxy]\nbackend = \"smtp:mail.example.com\"\n", 2, 11, "missing port"},
      {"[proxy]\nbackend = \"bad_host:25\"\n", 2, 11, "bad host name 'bad_host'"},
      {"[proxy]\nhostname = \"mx example.com\"\n", 2, 12, "is not a host name"},
      {"[proxy]\nmax_message_size = \"50MB\"\n", 2, 20, "bad size \"50MB\""},
      {"[proxy]\nmax_message_size = 0\n", 2, 20, "bad size 0"},
      {"[proxy]\nmax_message_size = -5\n", 2, 20, "bad size -5"},
      {"[proxy]\nmax_message_size = true\n", 2, 20, "expected a size like \"50M\""},
      {"[proxy]\nmax_header_size = \"1Q\"\n", 2, 19, "proxy.max_header_size: bad size \"1Q\""},
      {"[proxy]\ntls_certificate = \"/etc/ssl/mx.pem\"\n", 2, 19,
       "proxy.tls_certificate is set but proxy.tls_key is not"},
      {"[proxy]\ntls_key = \"/etc/ssl/mx.key\"\n", 2, 11,
       "proxy.tls_key is set but proxy.tls_certificate is not"},
      {"[milter]\nsocket = \"inet:8891\"\n", 2, 10, "missing @HOST (use inet:PORT@HOST)"},
      {"[milter]\nsocket = \"inet:99999@127.0.0.1\"\n", 2, 10, "bad port '99999'"},
      {"[milter]\nsocket = \"inet:8891@::1\"\n", 2, 10, "needs inet6:PORT@HOST"},
      {"[milter]\nsocket = \"inet6:8891@[::1]\"\n", 2, 10, "(no brackets)"},
      {"[milter]\nsocket = \"unix:milter.sock\"\n", 2, 10, "must be absolute"},
      {"[milter]\nsocket = \"tcp:8891@localhost\"\n", 2, 10,
       "use inet:PORT@HOST, inet6:PORT@HOST or unix:/path"},
      {"[dns]\ntimeout = \"5\"\n", 2, 11, "dns.timeout: bad duration \"5\""},
      {"[dns]\ntimeout = \"0s\"\n", 2, 11, "dns.timeout: bad duration \"0s\""},
      {"[dns]\ntimeout = 5\n", 2, 11, "expected a duration string like \"5s\", got an integer"},
      {"[dns]\nservers = [\"ns1.example.com\"]\n", 2, 12, "must be an IP address"},
      {"[dns]\nservers = [\"127.0.0.1:99999\"]\n", 2, 12, "bad port '99999'"},
      {"[rules]\nmode = \"dryrun\"\n", 2, 8,
       "rules.mode: must be \"enforce\" or \"dry-run\", got \"dryrun\""},
      {"[rules]\nfiles = [\"\"]\n", 2, 10, "rules.files: empty path"},
      {"[log]\ndecisions = \"\"\n", 2, 13, "log.decisions: empty path"},
      {"[log]\ndecisions = [\"a\"]\n", 2, 13, "log.decisions: expected a string, got an array"},
      {"[metrics]\nlisten = \"9425\"\n", 2, 10, "missing port (use HOST:PORT)"},
      {"[proxy\nlisten = []\n", 1, 7, "TOML syntax error"},
      {"[proxy]\nxclient = yes\n", 2, 11, "TOML syntax error"},
      {"[proxy]\nxclient = true\nxclient = false\n", 3, 11, "cannot redefine existing"},
      // Columns count bytes, not characters: "é" is two bytes.
      {"log = { decisions = \"/var/log/é.jsonl\", decisionz = 1 }\n", 1, 42,
       "unknown key 'decisionz' in [log]"},
  };
  for (const auto& row : rows) {
    checkOneError(row);
  }
}

TEST_CASE("config: proxy limits and timeouts default to Postfix-like values", "[config]") {
  rules::Diagnostics diags;
  auto cfg = parseConfig("[proxy]\n", "/etc/smtpgate/smtpgate.toml", diags);
  INFO(allMessages(diags));
  REQUIRE(cfg);
  CHECK(diags.empty());
  const ProxyConfig& p = cfg->proxy;
  CHECK(p.maxRecipients == 1000);
  CHECK(p.maxErrors == 20);
  CHECK(p.commandTimeout == 300s);
  CHECK(p.dataTimeout == 10min);
  CHECK(p.sessionLifetime == 1h);
  CHECK(p.maxConnections == 1000);
  CHECK(p.maxConnectionsPerIp == 50);
  CHECK(p.maxLineLength == 2048);
  CHECK(p.bareNewlines == BareNewlines::Reject);
  CHECK(p.shutdownGrace == 30s);
  CHECK(p.backendConnectTimeout == 30s);
  CHECK(p.backendTimeout == 300s);
  CHECK(p.threads == 0);
  CHECK_FALSE(p.proxyProtocol);
  CHECK(p.trustedProxies.empty());
  CHECK(p.tlsHandshakeTimeout == 10s);
  CHECK(p.backendIdleConnections == 100);
  CHECK(p.backendIdleTime == 2s);
  CHECK(p.backendReuseTime == 300s);
  // The embedded default leaves them all out, so it gets the same values.
  auto embedded = parseConfig(embeddedDefaultConfig(), std::string(kEmbeddedConfigName), diags);
  REQUIRE(embedded);
  CHECK(embedded->proxy.commandTimeout == 300s);
  CHECK_FALSE(embedded->proxy.proxyProtocol);
}

TEST_CASE("config: proxy limits and timeouts take good values", "[config]") {
  const std::string text = R"([proxy]
max_recipients = 100
max_errors = 1
command_timeout = "1500ms"
data_timeout = "20m"
session_lifetime = "1d"
max_connections = 5000
max_connections_per_ip = 5000
max_line_length = 512
bare_newlines = "normalize"
shutdown_grace = "0100s"
backend_connect_timeout = "5s"
backend_timeout = "2m"
threads = 4
proxy_protocol = true
trusted_proxies = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"]
tls_handshake_timeout = "30s"
backend_idle_connections = 0
backend_idle_time = "500ms"
backend_reuse_time = "1h"
)";
  rules::Diagnostics diags;
  auto cfg = parseConfig(text, "/etc/smtpgate/smtpgate.toml", diags);
  INFO(allMessages(diags));
  REQUIRE(cfg);
  CHECK(diags.empty());
  const ProxyConfig& p = cfg->proxy;
  CHECK(p.maxRecipients == 100);
  CHECK(p.maxErrors == 1);
  CHECK(p.commandTimeout == 1500ms);
  CHECK(p.dataTimeout == 20min);
  CHECK(p.sessionLifetime == 24h);
  CHECK(p.maxConnections == 5000);
  CHECK(p.maxConnectionsPerIp == 5000);
  CHECK(p.maxLineLength == 512);
  CHECK(p.bareNewlines == BareNewlines::Normalize);
  CHECK(p.shutdownGrace == 100s);
  CHECK(p.backendConnectTimeout == 5s);
  CHECK(p.backendTimeout == 2min);
  CHECK(p.threads == 4);
  CHECK(p.proxyProtocol);
  CHECK(p.trustedProxies ==
        std::vector<std::string>{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"});
  CHECK(p.tlsHandshakeTimeout == 30s);
  CHECK(p.backendIdleConnections == 0);
  CHECK(p.backendIdleTime == 500ms);
  CHECK(p.backendReuseTime == 1h);

  // The upper ends of the ranges, and a single string as a one-element list.
  auto top = parseConfig(
      "[proxy]\nmax_recipients = 100000\nmax_errors = 10000\nmax_connections = 1000000\n"
      "max_line_length = 1048576\nthreads = 1024\nbare_newlines = \"reject\"\n"
      "trusted_proxies = \"0.0.0.0/0\"\nproxy_protocol = true\n",
      "smtpgate.toml", diags);
  INFO(allMessages(diags));
  REQUIRE(top);
  CHECK(top->proxy.maxRecipients == 100000);
  CHECK(top->proxy.maxLineLength == 1048576);
  CHECK(top->proxy.threads == 1024);
  CHECK(top->proxy.trustedProxies == std::vector<std::string>{"0.0.0.0/0"});
}

TEST_CASE("config: bad proxy limits and timeouts are reported at file:line:col", "[config]") {
  const ErrorRow rows[] = {
      {"[proxy]\nmax_recipients = 0\n", 2, 18,
       "proxy.max_recipients: 0 is out of range; use a whole number from 1 to 100000"},
      {"[proxy]\nmax_recipients = 100001\n", 2, 18, "out of range"},
      {"[proxy]\nmax_recipients = \"1000\"\n", 2, 18,
       "proxy.max_recipients: expected a whole number, got a string"},
      {"[proxy]\nmax_recipients = 1.5\n", 2, 18, "expected a whole number"},
      {"[proxy]\nmax_errors = -1\n", 2, 14, "proxy.max_errors: -1 is out of range"},
      {"[proxy]\nmax_connections = 0\n", 2, 19, "proxy.max_connections: 0 is out of range"},
      {"[proxy]\nmax_connections_per_ip = 0\n", 2, 26,
       "proxy.max_connections_per_ip: 0 is out of range; use a whole number from 1 to 1000000"},
      {"[proxy]\nmax_line_length = 511\n", 2, 19,
       "proxy.max_line_length: 511 is out of range; use a whole number from 512 to 1048576"},
      {"[proxy]\nmax_line_length = 1048577\n", 2, 19, "out of range"},
      {"[proxy]\nmax_line_length = \"2K\"\n", 2, 19, "expected a whole number"},
      {"[proxy]\nthreads = -1\n", 2, 11,
       "proxy.threads: -1 is out of range; use a whole number "
       "from 0 to 1024"},
      {"[proxy]\nthreads = 1025\n", 2, 11, "out of range"},
      {"[proxy]\ncommand_timeout = 300\n", 2, 19,
       "proxy.command_timeout: expected a duration string like \"5s\", got an integer"},
      {"[proxy]\ncommand_timeout = \"300\"\n", 2, 19,
       "proxy.command_timeout: bad duration \"300\"; use a positive number with a unit"},
      {"[proxy]\ncommand_timeout = \"0s\"\n", 2, 19, "bad duration \"0s\""},
      {"[proxy]\ndata_timeout = \"10 m\"\n", 2, 16, "proxy.data_timeout: bad duration"},
      {"[proxy]\nsession_lifetime = \"25h\"\n", 2, 20,
       "proxy.session_lifetime: \"25h\" is too long; at most \"1d\""},
      {"[proxy]\nshutdown_grace = \"-1s\"\n", 2, 18, "proxy.shutdown_grace: bad duration"},
      {"[proxy]\nbackend_connect_timeout = \"2d\"\n", 2, 27,
       "proxy.backend_connect_timeout: \"2d\" is too long"},
      {"[proxy]\nbackend_timeout = \"5min\"\n", 2, 19, "proxy.backend_timeout: bad duration"},
      {"[proxy]\nbackend_idle_connections = -1\n", 2, 28,
       "proxy.backend_idle_connections: -1 is out of range; use a whole number from 0 to 100000"},
      {"[proxy]\nbackend_idle_time = \"0s\"\n", 2, 21, "proxy.backend_idle_time: bad duration"},
      {"[proxy]\nbackend_reuse_time = 300\n", 2, 22,
       "proxy.backend_reuse_time: expected a duration string"},
      {"[proxy]\ntls_handshake_timeout = true\n", 2, 25,
       "proxy.tls_handshake_timeout: expected a duration string"},
      {"[proxy]\nbare_newlines = \"accept\"\n", 2, 17,
       "proxy.bare_newlines: must be \"reject\" or \"normalize\", got \"accept\""},
      {"[proxy]\nbare_newlines = \"Reject\"\n", 2, 17, "got \"Reject\""},
      {"[proxy]\nbackend_tls = \"secure\"\n", 2, 15,
       "proxy.backend_tls: must be \"none\", \"may\", \"encrypt\" or \"verify\", got \"secure\""},
      {"[proxy]\nbackend_tls = true\n", 2, 15, "proxy.backend_tls: expected a string"},
      {"[proxy]\nproxy_protocol = \"yes\"\n", 2, 18,
       "proxy.proxy_protocol: expected a boolean (true or false), got a string"},
      // PROXY headers only from listed peers: the list is required.
      {"[proxy]\nproxy_protocol = true\n", 2, 18,
       "proxy.proxy_protocol = true needs proxy.trusted_proxies"},
      {"[proxy]\nproxy_protocol = true\ntrusted_proxies = []\n", 2, 18,
       "needs proxy.trusted_proxies"},
      // Every CIDR is checked, each at its own column.
      {"[proxy]\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n", 3,
       34,
       "proxy.trusted_proxies: prefix length /33 in \"10.0.0.0/33\" is too long: IPv4 prefixes "
       "are 0-32"},
      {"[proxy]\nproxy_protocol = true\ntrusted_proxies = [\"lb.example.com\"]\n", 3, 20,
       "proxy.trusted_proxies: not an IP address or network: \"lb.example.com\""},
      {"[proxy]\nproxy_protocol = true\ntrusted_proxies = [\"2001:db8::/129\"]\n", 3, 20,
       "IPv6 prefixes are 0-128"},
      {"[proxy]\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/\"]\n", 3, 20,
       "bad prefix length"},
      {"[proxy]\nproxy_protocol = true\ntrusted_proxies = [\"\"]\n", 3, 20,
       "proxy.trusted_proxies: not an IP address or network"},
      {"[proxy]\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\", 7]\n", 3, 34,
       "proxy.trusted_proxies element: expected a string, got an integer"},
      {"[proxy]\nproxy_protocol = true\ntrusted_proxies = 10\n", 3, 19,
       "proxy.trusted_proxies: expected an array of strings, got an integer"},
  };
  for (const auto& row : rows) {
    checkOneError(row);
  }
}

TEST_CASE("config: trusted_proxies warnings do not fail the load", "[config]") {
  SECTION("host bits set: the network is used, and lint says so") {
    rules::Diagnostics diags;
    auto cfg = parseConfig("[proxy]\nproxy_protocol = true\ntrusted_proxies = [\"10.1.2.3/8\"]\n",
                           "smtpgate.toml", diags);
    REQUIRE(cfg);
    REQUIRE(diags.items().size() == 1);
    const auto& d = diags.items().front();
    CHECK(d.severity == rules::Severity::Warning);
    CHECK(d.where.line == 3);
    CHECK(d.where.column == 20);
    CHECK_THAT(d.message, Catch::Contains("proxy.trusted_proxies: host bits set in 10.1.2.3/8; "
                                          "did you mean 10.0.0.0/8?"));
  }
  SECTION("a list without proxy_protocol has no effect") {
    for (const std::string text :
         {"[proxy]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
          "[proxy]\nproxy_protocol = false\ntrusted_proxies = [\"10.0.0.0/8\"]\n"}) {
      CAPTURE(text);
      rules::Diagnostics diags;
      auto cfg = parseConfig(text, "smtpgate.toml", diags);
      REQUIRE(cfg);
      REQUIRE(diags.items().size() == 1);
      CHECK(diags.items()[0].severity == rules::Severity::Warning);
      CHECK_THAT(diags.items()[0].message,
                 Catch::Contains("has no effect unless proxy.proxy_protocol = true"));
      CHECK(cfg->proxy.trustedProxies == std::vector<std::string>{"10.0.0.0/8"});
    }
  }
  SECTION("an empty list without proxy_protocol is quiet") {
    rules::Diagnostics diags;
    CHECK(parseConfig("[proxy]\ntrusted_proxies = []\n", "smtpgate.toml", diags));
    CHECK(diags.empty());
  }
}

TEST_CASE("config: backend TLS levels and the CA file", "[config]") {
  SECTION("the default is none") {
    rules::Diagnostics diags;
    auto cfg = parseConfig("[proxy]\n", "/etc/smtpgate/smtpgate.toml", diags);
    REQUIRE(cfg);
    CHECK(cfg->proxy.backendTls == BackendTlsLevel::None);
    CHECK(cfg->proxy.backendTlsCaFile.empty());
  }
  SECTION("each level, and a CA file relative to the config") {
    const std::pair<std::string, BackendTlsLevel> levels[] = {{"none", BackendTlsLevel::None},
                                                              {"may", BackendTlsLevel::May},
                                                              {"encrypt", BackendTlsLevel::Encrypt},
                                                              {"verify", BackendTlsLevel::Verify}};
    for (const auto& [name, level] : levels) {
      CAPTURE(name);
      rules::Diagnostics diags;
      auto cfg =
          parseConfig("[proxy]\nbackend_tls = \"" + name + "\"\nbackend_tls_ca_file = \"ca.pem\"\n",
                      "/etc/smtpgate/smtpgate.toml", diags);
      REQUIRE(cfg);
      CHECK(cfg->proxy.backendTls == level);
      CHECK(cfg->proxy.backendTlsCaFile == "/etc/smtpgate/ca.pem");
      // The CA file means something with "verify" only; otherwise lint says so.
      if (level == BackendTlsLevel::Verify) {
        CHECK(diags.empty());
      } else {
        REQUIRE(diags.items().size() == 1);
        CHECK(diags.items()[0].severity == rules::Severity::Warning);
        CHECK(diags.items()[0].where.line == 3);
        CHECK_THAT(diags.items()[0].message,
                   Catch::Contains("proxy.backend_tls_ca_file has no effect unless "
                                   "proxy.backend_tls = \"verify\""));
      }
    }
  }
}

TEST_CASE("config: all errors of a file are reported, in file order", "[config]") {
  const std::string text =
      "[proxy]\n"                       // 1
      "listen = [\"0.0.0.0\"]\n"        // 2
      "backend = 25\n"                  // 3
      "tls_certificate = \"/x.pem\"\n"  // 4
      "\n"                              // 5
      "[dns]\n"                         // 6
      "timeout = \"forever\"\n"         // 7
      "[rules]\n"                       // 8
      "mode = \"Enforce\"\n"            // 9
      "filez = []\n"                    // 10
      "[loggy]\n";                      // 11
  rules::Diagnostics diags;
  CHECK_FALSE(parseConfig(text, "smtpgate.toml", diags));
  INFO(allMessages(diags));
  REQUIRE(diags.errorCount() == 7);
  const int expectedLines[] = {2, 3, 4, 7, 9, 10, 11};
  for (std::size_t i = 0; i < 7; ++i) {
    CHECK(diags.items()[i].where.line == expectedLines[i]);
  }
  CHECK_THAT(rules::format(diags), Catch::Contains("smtpgate.toml:9:8: error: rules.mode"));
  CHECK_THAT(rules::format(diags), Catch::Contains("\n  mode = \"Enforce\"\n         ^\n"));
}

TEST_CASE("config: values and accepted address forms", "[config]") {
  const std::string text = R"(
[proxy]
listen = "[2001:db8::1]:2525"          # a single string is a one-element list
backend = "smtp:mx.example.com:10025"
xclient = false
max_message_size = 1048576
[milter]
socket = "inet6:8891@::1"
[dns]
servers = ["127.0.0.1:5353", "::1", "[::1]:53", "192.0.2.1"]
timeout = "1500ms"
[rules]
mode = "dry-run"
[metrics]
listen = "localhost:9425"
)";
  rules::Diagnostics diags;
  auto cfg = parseConfig(text, "/etc/smtpgate/smtpgate.toml", diags);
  INFO(allMessages(diags));
  REQUIRE(cfg);
  CHECK(diags.empty());
  CHECK(cfg->proxy.listen == std::vector<std::string>{"[2001:db8::1]:2525"});
  CHECK(cfg->proxy.backend == "smtp:mx.example.com:10025");
  CHECK_FALSE(cfg->proxy.xclient);
  CHECK(cfg->proxy.maxMessageSize == 1048576);
  CHECK(cfg->dns.servers.size() == 4);
  CHECK(cfg->dns.timeout == 1500ms);
  CHECK(cfg->rules.mode == RulesMode::DryRun);
  CHECK(cfg->metrics.listen == "localhost:9425");
}

TEST_CASE("config: address parsers return the parts", "[config]") {
  std::string err;
  auto hp = parseHostPort("[::1]:25", err);
  REQUIRE(hp);
  CHECK(hp->host == "::1");
  CHECK(hp->port == 25);
  hp = parseHostPort("mx.example.com:10025", err);
  REQUIRE(hp);
  CHECK(hp->host == "mx.example.com");
  CHECK(hp->port == 10025);

  auto b = parseBackendAddress("smtp:127.0.0.1:10025", err);
  REQUIRE(b);
  CHECK(b->protocol == BackendAddress::Protocol::Smtp);
  CHECK(b->tcp.host == "127.0.0.1");
  CHECK(b->tcp.port == 10025);
  b = parseBackendAddress("lmtp:/run/lmtp.sock", err);
  REQUIRE(b);
  CHECK(b->protocol == BackendAddress::Protocol::Lmtp);
  CHECK(b->unixPath == "/run/lmtp.sock");

  auto m = parseMilterSocket("inet:8891@127.0.0.1", err);
  REQUIRE(m);
  CHECK(m->family == MilterSocket::Family::Inet);
  CHECK(m->tcp.port == 8891);
  m = parseMilterSocket("inet6:8891@::1", err);
  REQUIRE(m);
  CHECK(m->family == MilterSocket::Family::Inet6);
  CHECK(m->tcp.host == "::1");
  m = parseMilterSocket("unix:/run/smtpgate/milter.sock", err);
  REQUIRE(m);
  CHECK(m->family == MilterSocket::Family::Unix);
  CHECK(m->unixPath == "/run/smtpgate/milter.sock");
}

TEST_CASE("config: relative paths resolve against the config file's directory", "[config]") {
  const std::string text = R"(
[rules]
files = ["rules/*.rules", "/abs/x.rules", "../shared.rules", "./local.rules"]
[log]
decisions = "log/decisions.jsonl"
)";
  rules::Diagnostics diags;
  auto cfg = parseConfig(text, "/srv/smtpgate/conf/smtpgate.toml", diags);
  INFO(allMessages(diags));
  REQUIRE(cfg);
  CHECK(cfg->rules.files == std::vector<std::string>{"/srv/smtpgate/conf/rules/*.rules",
                                                     "/abs/x.rules", "/srv/smtpgate/shared.rules",
                                                     "/srv/smtpgate/conf/local.rules"});
  CHECK(cfg->log.decisions == "/srv/smtpgate/conf/log/decisions.jsonl");
  REQUIRE(cfg->rules.filesOrigin.size() == 4);
  CHECK(cfg->rules.filesOrigin[1].where.line == 3);
  CHECK(cfg->rules.filesOrigin[1].where.column == 27);

  // A relative config path resolves against the current directory.
  auto rel = parseConfig(text, "conf/smtpgate.toml", diags);
  REQUIRE(rel);
  CHECK(rel->log.decisions == (fs::current_path() / "conf/log/decisions.jsonl").string());

  // The default log path (no [log]) follows the same rule.
  auto noLog = parseConfig("[rules]\nfiles = []\n", "/srv/smtpgate/smtpgate.toml", diags);
  REQUIRE(noLog);
  CHECK(noLog->log.decisions == "/srv/smtpgate/smtpgate-decisions.jsonl");
}

TEST_CASE("config: parseSize", "[config]") {
  struct Row {
    std::string_view text;
    std::optional<std::uint64_t> bytes;
  };
  const Row rows[] = {
      {"1000", 1000},
      {"0", 0},
      {"512K", 512ull << 10},
      {"512k", 512ull << 10},
      {"50M", 50ull << 20},
      {"1G", 1ull << 30},
      {"2T", 2ull << 40},
      {"16777215T", 16777215ull << 40},
      {"16777216T", std::nullopt},  // 2^64: overflow
      {"18446744073709551615", 18446744073709551615ull},
      {"18446744073709551616", std::nullopt},
      {"", std::nullopt},
      {"M", std::nullopt},
      {"50MB", std::nullopt},
      {"50 M", std::nullopt},
      {"-1", std::nullopt},
      {"1.5M", std::nullopt},
      {"50X", std::nullopt},
  };
  for (const auto& row : rows) {
    CAPTURE(row.text);
    CHECK(parseSize(row.text) == row.bytes);
  }
}

TEST_CASE("config: parseDuration", "[config]") {
  using std::chrono::milliseconds;
  struct Row {
    std::string_view text;
    std::optional<milliseconds> value;
  };
  const Row rows[] = {
      {"300ms", 300ms},
      {"5s", 5s},
      {"0s", 0ms},
      {"2m", 2min},
      {"1h", 1h},
      {"1d", 24h},
      {"5", std::nullopt},
      {"", std::nullopt},
      {"s", std::nullopt},
      {"5S", std::nullopt},
      {"5 s", std::nullopt},
      {"-5s", std::nullopt},
      {"1.5s", std::nullopt},
      {"5sec", std::nullopt},
      {"1m30s", std::nullopt},
      {"9223372036854775807ms", milliseconds(9223372036854775807LL)},
      {"9223372036854775807s", std::nullopt},
  };
  for (const auto& row : rows) {
    CAPTURE(row.text);
    CHECK(parseDuration(row.text) == row.value);
  }
}

TEST_CASE("config: rule file globs expand sorted, with clear errors", "[config]") {
  TempDir dir;
  writeFile(dir.path / "rules/b.rules", "");
  writeFile(dir.path / "rules/a.rules", "");
  writeFile(dir.path / "rules/notes.txt", "");
  fs::create_directories(dir.path / "rules/old.rules");  // a directory that matches: skipped
  const std::string text =
      "[rules]\n"
      "files = [\n"
      "  \"rules/*.rules\",\n"    // 3
      "  \"rules/a.rules\",\n"    // 4: already matched, kept once
      "  \"missing.rules\",\n"    // 5: error
      "  \"nomatch/*.rules\",\n"  // 6: warning
      "  \"rules\",\n"            // 7: a directory: error
      "]\n";
  const fs::path configPath = dir.path / "smtpgate.toml";
  writeFile(configPath, text);
  rules::Diagnostics diags;
  auto cfg = loadConfig(configPath.string(), diags);
  REQUIRE(cfg);
  const auto files = expandRuleFiles(*cfg, diags);
  INFO(allMessages(diags));
  CHECK(files == std::vector<std::string>{(dir.path / "rules/a.rules").string(),
                                          (dir.path / "rules/b.rules").string()});
  REQUIRE(diags.items().size() == 3);
  CHECK(diags.items()[0].severity == rules::Severity::Error);
  CHECK(diags.items()[0].where.line == 5);
  CHECK(diags.items()[0].where.column == 3);
  CHECK_THAT(diags.items()[0].message, Catch::Contains("missing.rules"));
  CHECK_THAT(diags.items()[0].message, Catch::Contains("No such file or directory"));
  CHECK(diags.items()[1].severity == rules::Severity::Warning);
  CHECK(diags.items()[1].where.line == 6);
  CHECK_THAT(diags.items()[1].message, Catch::Contains("no file matches"));
  CHECK(diags.items()[2].severity == rules::Severity::Error);
  CHECK(diags.items()[2].where.line == 7);
  CHECK_THAT(diags.items()[2].message, Catch::Contains("is a directory"));
  CHECK(diags.items()[2].sourceLine == "  \"rules\",");
}

TEST_CASE("config: glob characters in the config directory are literal", "[config]") {
  TempDir dir;
  const fs::path odd = dir.path / "we[ir]d*";
  writeFile(odd / "rules/one.rules", "");
  writeFile(odd / "rules/plain.rules", "");
  rules::Diagnostics diags;
  auto cfg = parseConfig("[rules]\nfiles = [\"rules/*.rules\", \"rules/plain.rules\"]\n",
                         (odd / "smtpgate.toml").string(), diags);
  REQUIRE(cfg);
  const auto files = expandRuleFiles(*cfg, diags);
  INFO(allMessages(diags));
  CHECK(diags.empty());
  CHECK(files == std::vector<std::string>{(odd / "rules/one.rules").string(),
                                          (odd / "rules/plain.rules").string()});
}

TEST_CASE("config: loading files and the default", "[config]") {
  TempDir dir;
  SECTION("a missing file is one clear error") {
    rules::Diagnostics diags;
    const std::string path = (dir.path / "nope.toml").string();
    CHECK_FALSE(loadConfig(path, diags));
    REQUIRE(diags.items().size() == 1);
    CHECK(diags.items()[0].where.file == path);
    CHECK_THAT(diags.items()[0].message,
               Catch::Contains("cannot read config file: No such file or directory"));
  }
  SECTION("a directory is not a config file") {
    rules::Diagnostics diags;
    CHECK_FALSE(loadConfig(dir.path.string(), diags));
    REQUIRE(diags.items().size() == 1);
    CHECK_THAT(diags.items()[0].message, Catch::Contains("is a directory"));
  }
  SECTION("no system config: the embedded default") {
    rules::Diagnostics diags;
    auto cfg = loadDefaultConfig(diags, (dir.path / "absent.toml").string());
    REQUIRE(cfg);
    CHECK(diags.empty());
    CHECK(cfg->source == kEmbeddedConfigName);
  }
  SECTION("a system config wins") {
    const fs::path sys = dir.path / "smtpgate.toml";
    writeFile(sys, "[proxy]\nbackend = \"127.0.0.1:10025\"\n");
    rules::Diagnostics diags;
    auto cfg = loadDefaultConfig(diags, sys.string());
    REQUIRE(cfg);
    CHECK(cfg->source == sys.string());
    CHECK(cfg->proxy.backend == "127.0.0.1:10025");
    CHECK(cfg->log.decisions == (dir.path / "smtpgate-decisions.jsonl").string());
  }
}

}  // namespace
}  // namespace smtpgate::policies
