#include "cli/replay_command.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>
#include <variant>

#include "cli/exit_codes.h"
#include "cli/loaded_config.h"
#include "cli/terminal_text.h"
#include "policies/decision_log_files.h"
#include "policies/decision_log_reader.h"
#include "policies/log_replay.h"
#include "policies/rule_loader.h"

namespace smtpgate::cli {

namespace {

namespace fs = std::filesystem;
using policies::ReplayChange;
using policies::ReplayedSession;
using policies::ReplayKind;
using policies::ReplayOutcome;
using policies::ReplaySummary;

constexpr int kExitChanges = 1;

struct ReplayOptions {
  std::string config;
  std::vector<std::string> rules;
  std::vector<std::string> files;
  bool noRotated = false;
  std::string since;
  std::string until;
  bool json = false;
};

/// The candidate rules and the policy options they run with.
struct Candidate {
  std::string description;  ///< what --rules named
  rules::RuleSetPtr rules;
  policies::PolicyOptions policy;
};

void complain(const std::string& message) {
  fmt::print(stderr, "smtpgate replay: {}\n", message);
}

// ---------------------------------------------------------------------------
// Loading

std::optional<policies::Config> loadBaseConfig(const std::string& path) {
  rules::Diagnostics diags;
  auto config =
      path.empty() ? policies::loadDefaultConfig(diags) : policies::loadConfig(path, diags);
  printDiagnostics(diags);
  return config;
}

/// The candidate named by --rules, or an exit code.
std::variant<Candidate, int> loadCandidate(const ReplayOptions& o, const policies::Config& base) {
  const bool toml = o.rules.size() == 1 && fs::path(o.rules.front()).extension() == ".toml";
  for (const std::string& f : o.rules) {
    std::error_code ec;
    if (!fs::exists(f, ec)) {
      complain("--rules " + f + ": no such file");
      return kExitNoInput;
    }
    if (!toml && fs::path(f).extension() == ".toml") {
      complain("--rules takes one candidate config (.toml) or rule files, not both");
      return kExitUsage;
    }
  }
  rules::Diagnostics diags;
  Candidate c;
  if (toml) {
    auto loaded = loadConfigAndRules(o.rules.front(), diags, {.enabled = false});
    printDiagnostics(diags);
    if (!loaded || !loaded->rules) {
      complain("the candidate " + o.rules.front() + " has errors (see above; smtpgate lint)");
      return kExitConfig;
    }
    c.rules = loaded->rules;
    c.policy = policyOptionsFor(*loaded, "replay");
    c.description = o.rules.front();
  } else {
    LoadedConfig loaded{base, nullptr, nullptr};
    loaded.config.rules.files.clear();
    loaded.config.rules.filesOrigin.clear();
    for (const std::string& f : o.rules) {
      loaded.config.rules.files.push_back(fs::absolute(f).lexically_normal().string());
    }
    loaded.rules = policies::loadRuleSet(loaded.config, diags);
    printDiagnostics(diags);
    if (!loaded.rules) {
      complain("the candidate rules have errors (see above; smtpgate lint)");
      return kExitConfig;
    }
    c.rules = loaded.rules;
    c.policy = policyOptionsFor(loaded, "replay");
    c.description = o.rules.size() == 1
                        ? o.rules.front()
                        : o.rules.front() + " and " + std::to_string(o.rules.size() - 1) + " more";
  }
  return c;
}

/// The log files to read (with rotations unless --no-rotated), or an exit code.
std::variant<std::vector<std::string>, int> logFiles(const ReplayOptions& o,
                                                     const policies::Config& base) {
  std::vector<std::string> named = o.files;
  if (named.empty()) {
    named.push_back(base.log.decisions);
  }
  std::vector<std::string> files;
  std::set<std::string> seen;
  for (const std::string& path : named) {
    std::vector<std::string> found =
        o.noRotated ? std::vector<std::string>{path} : policies::logFilesWithRotations(path);
    std::error_code ec;
    if (!o.files.empty() && !fs::exists(path, ec)) {
      complain(path + ": no such file");
      return kExitNoInput;
    }
    for (std::string& f : found) {
      if (fs::exists(f, ec) && seen.insert(fs::weakly_canonical(f, ec).string()).second) {
        files.push_back(std::move(f));
      }
    }
  }
  if (files.empty()) {
    complain(base.log.decisions +
             " does not exist (no decisions logged yet?); [log] decisions in " + base.source);
    return kExitNoInput;
  }
  return files;
}

// ---------------------------------------------------------------------------
// Output

std::string outcomeText(const ReplayOutcome& o) {
  if (o.action.empty()) {
    return "passed";
  }
  return o.action + (o.rule.empty() ? "" : " by " + clean(o.rule, 64));
}

std::string kindTitle(ReplayKind kind) {
  switch (kind) {
    case ReplayKind::NewlyRefused:
      return "newly refused";
    case ReplayKind::NewlyAccepted:
      return "newly accepted";
    case ReplayKind::Changed:
      return "changed";
    case ReplayKind::Undecidable:
      return "undecidable";
    case ReplayKind::NotReplayable:
      return "not replayable";
    case ReplayKind::Unchanged:
      break;
  }
  return "unchanged";
}

/// `newly refused   4F2A9C01  2026-11-23 09:01:02  203.0.113.5  <a@bulk.example>`
/// then one indented line per changed stage.
std::string sessionText(const ReplayedSession& s) {
  std::string out =
      fmt::format("{:<15} {:<8}  {}  {:<15}  {}\n", kindTitle(s.kind), clean(s.id, 32),
                  policies::formatLogTime(s.time), clean(s.clientIp, 45),
                  s.sender ? "<" + clean(*s.sender) + ">" : std::string("-"));
  for (const ReplayChange& c : s.changes) {
    out += fmt::format("    {:<7} {:<30} {} -> {}", rules::toString(c.stage), clean(c.subject, 64),
                       outcomeText(c.before), outcomeText(c.after));
    if (!c.after.reply.empty()) {
      out += ": " + clean(c.after.reply, 120);
    }
    if (!c.note.empty()) {
      out += " (" + c.note + ")";
    }
    out += '\n';
  }
  if (!s.undecidableStage.empty()) {
    std::string facts;
    for (const std::string& f : s.missingFacts) {
      facts += (facts.empty() ? "" : ", ") + clean(f, 120);
    }
    out += fmt::format("    {:<7} {:<30} undecidable: {}\n", s.undecidableStage,
                       clean(s.undecidableSubject, 64),
                       facts.empty() ? s.reason : "needs " + facts + ", not in the log");
  } else if (s.kind == ReplayKind::Undecidable || s.kind == ReplayKind::NotReplayable) {
    out += "    " + s.reason + "\n";
  }
  return out;
}

void countRows(std::string& out, const std::string& title,
               const std::map<std::string, std::uint64_t>& counts) {
  if (counts.empty()) {
    return;
  }
  std::vector<std::pair<std::string, std::uint64_t>> rows(counts.begin(), counts.end());
  std::stable_sort(rows.begin(), rows.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  out += "\n" + title + "\n";
  for (const auto& [name, n] : rows) {
    out += fmt::format("  {:<28} {:>10}\n", clean(name.empty() ? "-" : name, 64), grouped(n));
  }
}

struct Report {
  const Candidate& candidate;
  const std::vector<std::string>& files;
  const ReplaySummary& summary;
  const std::vector<ReplayedSession>& listed;  ///< changed and undecidable sessions, by time
  std::optional<policies::LogTime> first, last;
  std::uint64_t checkLines = 0;
};

std::string summaryText(const Report& r) {
  const ReplaySummary& s = r.summary;
  std::string out =
      fmt::format("Candidate: {} (ruleset {}, {} rules)\n", clean(r.candidate.description),
                  r.candidate.rules->hash(), r.candidate.rules->rules().size());
  std::string files;
  for (const std::string& f : r.files) {
    files += (files.empty() ? "" : ", ") + clean(f);
  }
  out += "Log: " + files + "\n";
  if (r.first && r.last) {
    out += fmt::format("Sessions from {} to {} (UTC)\n", policies::formatLogTime(*r.first),
                       policies::formatLogTime(*r.last));
  }
  out += "\n";
  const auto row = [&](const char* label, std::uint64_t n) {
    out += fmt::format("{:<30} {:>10}\n", label, grouped(n));
  };
  row("Sessions read", s.sessions);
  row("  unchanged", s.count(ReplayKind::Unchanged));
  row("  newly refused", s.count(ReplayKind::NewlyRefused));
  row("  newly accepted", s.count(ReplayKind::NewlyAccepted));
  row("  otherwise changed", s.count(ReplayKind::Changed));
  row("  undecidable", s.count(ReplayKind::Undecidable));
  row("  not replayable (old lines)", s.count(ReplayKind::NotReplayable));
  countRows(out, "Newly refused, by the candidate rule", s.refusedByRule);
  countRows(out, "Newly accepted, by the rule that refused them", s.acceptedByRule);
  countRows(out, "Undecidable, by the fact the log does not have", s.missingFacts);
  if (!r.listed.empty()) {
    out += "\nSessions\n";
    for (const ReplayedSession& session : r.listed) {
      out += sessionText(session);
    }
  }
  return out;
}

nlohmann::ordered_json outcomeJson(const ReplayOutcome& o) {
  nlohmann::ordered_json j{{"action", o.action.empty() ? "passed" : o.action}};
  if (!o.rule.empty()) {
    j["rule"] = o.rule;
  }
  if (!o.reply.empty()) {
    j["reply"] = o.reply;
  }
  return j;
}

nlohmann::ordered_json sessionJson(const ReplayedSession& s) {
  using Json = nlohmann::ordered_json;
  Json j{{"session", s.id},
         {"time", policies::formatRfc3339Millis(s.time)},
         {"client_ip", s.clientIp},
         {"sender", s.sender ? Json(*s.sender) : Json()},
         {"kind", policies::toString(s.kind)}};
  Json changes = Json::array();
  for (const ReplayChange& c : s.changes) {
    Json change{{"stage", rules::toString(c.stage)},
                {"subject", c.subject},
                {"time", policies::formatRfc3339Millis(c.time)},
                {"kind", policies::toString(c.kind)},
                {"before", outcomeJson(c.before)},
                {"after", outcomeJson(c.after)}};
    if (!c.note.empty()) {
      change["note"] = c.note;
    }
    changes.push_back(std::move(change));
  }
  j["changes"] = std::move(changes);
  if (!s.undecidableStage.empty()) {
    j["undecidable"] = {{"stage", s.undecidableStage},
                        {"subject", s.undecidableSubject},
                        {"missing_facts", s.missingFacts}};
  }
  if (!s.reason.empty()) {
    j["reason"] = s.reason;
  }
  return j;
}

nlohmann::ordered_json countsJson(const std::map<std::string, std::uint64_t>& counts,
                                  const char* key) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (const auto& [name, n] : counts) {
    a.push_back({{key, name}, {"sessions", n}});
  }
  return a;
}

std::string summaryJson(const Report& r, std::uint64_t unreadable, int exitCode) {
  using Json = nlohmann::ordered_json;
  const ReplaySummary& s = r.summary;
  Json j;
  j["candidate"] = {{"rules", r.candidate.description},
                    {"ruleset", r.candidate.rules->hash()},
                    {"rule_count", r.candidate.rules->rules().size()}};
  j["files"] = r.files;
  j["first"] = r.first ? Json(policies::formatRfc3339Millis(*r.first)) : Json();
  j["last"] = r.last ? Json(policies::formatRfc3339Millis(*r.last)) : Json();
  j["sessions"] = s.sessions;
  j["unchanged"] = s.count(ReplayKind::Unchanged);
  j["newly_refused"] = s.count(ReplayKind::NewlyRefused);
  j["newly_accepted"] = s.count(ReplayKind::NewlyAccepted);
  j["changed"] = s.count(ReplayKind::Changed);
  j["undecidable"] = s.count(ReplayKind::Undecidable);
  j["not_replayable"] = s.count(ReplayKind::NotReplayable);
  j["check_lines_skipped"] = r.checkLines;
  j["unreadable_lines"] = unreadable;
  j["newly_refused_by_rule"] = countsJson(s.refusedByRule, "rule");
  j["newly_accepted_by_rule"] = countsJson(s.acceptedByRule, "rule");
  j["undecidable_by_fact"] = countsJson(s.missingFacts, "fact");
  Json sessions = Json::array();
  for (const ReplayedSession& session : r.listed) {
    sessions.push_back(sessionJson(session));
  }
  j["sessions_listed"] = std::move(sessions);
  j["exit"] = exitCode;
  return j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

// ---------------------------------------------------------------------------

int runReplay(const ReplayOptions& o) {
  const policies::LogTime now = std::chrono::system_clock::now();
  std::string error;
  const auto filter =
      policies::LogFilter::compile({.since = o.since, .until = o.until}, now, error);
  if (!filter) {
    complain(error);
    return kExitUsage;
  }
  const std::optional<policies::Config> base = loadBaseConfig(o.config);
  if (!base) {
    return kExitConfig;
  }
  auto candidate = loadCandidate(o, *base);
  if (const int* code = std::get_if<int>(&candidate)) {
    return *code;
  }
  auto files = logFiles(o, *base);
  if (const int* code = std::get_if<int>(&files)) {
    return *code;
  }
  const Candidate& c = std::get<Candidate>(candidate);
  const std::vector<std::string>& paths = std::get<std::vector<std::string>>(files);

  ReplaySummary summary;
  std::vector<ReplayedSession> listed;
  std::optional<policies::LogTime> first, last;
  policies::ReplayOptions replayOptions{c.rules, c.policy};
  // A session is complete once no line of it came for longer than the
  // longest session the proxy allows.
  replayOptions.sessionHorizon = std::max<std::chrono::seconds>(
      std::chrono::hours(1),
      std::chrono::duration_cast<std::chrono::seconds>(base->proxy.sessionLifetime) * 2);
  policies::LogReplay replay(replayOptions, [&](ReplayedSession&& s) {
    summary.add(s);
    first = first ? std::min(*first, s.time) : s.time;
    last = last ? std::max(*last, s.time) : s.time;
    if (s.kind != ReplayKind::Unchanged) {
      listed.push_back(std::move(s));
    }
  });
  policies::LogScanStats stats;
  policies::scanLogFiles(
      paths, *filter, policies::LogReplay::kFields,
      [&replay](const policies::LogEntry& e, std::string_view) { replay.add(e); }, stats);
  replay.finish();
  std::stable_sort(listed.begin(), listed.end(), [](const auto& a, const auto& b) {
    return std::tie(a.time, a.id) < std::tie(b.time, b.id);
  });
  const int exitCode = summary.changed() > 0 ? kExitChanges : kExitAccept;
  const Report report{c, paths, summary, listed, first, last, replay.checkLines()};
  const std::string text =
      o.json ? summaryJson(report, stats.unreadable, exitCode) : summaryText(report);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  for (const std::string& e : stats.fileErrors) {
    complain(e);
  }
  if (stats.unreadable > 0) {
    complain(grouped(stats.unreadable) + " unreadable line(s) skipped (first at " +
             stats.firstUnreadable + ")");
  }
  return exitCode;
}

}  // namespace

void addReplayCommand(CLI::App& app, int& exitCode) {
  auto o = std::make_shared<ReplayOptions>();
  CLI::App* cmd = app.add_subcommand(
      "replay",
      "Re-run the envelope of logged sessions against candidate rules; show what would change");
  cmd->add_option("--rules", o->rules,
                  "Candidate: a config (.toml) whose rules to use, or rule files replacing "
                  "[rules] files of -c")
      ->required();
  cmd->add_option("-c,--config", o->config,
                  "Config of the running gate: its decision log, and mode for rule files "
                  "(default: /etc/smtpgate/smtpgate.toml, else the embedded default)");
  cmd->add_option("--file", o->files, "Read this log file (repeatable) instead of the config's")
      ->allow_extra_args(false);
  cmd->add_flag("--no-rotated", o->noRotated, "Read only the named file, not its rotations");
  cmd->add_option("--since", o->since, "From: 30m, 1h, 7d, today, 2026-11-23, ... (UTC)");
  cmd->add_option("--until", o->until, "Up to (excluded); a bare date includes that day");
  cmd->add_flag("--json", o->json, "Print one JSON object");
  cmd->footer(
      "Exit status: 0 nothing would change, 1 some session would change, 64 bad usage, 66 no "
      "log, 78 config or candidate rules have errors. See docs/log.md.");
  cmd->callback([o, &exitCode] { exitCode = runReplay(*o); });
}

}  // namespace smtpgate::cli
