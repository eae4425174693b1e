#pragma once
/// ReportHtml — the page of `smtpgate report`: one self-contained HTML file
/// (inline CSS, inline SVG charts, no script, no external request) drawn from
/// the counts of the decision log.
///
/// Pure: takes the numbers (ReportData), returns the page as a string. The
/// page explains itself — what a decision is, what each action and stage
/// means — for a reader who has never seen the JSON log.
///
/// SECURITY: rule ids, client addresses and sender domains come from the log,
/// which holds network input (a HELO or a sender can be any text). Every
/// value is HTML-escaped, and control characters, bidi overrides and line
/// separators are shown as '?', so a value can neither inject markup nor
/// reorder the text around it. A Content-Security-Policy meta tag forbids
/// scripts and every fetch, so even a missed escape could not phone home.

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "policies/decision_log_reader.h"

namespace smtpgate::cli {

/// What the time chart stacks: every action falls in exactly one.
enum class ReportCategory { Passed, Rejected, Deferred, WouldRefuse, Other };
inline constexpr std::size_t kReportCategories = 5;

/// The category of a logged action word.
ReportCategory reportCategoryOf(std::string_view action);

struct ReportBucket {
  policies::LogTime start;
  std::array<std::uint64_t, kReportCategories> counts{};
};

struct ReportData {
  std::vector<std::string> files;  ///< what was read, oldest first
  std::optional<policies::LogTime> since, until;
  std::optional<policies::LogTime> first, last;  ///< of the decisions counted
  policies::LogTime generated;
  std::uint64_t total = 0;
  std::uint64_t unreadable = 0;
  std::array<std::uint64_t, kReportCategories> totals{};
  std::vector<policies::LogCount> byAction, byStage, topRules, topScoreRules, topClientIps,
      topSenderDomains;
  std::chrono::hours bucketWidth{1};
  std::vector<ReportBucket> buckets;
};

/// The whole page.
std::string renderReportHtml(const ReportData& data);

/// "1,234,567".
std::string groupedNumber(std::uint64_t n);

}  // namespace smtpgate::cli
