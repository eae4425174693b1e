#include "cli/report_html.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string_view>

namespace smtpgate::cli {

namespace {

using policies::LogCount;

struct CategoryInfo {
  std::string_view name;
  std::string_view color;
  std::string_view help;
};

// Colour-blind-safe palette (Okabe-Ito), in ReportCategory order.
constexpr std::array<CategoryInfo, kReportCategories> kCategories = {{
    {"Passed", "#009E73",
     "accepted by a rule or delivered to the mail server (actions accept, deliver)"},
    {"Rejected", "#D55E00",
     "refused for good with a 5xx reply; the sender gets a bounce (action reject)"},
    {"Deferred", "#E69F00",
     "refused for now with a 4xx reply; a real mail server tries again later (action tempfail)"},
    {"Would refuse", "#CC79A7",
     "a monitor rule or dry-run mode would have refused, but let the mail through "
     "(would-reject, would-tempfail)"},
    {"Other", "#999999",
     "no rule had an opinion, or the client hung up after the server queued the "
     "message (continue, possible-duplicate)"},
}};

constexpr std::array<std::pair<std::string_view, std::string_view>, 5> kStageHelp = {{
    {"connect", "a client opened a connection (its address and reverse DNS are known)"},
    {"helo", "the client introduced itself with HELO/EHLO"},
    {"mail", "the envelope sender was given (MAIL FROM)"},
    {"rcpt", "a recipient was given (RCPT TO); decided per recipient"},
    {"data", "the whole message was received (headers, body, score thresholds)"},
}};

const CategoryInfo& info(ReportCategory c) {
  return kCategories[static_cast<std::size_t>(c)];
}

/// Decodes one UTF-8 sequence at `s[i]`; returns its length (1 for a stray byte).
std::size_t sequenceLength(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  return std::min(n, s.size() - i);
}

/// Bidi controls and line/paragraph separators: they would reorder or break
/// the text around them.
bool unsafeSequence(std::string_view ch) {
  if (ch.size() == 1) {
    const auto c = static_cast<unsigned char>(ch[0]);
    return c < 0x20 || c == 0x7f || c >= 0x80;  // a lone high byte is broken UTF-8
  }
  if (ch.size() == 2) {
    return static_cast<unsigned char>(ch[0]) == 0xc2 && static_cast<unsigned char>(ch[1]) < 0xa0;
  }
  if (ch.size() == 3 && static_cast<unsigned char>(ch[0]) == 0xe2) {
    const auto b1 = static_cast<unsigned char>(ch[1]);
    const auto b2 = static_cast<unsigned char>(ch[2]);
    if (b1 == 0x80 && (b2 == 0x8e || b2 == 0x8f || (b2 >= 0xa8 && b2 <= 0xae))) {
      return true;  // U+200E/F marks, U+2028/9 separators, U+202A-E embeddings
    }
    if (b1 == 0x81 && b2 >= 0xa6 && b2 <= 0xa9) {
      return true;  // U+2066-2069 isolates
    }
  }
  return false;
}

/// HTML-escaped, unsafe characters as '?', cut to `maxChars` with "…".
std::string esc(std::string_view s, std::size_t maxChars = std::string_view::npos) {
  std::string out;
  std::size_t chars = 0;
  for (std::size_t i = 0; i < s.size();) {
    if (chars == maxChars) {
      out += "…";
      break;
    }
    const std::size_t n = sequenceLength(s, i);
    const std::string_view ch = s.substr(i, n);
    i += n;
    ++chars;
    if (unsafeSequence(ch)) {
      out += '?';
      continue;
    }
    switch (ch[0]) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += ch;
    }
  }
  return out;
}

std::string percent(std::uint64_t part, std::uint64_t whole) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%",
                whole ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0);
  return buf;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

/// The smallest 1, 2 or 5 x 10^k at or above `v` (at least 1).
std::uint64_t niceCeiling(std::uint64_t v) {
  std::uint64_t step = 1;
  for (;;) {
    for (std::uint64_t m : {1, 2, 5}) {
      if (m * step >= v) {
        return m * step;
      }
    }
    step *= 10;
  }
}

std::string timeText(policies::LogTime t, std::size_t chars = 16) {
  return policies::formatLogTime(t).substr(0, chars);
}

// ---------------------------------------------------------------------------
// Charts

constexpr int kChartWidth = 960;

