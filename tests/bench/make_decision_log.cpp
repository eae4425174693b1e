// make_decision_log: writes a large, realistic decision log for benchmarking
// `smtpgate log` (BENCHMARKS.md "smtpgate log").
//
//   make_decision_log OUT [--bytes 1G | --lines N] [--days 7] [--seed 1]
//
// Lines are made by the real writer (policies::toJsonLine), so they have the
// real keys, order and escaping. Sessions of 1-4 decisions from ~200,000
// client addresses (v4 and some v6) and ~5,000 sender domains (Zipf-skewed,
// so there is a top 10), ~60 rules, times increasing evenly over `--days`
// ending 2026-11-23. About 1 line in 50 carries hostile text: quotes,
// backslashes, control characters, invalid UTF-8, U+2028, emoji (surrogate
// pairs), so the reader's escape handling is on the measured path.
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "policies/decision_log.h"

namespace {

using smtpgate::policies::DecisionRecord;

struct Options {
  std::string out;
  std::uint64_t bytes = 0;
  std::uint64_t lines = 0;
  int days = 7;
  unsigned seed = 1;
};

std::uint64_t parseSize(std::string_view text) {
  std::uint64_t n = std::strtoull(std::string(text).c_str(), nullptr, 10);
  switch (text.empty() ? ' ' : text.back()) {
    case 'K':
      return n << 10;
    case 'M':
      return n << 20;
    case 'G':
      return n << 30;
    default:
      return n;
  }
}

bool parseArgs(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool hasValue = i + 1 < argc;
    if (a == "--bytes" && hasValue) {
      o.bytes = parseSize(argv[++i]);
    } else if (a == "--lines" && hasValue) {
      o.lines = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--days" && hasValue) {
      o.days = std::atoi(argv[++i]);
    } else if (a == "--seed" && hasValue) {
      o.seed = static_cast<unsigned>(std::atoi(argv[++i]));
    } else if (o.out.empty() && !a.starts_with("-")) {
      o.out = a;
    } else {
      return false;
    }
  }
  if (o.bytes == 0 && o.lines == 0) {
    o.lines = 1000;
  }
  return !o.out.empty() && o.days > 0;
}

const std::vector<std::string> kHostile = {
    "quote \" and backslash \\ and slash /",
    "ctrl \x01\x1b[31m\r\n\t bell\x07",
    std::string("nul \0 inside", 12),
    "bad utf8 \xC3\x28 \xED\xA0\x80 \xF4\x90\x80\x80 \xFF",
    "line\xE2\x80\xA8separator \xE2\x80\xA9 para",
    "emoji \xF0\x9F\x98\x80 and \xE2\x82\xAC euro, caf\xC3\xA9",
    "<script>alert(1)</script>",
};

class Generator {
 public:
  explicit Generator(unsigned seed) : rng_(seed) {}

