#pragma once
/// `smtpgate log`: review the decision log (DESIGN.md "Decision log").
///
///   smtpgate log [-c CONFIG | --file PATH]... [--since T] [--until T]
///                [--action A]... [--stage S]... [--rule ID]... [--ip ADDR|CIDR]...
///                [--sender S]... [--rcpt R]... [--session ID]...
///                [-f] [--summary] [--explain SESSION] [--json] [--no-rotated]
///
/// Reads the config's `[log] decisions` file (or each `--file`) together with
/// its logrotate rotations (PATH.1, PATH.2.gz, PATH-20261123.gz, ...), oldest
/// first, and prints the decisions the filters accept:
///  * by default one aligned line per decision (UTC time, session, client,
///    action, stage, rule, reply, sender -> recipients), values cut to fit
///    and control characters shown as '?' (log values are untrusted);
///  * `--json`: the matching lines exactly as written;
///  * `--summary`: counts by action, stage and rule, top client IPs and
///    sender domains, and an hourly histogram (with `--json`, one object);
///  * `--explain SESSION`: every decision of one session in time order;
///  * `-f`: keep reading as lines are appended, across rotations, until
///    SIGINT/SIGTERM. Without `--since` only new lines are shown.
/// See docs/log.md for the filter syntax and examples.
///
/// Exit: 0 (also when nothing matched); 64 bad usage (a bad time, network,
/// action or stage); 66 a `--file` (or, without `--file`, the configured
/// log) does not exist; 78 the config can't be loaded. Unreadable lines are
/// skipped and counted on stderr, never fatal.

#include <CLI/CLI.hpp>

namespace smtpgate::cli {

void addLogCommand(CLI::App& app, int& exitCode);

}  // namespace smtpgate::cli
