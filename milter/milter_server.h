#pragma once
/// MilterServer — the `smtpgate milter` process: libmilter registration, the
/// listening socket, the callbacks (each a thin adapter onto a MilterSession),
/// signals and rule reload.
///
/// libmilter is process-global: one filter per process, C callbacks without a
/// user pointer. So there is at most one MilterServer per process; the
/// callbacks find it through a process-wide pointer set by open().
///
/// Signals. libmilter owns SIGHUP, SIGTERM and SIGINT: smfi_main() blocks them
/// in every thread and a thread of its own sigwait()s for them. SIGTERM and
/// SIGHUP both stop the listener gracefully (open connections finish), SIGINT
/// aborts them (libmilter signal.c, mi_signal_thread) — libmilter gives no way
/// to tell SIGHUP from SIGTERM afterwards, and a second thread waiting for
/// SIGHUP would race libmilter's for each signal. So in milter mode:
///   SIGUSR2  reloads the config's rules (the proxy's SIGHUP: a set with
///            errors is refused and the running one kept; connections keep
///            the rules they started with);
///   SIGUSR1  reopens the decision log (logrotate), as in the proxy;
///   SIGHUP, SIGTERM  stop accepting, let open connections finish up to the
///            shutdown grace, exit 0;
///   SIGINT   abort open connections and exit.
/// One thread of ours sigwait()s for SIGUSR1 and SIGUSR2, blocked everywhere
/// else before libmilter starts its threads.
///
/// Header changes. Every connection asks the MTA for SMFIF_ADDHDRS and
/// SMFIF_CHGHDRS (as far as it offers them) and for the header fields (no
/// SMFIP_NOHDRS, even when no rule reads the message), because every message
/// let through at end of message gets the Policy's Authentication-Results at
/// the top and loses forged ones. MilterSession decides the changes and
/// their order; the end-of-message callback makes them (smfi_chgheader with
/// a NULL value to delete, smfi_insheader just below the MTA's Received
/// header) before the final answer, and tempfails the message if libmilter
/// refuses one.
///
/// Nagle. libmilter sets only SO_KEEPALIVE on the connections it accepts
/// (listener.c, mi_listener), and writes every reply message with its own
/// writev(). A milter that sends two messages in a row — a header change
/// (SMFIR_ADDHEADER/INSHEADER) and then the final ACCEPT at end of message,
/// as opendkim does with its Authentication-Results — has its second write
/// held back by Nagle's algorithm until the MTA acknowledges the first, and
/// the MTA, only reading, delays that ACK (40 ms on Linux): that is the
/// 11 msgs/s over inet against 326 over a unix socket measured with Debian's
/// opendkim. On Linux an accepted socket inherits TCP_NODELAY from its
/// listening socket, so open() sets TCP_NODELAY on libmilter's listening
/// socket and every milter connection is sent without delay.
///
/// The other direction has the same trap, on Postfix's side, which never sets
/// TCP_NODELAY on its milter connections: a milter that negotiates
/// SMFIP_NODATA still gets the DATA stage's macros, a 20-byte write that
/// needs no reply, and the message follows in a second write that Nagle holds
/// until our delayed ACK of the first (40 ms per message, 18 msgs/s for one
/// session over inet; BENCHMARKS.md "Postfix milter"). So we do not negotiate
/// SMFIP_NODATA: libmilter answers the DATA event with CONTINUE, the reply
/// carries the ACK, and nothing waits.
///
/// Thread-safety: callbacks run on libmilter's per-connection threads; the
/// current RuleSet is swapped under a mutex and each connection keeps the
/// snapshot it negotiated with. The decision log is thread-safe.

#include <chrono>
#include <functional>
#include <string>

#include "policies/decision_log.h"
#include "policies/policy.h"
#include "rules/rule_set.h"

namespace smtpgate::milter {

struct MilterSettings {
  std::string socket = "inet:8891@127.0.0.1";  ///< libmilter syntax: inet:PORT@HOST, unix:/path
  /// Options of every connection's Policy: dryRun from [rules] mode; the
  /// DNS resolver and friends once the caller has them.
  policies::PolicyOptions policy;
  /// Time open connections get to finish after SIGTERM/SIGHUP.
  std::chrono::milliseconds shutdownGrace = std::chrono::seconds(30);
};

using ReloadFunction = std::function<rules::RuleSetPtr()>;

class MilterServer {
 public:
  /// `log` may be null (no decision log); it must outlive the server.
  MilterServer(MilterSettings settings, rules::RuleSetPtr rules, policies::DecisionLog* log,
               ReloadFunction reload);
  ~MilterServer();
  MilterServer(const MilterServer&) = delete;
  MilterServer& operator=(const MilterServer&) = delete;

  /// Registers the filter with libmilter and opens the listening socket
  /// (a stale unix socket file is removed first). False, with the reason on
  /// stderr, if either fails.
  bool open();
  /// Blocks the signals the server takes on its own thread (SIGUSR1, SIGUSR2)
  /// in the calling thread. Call first thing in main, before any thread is
  /// made (the DNS resolver's included), so every thread inherits the mask;
  /// run() does it too, for threads made after this point.
  static void blockServerSignals();
  /// Serves until a stop signal; 0 after a clean stop, 1 if libmilter failed.
  int run();

  struct Impl;

 private:
  Impl* impl_;  // owned; leaked on purpose if connections outlive the grace (see run())
};

}  // namespace smtpgate::milter
