#include "cli/report_command.h"

#include <fmt/core.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <variant>

#include "cli/exit_codes.h"
#include "cli/report_html.h"
#include "policies/config.h"
#include "policies/decision_log_files.h"
#include "policies/decision_log_reader.h"

namespace smtpgate::cli {

namespace {

namespace fs = std::filesystem;
using policies::LogEntry;
using policies::LogFilter;
using policies::LogSummary;
using policies::LogTime;

constexpr int kExitCantCreate = 73;  // EX_CANTCREAT
constexpr std::size_t kTopRules = 20;
constexpr std::size_t kTopSources = 10;
constexpr std::size_t kMaxBuckets = 168;  // the same bars as `log --summary`

struct ReportOptions {
  std::string config;
  std::vector<std::string> files;
  policies::LogFilterSpec filter;
  std::string output;
  bool noRotated = false;
};

void complain(const std::string& text) {
  fmt::print(stderr, "smtpgate report: {}\n", text);
}

/// The files to read (oldest first), or an exit code.
std::variant<std::vector<std::string>, int> resolveFiles(const ReportOptions& o) {
  std::vector<std::string> paths = o.files;
  if (paths.empty()) {
    rules::Diagnostics diags;
    auto config = o.config.empty() ? policies::loadDefaultConfig(diags)
                                   : policies::loadConfig(o.config, diags);
    if (!config) {
      std::string text = rules::format(diags);
      std::fwrite(text.data(), 1, text.size(), stderr);
      return kExitConfig;
    }
    paths.push_back(config->log.decisions);
  }
  std::vector<std::string> files;
  std::set<std::string> seen;
  for (const auto& p : paths) {
    std::error_code ec;
    if (!o.files.empty() && !fs::exists(p, ec)) {
      complain(p + ": no such file");
      return kExitNoInput;
    }
    auto withRotations =
        o.noRotated ? std::vector<std::string>{p} : policies::logFilesWithRotations(p);
    for (auto& f : withRotations) {
      std::string key = fs::weakly_canonical(f, ec).string();
      if (seen.insert(ec ? f : key).second) {
        files.push_back(std::move(f));
      }
    }
  }
  if (files.empty()) {
    complain(paths.front() + " does not exist (no decisions logged yet?)");
    return kExitNoInput;
  }
  return files;
}

/// Per-hour counts by outcome, to stack the time chart's bars.
using HourCategories = std::map<std::int64_t, std::array<std::uint64_t, kReportCategories>>;

std::int64_t hourOf(LogTime t) {
  return std::chrono::floor<std::chrono::hours>(t.time_since_epoch()).count();
}

void fillTimeline(ReportData& data, const LogSummary& summary, const HourCategories& hours,
                  const LogFilter& filter, LogTime now) {
  const auto start = filter.since() ? filter.since() : summary.first();
  if (!start) {
    return;
  }
  LogTime end = filter.until()   ? *filter.until()
                : filter.since() ? now
                                 : *summary.last() + std::chrono::milliseconds(1);
  end = std::max(end, *start + std::chrono::milliseconds(1));
  policies::Histogram h = summary.histogram(*start, end, kMaxBuckets);
  data.bucketWidth = h.width;
  for (const auto& b : h.buckets) {
    data.buckets.push_back({b.start, {}});
  }
  if (data.buckets.empty()) {
    return;
  }
  const std::int64_t firstHour = hourOf(data.buckets.front().start);
  for (const auto& [hour, counts] : hours) {
    const std::int64_t index = (hour - firstHour) / h.width.count();
    if (hour < firstHour || index >= static_cast<std::int64_t>(data.buckets.size())) {
      continue;  // outside the window (cannot happen with a filter on time)
    }
    for (std::size_t c = 0; c < kReportCategories; ++c) {
      data.buckets[static_cast<std::size_t>(index)].counts[c] += counts[c];
    }
  }
}

bool writeOutput(const std::string& path, const std::string& html) {
  if (path == "-") {
    return std::fwrite(html.data(), 1, html.size(), stdout) == html.size() &&
           std::fflush(stdout) == 0;
  }
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << html;
    out.close();
    if (!out) {
      std::error_code ec;
      fs::remove(tmp, ec);
      return false;
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return false;
  }
  return true;
}

int runReport(const ReportOptions& o) {
  const LogTime now = std::chrono::system_clock::now();
  std::string error;
  auto filter = LogFilter::compile(o.filter, now, error);
  if (!filter) {
    complain(error);
    return kExitUsage;
  }
  auto resolved = resolveFiles(o);
  if (const int* code = std::get_if<int>(&resolved)) {
    return *code;
  }
  ReportData data;
  data.files = std::get<std::vector<std::string>>(resolved);
  data.generated = now;
  data.since = filter->since();
  data.until = filter->until();

  LogSummary summary;
  HourCategories hours;
  policies::LogScanStats stats;
  policies::scanLogFiles(
      data.files, *filter, LogSummary::kFields,
      [&](const LogEntry& e, std::string_view) {
        summary.add(e);
        auto category = static_cast<std::size_t>(reportCategoryOf(e.record.action));
        ++hours[hourOf(e.record.time)][category];
        ++data.totals[category];
      },
      stats);
  for (const auto& e : stats.fileErrors) {
    complain(e);
  }
  using D = LogSummary::Dimension;
  data.total = summary.total();
  data.first = summary.first();
  data.last = summary.last();
  data.unreadable = stats.unreadable;
  data.byAction = summary.top(D::Action, SIZE_MAX);
  data.byStage = summary.top(D::Stage, SIZE_MAX);
  data.topRules = summary.top(D::Rule, kTopRules);
  data.topScoreRules = summary.top(D::ScoreRule, kTopRules);
  data.topClientIps = summary.top(D::ClientIp, kTopSources);
  data.topSenderDomains = summary.top(D::SenderDomain, kTopSources);
  fillTimeline(data, summary, hours, *filter, now);

  if (!writeOutput(o.output, renderReportHtml(data))) {
    complain("cannot write " + o.output + ": " + std::strerror(errno));
    return kExitCantCreate;
  }
  if (o.output != "-") {
    fmt::print(stderr, "smtpgate report: {} decisions{} -> {}\n", groupedNumber(data.total),
               stats.unreadable
                   ? fmt::format(" ({} unreadable lines skipped, first at {})",
                                 groupedNumber(stats.unreadable), stats.firstUnreadable)
                   : std::string(),
               o.output);
  }
  return kExitAccept;
}

}  // namespace

void addReportCommand(CLI::App& app, int& exitCode) {
  auto o = std::make_shared<ReportOptions>();
  CLI::App* cmd =
      app.add_subcommand("report", "Write one self-contained HTML page of charts over the log");
  CLI::Option* config = cmd->add_option(
      "-c,--config", o->config,
      "Config whose [log] decisions file to read (default: /etc/smtpgate/smtpgate.toml, else the "
      "embedded default)");
  cmd->add_option("--file", o->files, "Read this log file (repeatable) instead of the config's")
      ->excludes(config);
  cmd->add_flag("--no-rotated", o->noRotated, "Read only the named files, not their rotations");
  cmd->add_option("-o,--output", o->output, "The HTML file to write ('-': stdout)")->required();
  cmd->add_option("--since", o->filter.since,
                  "From: 30m, 1h, 7d, today, 2026-11-23, 2026-11-23T08:00 (UTC unless +HH:MM)");
  cmd->add_option("--until", o->filter.until, "Up to (excluded); a bare date includes that day");
  cmd->add_option("--action", o->filter.actions, "Only these actions")->delimiter(',');
  cmd->add_option("--stage", o->filter.stages, "Only these stages")->delimiter(',');
  cmd->add_option("--rule", o->filter.rules, "Only decisions by these rules")->delimiter(',');
  cmd->add_option("--ip", o->filter.ips, "Only these client addresses or networks")->delimiter(',');
  cmd->callback([o, &exitCode] { exitCode = runReport(*o); });
}

}  // namespace smtpgate::cli