  /// Zipf-ish: small indexes are much more likely.
  std::size_t skewed(std::size_t n) {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng_);
    return static_cast<std::size_t>(static_cast<double>(n) * u * u * u) % n;
  }
  std::size_t uniform(std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_);
  }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }

  std::string ip() {
    const std::size_t k = skewed(200000);
    if (k % 10 == 7) {
      return "2001:db8:" + std::to_string(k % 65536) + "::" + std::to_string(k % 97 + 1);
    }
    return std::to_string(k % 223 + 1) + "." + std::to_string(k / 223 % 256) + "." +
           std::to_string(k / 57088 % 256) + "." + std::to_string(k % 254 + 1);
  }
  std::string domain() { return "sender" + std::to_string(skewed(5000)) + ".example"; }
  std::string hostile() { return kHostile[uniform(kHostile.size())]; }

  /// One SMTP session's decisions, all at `time`.
  void session(std::uint64_t id, std::chrono::system_clock::time_point time,
               std::vector<DecisionRecord>& out) {
    DecisionRecord r;
    r.time = time;
    char sid[16];
    std::snprintf(sid, sizeof sid, "%08llX", static_cast<unsigned long long>(id));
    r.session = sid;
    r.clientIp = ip();
    r.clientPtr = chance(0.7) ? "mx" + std::to_string(uniform(99)) + "." + domain() : "";
    r.helo = chance(0.02) ? hostile() : "mail." + domain();
    r.sender = chance(0.05) ? "" : "user" + std::to_string(uniform(1000)) + "@" + domain();
    r.rulesetHash = "3f9a1c0b7d2e";
    r.frontend = chance(0.8) ? "proxy" : "milter";
    static const char* kStages[] = {"connect", "helo", "mail", "rcpt", "data"};
    const int stage = static_cast<int>(skewed(5));
    r.stage = kStages[4 - stage];
    r.rcpts = {"rcpt" + std::to_string(uniform(50)) + "@ourdomain.example"};
    if (chance(0.2)) {
      r.rcpts.push_back("postmaster@ourdomain.example");
    }
    decide(r);
    out.push_back(r);
    if (r.action == "accept" && r.stage == "data") {
      r.action = "deliver";
      r.queueId = "4" + std::string(sid).substr(0, 9);
      r.reply = "250 2.0.0 Ok: queued as " + r.queueId;
      out.push_back(r);
    }
  }

 private:
  void decide(DecisionRecord& r) {
    const std::size_t pick = uniform(100);
    r.action = pick < 45   ? "accept"
               : pick < 85 ? "reject"
               : pick < 97 ? "tempfail"
                           : "would-reject";
    if (r.action == "accept") {
      r.reply = "";
      r.rule = chance(0.3) ? "office" : "";
    } else {
      r.rule = "rule-" + std::to_string(skewed(60));
      r.ruleWhere = "/etc/smtpgate/rules/10-basic.rules:" + std::to_string(r.rule.size() * 7);
      r.reply = (r.action == "tempfail" ? "451 4.7.1 " : "550 5.7.1 ") +
                std::string(chance(0.02) ? hostile() : "Message rejected by policy " + r.rule);
    }
    r.spf = r.stage == "connect" || r.stage == "helo" ? "" : chance(0.8) ? "pass" : "fail";
    if (r.stage == "data") {
      r.dkim = chance(0.6) ? "pass" : "none";
      r.dmarc = chance(0.7) ? "pass" : "fail";
      r.messageId = "<" + r.session + "." + std::to_string(uniform(1000000)) + "@" + domain() + ">";
      r.subject = chance(0.02) ? hostile() : "Your invoice " + std::to_string(uniform(100000));
      r.score = static_cast<double>(uniform(120)) / 10.0;
      if (r.score > 3) {
        r.scoreRules = {"viagra", "words"};
      }
    }
  }

  std::mt19937_64 rng_;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parseArgs(argc, argv, o)) {
    std::fprintf(stderr,
                 "usage: make_decision_log OUT [--bytes 1G | --lines N] [--days 7] [--seed 1]\n");
    return 64;
  }
  std::FILE* out = std::fopen(o.out.c_str(), "wb");
  if (out == nullptr) {
    std::perror(o.out.c_str());
    return 73;
  }
  // Sessions per second is unknown up front when sizing by bytes: assume
  // ~500 bytes a line (what this generator averages) to spread the times
  // over the days.
  const std::uint64_t expectedLines = o.lines ? o.lines : o.bytes / 500 + 1;
  const auto end = std::chrono::sys_days{std::chrono::year{2026} / 11 / 23};
  const auto span =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::days(o.days));
  const auto step = span / static_cast<std::int64_t>(expectedLines);
  Generator gen(o.seed);
  std::vector<DecisionRecord> batch;
  std::uint64_t lines = 0;
  std::uint64_t bytes = 0;
  auto time = std::chrono::system_clock::time_point(end - span);
  for (std::uint64_t id = 1; o.lines ? lines < o.lines : bytes < o.bytes; ++id) {
    batch.clear();
    gen.session(id, time, batch);
    for (const DecisionRecord& r : batch) {
      std::string line = smtpgate::policies::toJsonLine(r);
      line += '\n';
      std::fwrite(line.data(), 1, line.size(), out);
      bytes += line.size();
      ++lines;
      time += step;
    }
  }
  std::fclose(out);
  std::fprintf(stderr, "make_decision_log: %llu lines, %llu bytes\n",
               static_cast<unsigned long long>(lines), static_cast<unsigned long long>(bytes));
  return 0;
}