std::string timelineSvg(const ReportData& d) {
  if (d.buckets.empty()) {
    return "<p class=\"empty\">No decisions in this period.</p>\n";
  }
  constexpr int kHeight = 280;
  constexpr int kLeft = 70;
  constexpr int kRight = 10;
  constexpr int kTop = 10;
  constexpr int kBottom = 40;
  const int plotW = kChartWidth - kLeft - kRight;
  const int plotH = kHeight - kTop - kBottom;
  std::uint64_t maxTotal = 0;
  for (const auto& b : d.buckets) {
    std::uint64_t t = 0;
    for (auto c : b.counts) {
      t += c;
    }
    maxTotal = std::max(maxTotal, t);
  }
  const std::uint64_t yMax = niceCeiling(std::max<std::uint64_t>(maxTotal, 1));
  const double slot = static_cast<double>(plotW) / static_cast<double>(d.buckets.size());
  const double barW = std::max(1.0, slot * 0.85);
  std::string svg = "<svg class=\"chart\" viewBox=\"0 0 " + std::to_string(kChartWidth) + " " +
                    std::to_string(kHeight) +
                    "\" role=\"img\" aria-label=\"Decisions over time, stacked by outcome\">\n";
  for (int i = 0; i <= 4; ++i) {  // grid lines and y labels
    const double y = kTop + plotH - plotH * i / 4.0;
    svg += "<line class=\"grid\" x1=\"" + std::to_string(kLeft) + "\" x2=\"" +
           std::to_string(kChartWidth - kRight) + "\" y1=\"" + num(y) + "\" y2=\"" + num(y) +
           "\"/><text class=\"axis\" x=\"" + std::to_string(kLeft - 6) + "\" y=\"" + num(y + 4) +
           "\" text-anchor=\"end\">" + groupedNumber(yMax * i / 4) + "</text>\n";
  }
  const std::size_t labelEvery = std::max<std::size_t>(1, d.buckets.size() / 8);
  for (std::size_t i = 0; i < d.buckets.size(); ++i) {
    const ReportBucket& b = d.buckets[i];
    const double x = kLeft + slot * static_cast<double>(i) + (slot - barW) / 2;
    double y = kTop + plotH;
    std::uint64_t total = 0;
    std::string detail;
    for (std::size_t c = 0; c < kReportCategories; ++c) {
      total += b.counts[c];
      if (b.counts[c]) {
        detail += "\n" + std::string(kCategories[c].name) + ": " + groupedNumber(b.counts[c]);
      }
    }
    svg += "<g><title>" + timeText(b.start) + " UTC: " + groupedNumber(total) + " decisions" +
           detail + "</title>";
    for (std::size_t c = 0; c < kReportCategories; ++c) {
      if (!b.counts[c]) {
        continue;
      }
      const double h = plotH * static_cast<double>(b.counts[c]) / static_cast<double>(yMax);
      y -= h;
      svg += "<rect x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(barW) +
             "\" height=\"" + num(h) + "\" fill=\"" + std::string(kCategories[c].color) + "\"/>";
    }
    svg += "</g>\n";
    if (i % labelEvery == 0) {
      const bool daily = d.bucketWidth.count() % 24 == 0;
      svg += "<text class=\"axis\" x=\"" + num(x + barW / 2) + "\" y=\"" +
             std::to_string(kTop + plotH + 16) + "\" text-anchor=\"middle\">" +
             timeText(b.start, 10).substr(5) + "</text>";
      if (!daily) {
        svg += "<text class=\"axis\" x=\"" + num(x + barW / 2) + "\" y=\"" +
               std::to_string(kTop + plotH + 30) + "\" text-anchor=\"middle\">" +
               timeText(b.start).substr(11) + "</text>";
      }
      svg += "\n";
    }
  }
  svg += "</svg>\n";
  return svg;
}

std::string legend() {
  std::string out = "<ul class=\"legend\">\n";
  for (const auto& c : kCategories) {
    out += "<li><span class=\"swatch\" style=\"background:" + std::string(c.color) +
           "\"></span><b>" + std::string(c.name) + "</b>: " + std::string(c.help) + "</li>\n";
  }
  return out + "</ul>\n";
}

