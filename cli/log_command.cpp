#include "cli/log_command.h"

#include <signal.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <variant>

#include "cli/exit_codes.h"
#include "cli/terminal_text.h"
#include "policies/config.h"
#include "policies/decision_log_files.h"
#include "policies/decision_log_reader.h"
#include "rules/diagnostic.h"

namespace smtpgate::cli {

namespace {

namespace fs = std::filesystem;
using policies::LogEntry;
using policies::LogFieldMask;
using policies::LogFilter;
using policies::LogScanStats;
using policies::LogSummary;
using policies::LogTime;

struct LogOptions {
  std::string config;
  std::vector<std::string> files;
  policies::LogFilterSpec filter;
  std::string explain;
  bool follow = false;
  bool summary = false;
  bool json = false;
  bool noRotated = false;
};

/// Where to read: every file in order, and the live files to follow.
struct LogSources {
  std::vector<std::string> files;
  std::vector<std::string> live;
};

constexpr std::size_t kTopRules = 20;
constexpr std::size_t kTopSources = 10;
constexpr int kBarColumns = 50;
constexpr std::size_t kMaxHistogramRows = 168;  // a week of hours
constexpr auto kFollowPoll = std::chrono::milliseconds(200);

constexpr LogFieldMask kLineFields =
    policies::kFieldSession | policies::kFieldClientIp | policies::kFieldAction |
    policies::kFieldStage | policies::kFieldRule | policies::kFieldReply | policies::kFieldSender |
    policies::kFieldRcpts | policies::kFieldQueueId;

void writeOut(std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
}

void complain(const std::string& message) {
  std::fprintf(stderr, "smtpgate log: %s\n", message.c_str());
}

// ---------------------------------------------------------------------------
// Text for a terminal (cli/terminal_text.h has the cleaning).

/// A column at least `width` wide, cut at `maxChars`, then a space.
void column(std::string& out, std::string_view text, std::size_t width, std::size_t maxChars) {
  const std::size_t n = appendClean(out, text, maxChars);
  out.append(n < width ? width - n : 0, ' ');
  out += ' ';
}

std::string formatScore(double score) {
  if (std::isnan(score)) {
    return "-";
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", score);
  return buf;
}

std::string addresses(const policies::DecisionRecord& r) {
  std::string out = "<";
  appendClean(out, r.sender, 48);
  out += ">";
  if (!r.rcpts.empty()) {
    out += " -> <";
    appendClean(out, r.rcpts.front(), 48);
    out += ">";
    if (r.rcpts.size() > 1) {
      out += " +" + std::to_string(r.rcpts.size() - 1);
    }
  }
  return out;
}

/// `2026-11-23 09:01:02 4F2A9C01 203.0.113.5     reject   rcpt    spf-fail ...`
std::string humanLine(const LogEntry& e) {
  const policies::DecisionRecord& r = e.record;
  std::string out = policies::formatLogTime(r.time);
  out += ' ';
  column(out, r.session, 8, 16);
  column(out, r.clientIp, 15, 45);
  // Widths fit every action but possible-duplicate, and the generated rule
  // ids threshold-reject/threshold-tempfail; longer values push the line on.
  column(out, r.action, 14, 18);
  column(out, r.stage, 7, 10);
  column(out, r.rule.empty() ? "-" : r.rule, 18, 32);
  column(out, r.reply.empty() ? "-" : r.reply, 40, 40);
  out += addresses(r);
  if (!r.queueId.empty()) {
    out += "  queue ";
    appendClean(out, r.queueId, 24);
  }
  out += '\n';
  return out;
}

// ---------------------------------------------------------------------------
// --explain

void field(std::string& out, std::string_view label, std::string_view value) {
  out += "    ";
  out += label;
  out.append(label.size() < 12 ? 12 - label.size() : 0, ' ');
  out += value;
  out += '\n';
}

std::string joinClean(const std::vector<std::string>& items, std::size_t show, bool angle) {
  std::string out;
  for (std::size_t i = 0; i < items.size() && i < show; ++i) {
    out += i ? ", " : "";
    out += angle ? "<" + clean(items[i], 100) + ">" : clean(items[i], 100);
  }
  if (items.size() > show) {
    out += " +" + std::to_string(items.size() - show) + " more";
  }
  return out;
}

/// The authentication results, then the other facts the line recorded
/// (client.port, tls, mail.size, DNS answers...), two spaces apart: a value
/// (an SPF explanation) may hold one.
std::string facts(const policies::DecisionRecord& r) {
  constexpr std::size_t kShown = 40;
  std::string out;
  auto add = [&out](const std::string& item) { out += (out.empty() ? "" : "  ") + item; };
  for (const auto& [name, value] : {std::pair<const char*, const std::string*>{"spf", &r.spf},
                                    {"dkim", &r.dkim},
                                    {"dmarc", &r.dmarc}}) {
    if (!value->empty()) {
      add(std::string(name) + "=" + clean(*value, 40));
    }
  }
  for (std::size_t i = 0; i < r.facts.size() && i < kShown; ++i) {
    add(clean(r.facts[i], 200));
  }
  if (r.facts.size() > kShown) {
    add("+" + std::to_string(r.facts.size() - kShown) + " more");
  }
  return out;
}

/// Who and what the session was about; shown when it changes.
void explainPeer(std::string& out, const LogEntry& e, const LogEntry* previous) {
  const policies::DecisionRecord& r = e.record;
  const policies::DecisionRecord* p = previous ? &previous->record : nullptr;
  if (!p || p->clientIp != r.clientIp || p->clientPtr != r.clientPtr) {
    field(out, "client",
          clean(r.clientIp, 45) +
              (r.clientPtr.empty() ? " (no PTR)" : " (" + clean(r.clientPtr) + ")"));
  }
  if (!p || p->helo != r.helo) {
    field(out, "helo", clean(r.helo));
  }
  if (!p || p->sender != r.sender) {
    field(out, "sender", "<" + clean(r.sender) + ">");
  }
  if (!r.rcpts.empty()) {
    field(out, "rcpts", joinClean(r.rcpts, 10, true));
  }
  if (!r.rcptsPassed.empty()) {
    field(out, "passed", joinClean(r.rcptsPassed, 10, true));
  }
  if (!r.rcptsBackendRefused.empty()) {
    field(out, "backend no", joinClean(r.rcptsBackendRefused, 10, true));
  }
}

void explainVerdict(std::string& out, const LogEntry& e) {
  const policies::DecisionRecord& r = e.record;
  field(out, "rule",
        r.rule.empty()
            ? std::string("(none)")
            : clean(r.rule, 64) + (r.ruleWhere.empty() ? "" : "  at " + clean(r.ruleWhere)));
  if (!r.reply.empty()) {
    field(out, "reply", clean(r.reply, 300));
  }
  field(out, "score",
        formatScore(r.score) +
            (r.scoreRules.empty() ? "" : "  from " + joinClean(r.scoreRules, 20, false)));
  if (std::string f = facts(r); !f.empty()) {
    field(out, "facts", f);
  }
  if (!r.messageId.empty() || !r.subject.empty()) {
    field(
        out, "message",
        clean(r.messageId, 100) + (r.subject.empty() ? "" : "  \"" + clean(r.subject, 100) + "\""));
  }
  if (!r.queueId.empty()) {
    field(out, "queue id", clean(r.queueId, 40));
  }
  field(out, "via", clean(r.frontend, 20) + ", ruleset " + clean(r.rulesetHash, 40));
  if (!e.invalidUtf8.empty() || !e.truncated.empty()) {
    field(out, "note",
          (e.invalidUtf8.empty()
               ? ""
               : "invalid UTF-8 replaced in " + joinClean(e.invalidUtf8, 24, false) + "; ") +
              (e.truncated.empty() ? "" : "cut short: " + joinClean(e.truncated, 24, false)));
  }
}

std::string explainText(const std::string& session, const std::vector<LogEntry>& entries) {
  std::string out = "Session " + clean(session, 64) + ": " + grouped(entries.size()) +
                    (entries.size() == 1 ? " decision" : " decisions") + ", " +
                    policies::formatLogTime(entries.front().record.time, true) + " to " +
                    policies::formatLogTime(entries.back().record.time, true) + " (UTC)\n";
  const LogEntry* previous = nullptr;
  for (const LogEntry& e : entries) {
    out += "\n" + policies::formatLogTime(e.record.time, true) + "  " + clean(e.record.stage, 16) +
           "  " + clean(e.record.action, 24) +
           (e.record.transaction ? "  (transaction " + std::to_string(e.record.transaction) + ")"
                                 : "") +
           "\n";
    explainPeer(out, e, previous);
    explainVerdict(out, e);
    previous = &e;
  }
  return out;
}

// ---------------------------------------------------------------------------
// --summary

std::string bar(std::uint64_t count, std::uint64_t max) {
  static constexpr std::string_view kPartial[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
  std::uint64_t eighths = max == 0 ? 0 : count * kBarColumns * 8 / max;
  if (count > 0 && eighths == 0) {
    eighths = 1;  // a bucket with any decision shows
  }
  std::string out;
  for (std::uint64_t i = 0; i < eighths / 8; ++i) {
    out += "█";
  }
  out += kPartial[eighths % 8];
  const std::size_t drawn = eighths / 8 + (eighths % 8 ? 1 : 0);
  out.append(static_cast<std::size_t>(kBarColumns) - drawn, ' ');
  return out;
}

void ranking(std::string& out, const std::string& title,
             const std::vector<policies::LogCount>& rows, std::uint64_t total) {
  out += "\n" + title + "\n";
  if (rows.empty()) {
    out += "  (none)\n";
  }
  for (const policies::LogCount& row : rows) {
    out += "  ";
    column(out, row.value.empty() ? "(empty)" : row.value, 40, 40);
    const std::string count = grouped(row.count);
    out.append(count.size() < 13 ? 13 - count.size() : 0, ' ');
    char pct[16];
    std::snprintf(
        pct, sizeof pct, "%6.1f%%",
        total ? 100.0 * static_cast<double>(row.count) / static_cast<double>(total) : 0.0);
    out += count + "  " + pct + "\n";
  }
}

/// [start, end) of the histogram: the filter's window where given, else the
/// decisions' own span.
std::optional<std::pair<LogTime, LogTime>> histogramWindow(const LogFilter& filter,
                                                           const LogSummary& summary, LogTime now) {
  const std::optional<LogTime> start = filter.since() ? filter.since() : summary.first();
  if (!start) {
    return std::nullopt;
  }
  LogTime end = filter.until()   ? *filter.until()
                : filter.since() ? now
                                 : *summary.last() + std::chrono::milliseconds(1);
  return std::make_pair(*start, std::max(end, *start + std::chrono::milliseconds(1)));
}

void histogramText(std::string& out, const policies::Histogram& h) {
  const bool daily = h.width.count() % 24 == 0;
  out += "\nDecisions per " +
         (h.width.count() == 1 ? std::string("hour")
          : daily              ? std::to_string(h.width.count() / 24) + " day(s)"
                               : std::to_string(h.width.count()) + " hours") +
         " (UTC; bar = all decisions, scaled to the busiest; then total and refused)\n";
  for (const policies::HistogramBucket& b : h.buckets) {
    const std::string label = policies::formatLogTime(b.start).substr(0, daily ? 10 : 16);
    out += "  " + label + std::string(daily ? 6 : 0, ' ') + "  " + bar(b.total, h.maxTotal);
    const std::string total = grouped(b.total);
    out.append(total.size() < 11 ? 11 - total.size() : 0, ' ');
    out += total + (b.refused ? "  refused " + grouped(b.refused) : "") + "\n";
  }
}

std::string summaryText(const LogSummary& s, const LogFilter& filter, const LogSources& sources,
                        LogTime now) {
  using D = LogSummary::Dimension;
  std::string out = "Decisions: " + grouped(s.total());
  if (s.first()) {
    out += ", " + policies::formatLogTime(*s.first()) + " to " +
           policies::formatLogTime(*s.last()) + " (UTC)";
  }
  out += "\nFiles: " + joinClean(sources.files, 12, false) + "\n";
  ranking(out, "By action", s.top(D::Action, 50), s.total());
  ranking(out, "By stage", s.top(D::Stage, 50), s.total());
  ranking(out, "Top rules (the rule that decided)", s.top(D::Rule, kTopRules), s.total());
  if (std::vector<policies::LogCount> scored = s.top(D::ScoreRule, kTopRules); !scored.empty()) {
    ranking(out, "Top score rules (added to a score)", scored, s.total());
  }
  ranking(out, "Top client IPs", s.top(D::ClientIp, kTopSources), s.total());
  ranking(out, "Top sender domains", s.top(D::SenderDomain, kTopSources), s.total());
  if (auto window = histogramWindow(filter, s, now)) {
    histogramText(out, s.histogram(window->first, window->second, kMaxHistogramRows));
  }
  return out;
}

std::string summaryJson(const LogSummary& s, const LogFilter& filter, const LogSources& sources,
                        const LogScanStats& stats, LogTime now) {
  using D = LogSummary::Dimension;
  using Json = nlohmann::ordered_json;
  const auto counts = [&](D d, std::size_t n) {
    Json a = Json::array();
    for (const policies::LogCount& c : s.top(d, n)) {
      a.push_back({{"value", c.value}, {"count", c.count}});
    }
    return a;
  };
  Json j;
  j["decisions"] = s.total();
  j["first"] = s.first() ? Json(policies::formatRfc3339Millis(*s.first())) : Json();
  j["last"] = s.last() ? Json(policies::formatRfc3339Millis(*s.last())) : Json();
  j["files"] = sources.files;
  j["unreadable_lines"] = stats.unreadable;
  j["by_action"] = counts(D::Action, 50);
  j["by_stage"] = counts(D::Stage, 50);
  j["top_rules"] = counts(D::Rule, kTopRules);
  j["top_score_rules"] = counts(D::ScoreRule, kTopRules);
  j["top_client_ips"] = counts(D::ClientIp, kTopSources);
  j["top_sender_domains"] = counts(D::SenderDomain, kTopSources);
  Json buckets = Json::array();
  policies::Histogram h;
  if (auto window = histogramWindow(filter, s, now)) {
    h = s.histogram(window->first, window->second, kMaxHistogramRows);
  }
  for (const policies::HistogramBucket& b : h.buckets) {
    buckets.push_back({{"start", policies::formatRfc3339Millis(b.start)},
                       {"total", b.total},
                       {"refused", b.refused}});
  }
  j["histogram"] = {{"width_hours", h.width.count()}, {"buckets", buckets}};
  return j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

// ---------------------------------------------------------------------------
// Sources

/// Files of `path`: its rotations too unless --no-rotated.
void addSource(const LogOptions& o, const std::string& path, LogSources& sources,
               std::set<std::string>& seen) {
  std::vector<std::string> files =
      o.noRotated ? std::vector<std::string>{path} : policies::logFilesWithRotations(path);
  for (std::string& f : files) {
    std::error_code ec;
    const std::string key = fs::weakly_canonical(f, ec).string();
    if (seen.insert(ec ? f : key).second) {
      sources.files.push_back(std::move(f));
    }
  }
  sources.live.push_back(path);
}

/// The files to read, or an exit code.
std::variant<LogSources, int> resolveSources(const LogOptions& o) {
  LogSources sources;
  std::set<std::string> seen;
  if (!o.files.empty()) {
    for (const std::string& f : o.files) {
      std::error_code ec;
      if (!fs::exists(f, ec)) {
        complain(f + ": no such file");
        return kExitNoInput;
      }
      addSource(o, f, sources, seen);
    }
    return sources;
  }
  rules::Diagnostics diags;
  std::optional<policies::Config> config =
      o.config.empty() ? policies::loadDefaultConfig(diags) : policies::loadConfig(o.config, diags);
  if (!config) {
    std::string text = rules::format(diags);
    std::fwrite(text.data(), 1, text.size(), stderr);
    return kExitConfig;
  }
  addSource(o, config->log.decisions, sources, seen);
  if (sources.files.empty() && !o.follow) {
    complain(config->log.decisions +
             " does not exist (no decisions logged yet?); [log] decisions in " + config->source);
    return kExitNoInput;
  }
  return sources;
}

void reportStats(const LogScanStats& stats) {
  for (const std::string& e : stats.fileErrors) {
    complain(e);
  }
  if (stats.unreadable > 0) {
    complain(grouped(stats.unreadable) +
             (stats.unreadable == 1 ? " unreadable line" : " unreadable lines") +
             " skipped (first at " + stats.firstUnreadable + ")");
  }
}

// ---------------------------------------------------------------------------
// Modes

int runList(const LogOptions& o, const LogFilter& filter, const LogSources& sources) {
  LogScanStats stats;
  const bool json = o.json;
  policies::scanLogFiles(
      sources.files, filter, json ? 0 : kLineFields,
      [json](const LogEntry& e, std::string_view line) {
        if (json) {
          writeOut(line);
          writeOut("\n");
        } else {
          writeOut(humanLine(e));
        }
      },
      stats);
  std::fflush(stdout);
  reportStats(stats);
  return kExitAccept;
}

int runSummary(const LogOptions& o, const LogFilter& filter, const LogSources& sources,
               LogTime now) {
  LogScanStats stats;
  LogSummary summary;
  policies::scanLogFiles(
      sources.files, filter, LogSummary::kFields,
      [&summary](const LogEntry& e, std::string_view) { summary.add(e); }, stats);
  writeOut(o.json ? summaryJson(summary, filter, sources, stats, now)
                  : summaryText(summary, filter, sources, now));
  std::fflush(stdout);
  reportStats(stats);
  return kExitAccept;
}

int runExplain(const LogOptions& o, const LogFilter& filter, const LogSources& sources) {
  LogScanStats stats;
  std::vector<std::pair<LogEntry, std::string>> found;
  policies::scanLogFiles(
      sources.files, filter, policies::kAllLogFields,
      [&found](const LogEntry& e, std::string_view line) {
        found.emplace_back(e, std::string(line));
      },
      stats);
  std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    return a.first.record.time < b.first.record.time;
  });
  if (found.empty()) {
    complain("no decisions of session " + clean(o.explain, 64) + " in " +
             joinClean(sources.files, 12, false));
  } else if (o.json) {
    for (const auto& [entry, line] : found) {
      writeOut(line);
      writeOut("\n");
    }
  } else {
    std::vector<LogEntry> entries;
    for (auto& item : found) {
      entries.push_back(std::move(item.first));
    }
    writeOut(explainText(o.explain, entries));
  }
  std::fflush(stdout);
  reportStats(stats);
  return kExitAccept;
}

std::atomic<bool> gStopFollowing{false};
static_assert(std::atomic<bool>::is_always_lock_free);

void onStopSignal(int /*signo*/) {
  gStopFollowing.store(true);
}

void installStopHandlers() {
  struct sigaction sa {};
  sa.sa_handler = onStopSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: the sleep between polls ends at once
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

int runFollow(const LogOptions& o, const LogFilter& filter, const LogSources& sources) {
  installStopHandlers();
  LogScanStats stats;
  const bool json = o.json;
  const policies::LogLineSink sink = [json](const LogEntry& e, std::string_view line) {
    writeOut(json ? std::string(line) + "\n" : humanLine(e));
  };
  const LogFieldMask fields = json ? 0 : kLineFields;
  if (filter.since()) {  // the window's past first: rotations now, live files by the followers
    std::vector<std::string> older;
    std::copy_if(sources.files.begin(), sources.files.end(), std::back_inserter(older),
                 [&](const std::string& f) {
                   return std::find(sources.live.begin(), sources.live.end(), f) ==
                          sources.live.end();
                 });
    policies::scanLogFiles(older, filter, fields, sink, stats);
  }
  std::vector<policies::LogFollower> followers;
  for (const std::string& path : sources.live) {
    followers.emplace_back(path, /*startAtEnd=*/!filter.since());
  }
  while (!gStopFollowing.load()) {
    std::size_t errors = stats.fileErrors.size();
    for (policies::LogFollower& f : followers) {
      f.poll(filter, fields, sink, stats);
    }
    std::fflush(stdout);
    for (; errors < stats.fileErrors.size(); ++errors) {
      complain(stats.fileErrors[errors]);
    }
    const auto ns = std::chrono::nanoseconds(kFollowPoll).count();
    struct timespec pause {
      0, static_cast<long>(ns)
    };
    ::nanosleep(&pause, nullptr);
  }
  stats.fileErrors.clear();  // reported as they happened
  reportStats(stats);
  return kExitAccept;
}

int runLog(LogOptions o) {
  if (o.follow && (o.summary || !o.explain.empty())) {
    complain("-f shows decisions as they come; it does not combine with --summary or --explain");
    return kExitUsage;
  }
  if (o.summary && !o.explain.empty()) {
    complain("--summary and --explain do not combine");
    return kExitUsage;
  }
  if (!o.explain.empty()) {
    o.filter.sessions.push_back(o.explain);
  }
  const LogTime now = std::chrono::system_clock::now();
  std::string error;
  const std::optional<LogFilter> filter = LogFilter::compile(o.filter, now, error);
  if (!filter) {
    complain(error);
    return kExitUsage;
  }
  std::variant<LogSources, int> sources = resolveSources(o);
  if (const int* code = std::get_if<int>(&sources)) {
    return *code;
  }
  const LogSources& s = std::get<LogSources>(sources);
  // Block-buffered even on a terminal: there may be millions of lines
  // (-f flushes after every poll).
  std::setvbuf(stdout, nullptr, _IOFBF, 1 << 16);
  if (o.follow) {
    return runFollow(o, *filter, s);
  }
  if (o.summary) {
    return runSummary(o, *filter, s, now);
  }
  return o.explain.empty() ? runList(o, *filter, s) : runExplain(o, *filter, s);
}

}  // namespace

void addLogCommand(CLI::App& app, int& exitCode) {
  auto o = std::make_shared<LogOptions>();
  CLI::App* cmd = app.add_subcommand("log", "Review the decision log (see docs/log.md)");
  CLI::Option* config = cmd->add_option(
      "-c,--config", o->config,
      "Config whose [log] decisions file to read (default: /etc/smtpgate/smtpgate.toml, else the "
      "embedded default)");
  cmd->add_option("--file", o->files, "Read this log file (repeatable) instead of the config's")
      ->excludes(config);
  cmd->add_flag("--no-rotated", o->noRotated,
                "Read only the named file, not its rotations (PATH.1, PATH.2.gz, ...)");
  cmd->add_option("--since", o->filter.since,
                  "From: 30m, 1h, 7d, today, 2026-11-23, 2026-11-23T08:00 (UTC unless +HH:MM)");
  cmd->add_option("--until", o->filter.until, "Up to (excluded); a bare date includes that day");
  cmd->add_option("--action", o->filter.actions,
                  "accept, reject, tempfail, deliver, would-reject, ...")
      ->delimiter(',');
  cmd->add_option("--stage", o->filter.stages, "connect, helo, mail, rcpt, data")->delimiter(',');
  cmd->add_option("--rule", o->filter.rules, "Rule id that decided")->delimiter(',');
  cmd->add_option("--ip", o->filter.ips, "Client address or CIDR network (v4 or v6)")
      ->delimiter(',');
  cmd->add_option("--sender", o->filter.senders,
                  "Envelope sender contains this, ignoring case; '<>' = null sender");
  cmd->add_option("--rcpt", o->filter.rcpts, "A recipient contains this, ignoring case");
  cmd->add_option("--session", o->filter.sessions, "Session id")->delimiter(',');
  cmd->add_flag("-f,--follow", o->follow, "Keep printing decisions as they are logged");
  cmd->add_flag("--summary", o->summary, "Counts, top rules and sources, hourly histogram");
  cmd->add_option("--explain", o->explain, "Every decision of one session, in order, with facts");
  cmd->add_flag("--json", o->json, "Print matching lines as logged (--summary: one JSON object)");
  cmd->callback([o, &exitCode] { exitCode = runLog(*o); });
}

}  // namespace smtpgate::cli
