#pragma once
/// `smtpgate report`: one self-contained HTML page of charts over the
/// decision log (DESIGN.md "One executable").
///
///   smtpgate report [-c CONFIG | --file PATH]... [--since T] [--until T]
///                   [--action A]... [--stage S]... [--rule ID]... [--ip ADDR|CIDR]...
///                   [--no-rotated] -o report.html
///
/// Reads the same files as `smtpgate log` (the config's `[log] decisions`
/// with its rotations, or each `--file`), applies the same filters, counts
/// with the same LogSummary as `log --summary`, and writes the page built by
/// cli/report_html.h: totals by outcome, decisions over time, by action, by
/// stage, top rules, top score rules, top client IPs and sender domains.
/// `-o -` writes to stdout. The file is written to a temporary name beside
/// it and renamed, so a reader never sees half a page.
///
/// Exit: 0 (also with no decisions: the page says so); 64 bad usage; 66 no
/// log file; 73 (EX_CANTCREAT) the output can't be written; 78 the config
/// can't be loaded.

#include <CLI/CLI.hpp>

namespace smtpgate::cli {

void addReportCommand(CLI::App& app, int& exitCode);

}  // namespace smtpgate::cli