/// A horizontal bar chart: one row per value, with its count and share of `whole`.
std::string barsSvg(const std::vector<LogCount>& rows, std::uint64_t whole, std::string_view label,
                    std::string_view (*colorOf)(std::string_view)) {
  if (rows.empty()) {
    return "<p class=\"empty\">None in this period.</p>\n";
  }
  constexpr int kRow = 24;
  constexpr int kLabelW = 300;
  constexpr int kNumW = 150;
  const int barMax = kChartWidth - kLabelW - kNumW - 20;
  std::uint64_t max = 0;
  for (const auto& r : rows) {
    max = std::max(max, r.count);
  }
  const int height = static_cast<int>(rows.size()) * kRow + 4;
  std::string svg = "<svg class=\"chart\" viewBox=\"0 0 " + std::to_string(kChartWidth) + " " +
                    std::to_string(height) + "\" role=\"img\" aria-label=\"" + esc(label) + "\">\n";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const LogCount& r = rows[i];
    const int y = static_cast<int>(i) * kRow + 2;
    const double w = std::max(1.0, barMax * static_cast<double>(r.count) /
                                       static_cast<double>(std::max<std::uint64_t>(max, 1)));
    svg += "<g><title>" + esc(r.value) + ": " + groupedNumber(r.count) + " (" +
           percent(r.count, whole) + ")</title><text class=\"label\" x=\"" +
           std::to_string(kLabelW - 8) + "\" y=\"" + std::to_string(y + 16) +
           "\" text-anchor=\"end\">" + esc(r.value, 40) + "</text><rect x=\"" +
           std::to_string(kLabelW) + "\" y=\"" + std::to_string(y + 3) + "\" width=\"" + num(w) +
           "\" height=\"" + std::to_string(kRow - 6) + "\" fill=\"" +
           std::string(colorOf(r.value)) + "\"/><text class=\"count\" x=\"" + num(kLabelW + w + 6) +
           "\" y=\"" + std::to_string(y + 16) + "\">" + groupedNumber(r.count) +
           " <tspan class=\"pct\">(" + percent(r.count, whole) + ")</tspan></text></g>\n";
  }
  return svg + "</svg>\n";
}

std::string_view actionColor(std::string_view action) {
  return info(reportCategoryOf(action)).color;
}

std::string_view neutralColor(std::string_view) {
  return "#0072B2";
}

std::string_view sourceColor(std::string_view) {
  return "#56B4E9";
}

// ---------------------------------------------------------------------------
// Page

