#pragma once
/// `smtpgate replay`: what a candidate rule set would change, before the
/// admin reloads it (docs/log.md "What would a rule change?").
///
///   smtpgate replay --rules CANDIDATE.toml | --rules FILE.rules...
///                   [-c CONFIG] [--file PATH]... [--no-rotated]
///                   [--since T] [--until T] [--json]
///
/// Reads the decision log like `smtpgate log` (the `[log] decisions` file of
/// `-c`, or each `--file`, with their rotations), rebuilds the envelope of
/// every logged session (connect, HELO, MAIL, RCPT; policies/log_replay.h)
/// and runs it through the candidate rules with DNS off: DNS facts are the
/// ones the log recorded. Prints a summary (sessions read, unchanged, newly
/// refused, newly accepted, otherwise changed, undecidable, by rule) and
/// every changed or undecidable session with its stages, old outcome ->
/// new outcome; `--json` prints the same as one object.
///
/// `--rules`: one `.toml` is a candidate config (its [rules] files and mode
/// and its [failure] dns are used; the log still comes from `-c`/`--file`);
/// anything else is one or more rule files replacing `[rules] files` of the
/// `-c` config (mode and [failure] from there).
///
/// Exit: 0 nothing would change; 1 some session would change; 64 bad usage;
/// 66 no log to read; 78 the config or the candidate rules have errors
/// (printed as file:line:col). Undecidable sessions are reported but do not
/// set the exit status.

#include <CLI/CLI.hpp>

namespace smtpgate::cli {

void addReplayCommand(CLI::App& app, int& exitCode);

}  // namespace smtpgate::cli