constexpr std::string_view kStyle = R"(
:root { color-scheme: light; }
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
header { background: #1d2330; color: #fff; padding: 20px 32px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 0; color: #c9cfdb; }
main { max-width: 1000px; margin: 0 auto; padding: 16px 20px 40px; }
section { background: #fff; border-radius: 8px; padding: 16px 20px; margin: 16px 0; box-shadow: 0 1px 3px rgba(0,0,0,.12); }
h2 { font-size: 18px; margin: 0 0 6px; }
p.note { color: #555d6e; margin: 0 0 12px; font-size: 14px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { flex: 1 1 150px; border-left: 6px solid #999; background: #fafbfc; padding: 10px 14px; border-radius: 4px; }
.card .value { font-size: 26px; font-weight: bold; }
.card .label { font-size: 13px; color: #555d6e; }
svg.chart { width: 100%; height: auto; display: block; }
svg .grid { stroke: #e1e4ea; stroke-width: 1; }
svg text { font-family: inherit; font-size: 12px; fill: #1d2330; }
svg text.axis { fill: #555d6e; font-size: 11px; }
svg text.count { font-weight: bold; }
svg tspan.pct { font-weight: normal; fill: #555d6e; }
ul.legend { list-style: none; padding: 0; margin: 10px 0 0; font-size: 13px; }
ul.legend li { margin: 3px 0; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px; vertical-align: -1px; border-radius: 2px; }
.two { display: grid; grid-template-columns: 1fr; gap: 0; }
dl { font-size: 13px; margin: 8px 0 0; }
dt { font-weight: bold; float: left; width: 80px; }
dd { margin: 0 0 4px 90px; color: #555d6e; }
.empty { color: #555d6e; font-style: italic; }
footer { color: #555d6e; font-size: 12px; text-align: center; padding: 0 20px 30px; }
code { background: #eef0f3; padding: 1px 4px; border-radius: 3px; }
)";

std::string periodText(const ReportData& d) {
  const auto from = d.since ? d.since : d.first;
  const auto to = d.until ? d.until : (d.since ? std::optional(d.generated) : d.last);
  if (!from || !to) {
    return "no decisions";
  }
  return timeText(*from) + " to " + timeText(*to) + " UTC";
}

std::string cards(const ReportData& d) {
  std::string out =
      "<div class=\"cards\">\n<div class=\"card\" style=\"border-color:#1d2330\">"
      "<div class=\"value\" id=\"total\">" +
      groupedNumber(d.total) + "</div><div class=\"label\">decisions in all</div></div>\n";
  for (std::size_t c = 0; c < kReportCategories; ++c) {
    out += "<div class=\"card\" style=\"border-color:" + std::string(kCategories[c].color) +
           "\"><div class=\"value\">" + groupedNumber(d.totals[c]) + "</div><div class=\"label\">" +
           std::string(kCategories[c].name) + " (" + percent(d.totals[c], d.total) +
           ")</div></div>\n";
  }
  return out + "</div>\n";
}

std::string stageGlossary() {
  std::string out = "<dl>\n";
  for (const auto& [stage, help] : kStageHelp) {
    out += "<dt>" + std::string(stage) + "</dt><dd>" + std::string(help) + "</dd>\n";
  }
  return out + "</dl>\n";
}

std::string section(std::string_view id, std::string_view title, std::string_view note,
                    const std::string& body) {
  return "<section id=\"" + std::string(id) + "\">\n<h2>" + std::string(title) +
         "</h2>\n<p class=\"note\">" + std::string(note) + "</p>\n" + body + "</section>\n";
}

std::string bucketWidthText(std::chrono::hours w) {
  if (w.count() == 1) {
    return "hour";
  }
  if (w.count() % 24 == 0) {
    return w.count() == 24 ? "day" : std::to_string(w.count() / 24) + " days";
  }
  return std::to_string(w.count()) + " hours";
}

}  // namespace

ReportCategory reportCategoryOf(std::string_view action) {
  if (action == "accept" || action == "deliver") {
    return ReportCategory::Passed;
  }
  if (action == "reject") {
    return ReportCategory::Rejected;
  }
  if (action == "tempfail") {
    return ReportCategory::Deferred;
  }
  if (action == "would-reject" || action == "would-tempfail") {
    return ReportCategory::WouldRefuse;
  }
  return ReportCategory::Other;
}

std::string groupedNumber(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) {
      out += ',';
    }
    out += digits[i];
  }
  return out;
}

std::string renderReportHtml(const ReportData& d) {
  std::string files;
  for (const auto& f : d.files) {
    files += (files.empty() ? "" : ", ") + ("<code>" + esc(f) + "</code>");
  }
  std::string html =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
      "style-src 'unsafe-inline'\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<title>smtpgate report: " +
      periodText(d) + "</title>\n<style>" + std::string(kStyle) + "</style>\n</head>\n<body>\n";
  html += "<header><h1>smtpgate report</h1><p>Mail decisions from " + periodText(d) +
          "</p></header>\n<main>\n";
  html += section(
      "overview", "Overview",
      "smtpgate checks every incoming SMTP connection at each step of the conversation and "
      "records a <b>decision</b> whenever it accepts, refuses or passes on a message, a "
      "recipient or a connection. One email can lead to several decisions (for example one per "
      "recipient).",
      cards(d) + legend());
  html += section("timeline", "Decisions over time",
                  "One bar per " + bucketWidthText(d.bucketWidth) +
                      " (UTC), stacked by outcome. Hover over a bar for its numbers.",
                  timelineSvg(d));
  html += section("by-action", "By action",
                  "What smtpgate did, as written in the log's <code>action</code> field.",
                  barsSvg(d.byAction, d.total, "Decisions by action", actionColor));
  html += section(
      "by-stage", "By stage", "At which step of the SMTP conversation the decision was made.",
      barsSvg(d.byStage, d.total, "Decisions by stage", neutralColor) + stageGlossary());
  html += section("by-rule", "Top rules",
                  "The rule that decided (from your rule files; <code>threshold-*</code> means the "
                  "message's spam score reached a threshold). Decisions no rule made, such as "
                  "plain deliveries, are not counted here. Percentages are of all decisions.",
                  barsSvg(d.topRules, d.total, "Top rules", neutralColor));
  html += section("score-rules", "Top score rules",
                  "Rules that added points to a message's spam score, whether or not the message "
                  "was then refused.",
                  barsSvg(d.topScoreRules, d.total, "Top score rules", neutralColor));
  html += section("client-ips", "Top client IP addresses",
                  "The addresses of the machines that connected to us, by decisions about them.",
                  barsSvg(d.topClientIps, d.total, "Top client IP addresses", sourceColor));
  html += section("sender-domains", "Top sender domains",
                  "The domain of the envelope sender (MAIL FROM), which the sender chooses "
                  "freely; <code>&lt;&gt;</code> is the empty sender of bounces.",
                  barsSvg(d.topSenderDomains, d.total, "Top sender domains", sourceColor));
  html += "</main>\n<footer>Generated by <code>smtpgate report</code> at " + timeText(d.generated) +
          " UTC from " + files +
          (d.unreadable ? "; " + groupedNumber(d.unreadable) + " unreadable line(s) skipped"
                        : std::string()) +
          ". This page is self-contained: it loads nothing from the network.</footer>\n"
          "</body>\n</html>\n";
  return html;
}

}  // namespace smtpgate::cli
