#pragma once
/// MilterServer — the `smtpgate milter` process: the listening socket, one
/// thread per open MTA connection (kept for the next connection when that one
/// ends), each running a MilterConversation (milter_conversation.h) onto a
/// MilterSession; signals and rule reload.
///
/// The milter protocol is our own engine (milter_protocol.h says why not
/// libmilter: Debian's is built with a worker pool whose controller polls
/// every open connection for every command). Its behaviour towards the MTA
/// is libmilter's: the same negotiation, replies, header changes and macro
/// lookups, and `inet:PORT@HOST`, `inet6:PORT@HOST` and `unix:/path` sockets.
///
/// Signals, as in the proxy. One thread of ours sigwait()s for them; they are
/// blocked in every other thread (blockServerSignals() first thing in main,
/// before any thread is made):
///   SIGHUP, SIGUSR2  reload the config's rules and the Policy's options
///            (MilterRules; a set with errors is refused and the running
///            one kept; connections keep what they started with). SIGUSR2 is kept from the time
///            libmilter owned SIGHUP, so existing unit files keep working;
///   SIGUSR1  reopens the decision log (logrotate);
///   SIGTERM, SIGINT  stop accepting, let open connections finish up to the
///            shutdown grace, then end them; exit 0.
///
/// Header changes. Every connection asks the MTA for SMFIF_ADDHDRS and
/// SMFIF_CHGHDRS (as far as it offers them) and for the header fields (no
/// SMFIP_NOHDRS, even when no rule reads the message), because every message
/// let through at end of message gets the Policy's Authentication-Results at
/// the top and loses forged ones. MilterSession decides the changes and
/// their order; they go out right before the final answer.
///
/// Nagle. A milter that sends two messages in a row — a header change and
/// then the final ACCEPT at end of message, as opendkim does with its
/// Authentication-Results — has its second write held back by Nagle's
/// algorithm until the MTA acknowledges the first, and the MTA, only reading,
/// delays that ACK (40 ms on Linux): that is the 11 msgs/s over inet against
/// 326 over a unix socket measured with Debian's opendkim (libmilter sets no
/// TCP_NODELAY and writes every reply on its own). We set TCP_NODELAY on
/// every accepted connection, and write all the replies to what the MTA sent
/// in one go (the header changes and the final answer in one segment).
///
/// The other direction has the same trap, on Postfix's side, which never sets
/// TCP_NODELAY on its milter connections: a milter that negotiates
/// SMFIP_NODATA still gets the DATA stage's macros, a 20-byte write that
/// needs no reply, and the message follows in a second write that Nagle holds
/// until our delayed ACK of the first (40 ms per message, 18 msgs/s for one
/// session over inet; BENCHMARKS.md "Postfix milter"). So we do not negotiate
/// SMFIP_NODATA: the DATA event is answered with CONTINUE, the reply carries
/// the ACK, and nothing waits. Header fields, end of headers and body are
/// negotiated without reply (SMFIP_NR_*): Postfix buffers what needs no
/// answer and sends it with the end of message, which does, in one write.
///
/// Thread-safety: a connection is served by one thread at a time; the current
/// RuleSet is swapped under a mutex and each SMTP session keeps the snapshot
/// it negotiated with. The decision log is thread-safe.

#include <chrono>
#include <functional>
#include <string>

#include "policies/decision_log.h"
#include "policies/policy.h"
#include "rules/rule_set.h"

namespace smtpgate::milter {

struct MilterSettings {
  std::string socket = "inet:8891@127.0.0.1";  ///< inet:PORT@HOST, inet6:PORT@HOST, unix:/path
  /// Time open connections get to finish after SIGTERM/SIGHUP.
  std::chrono::milliseconds shutdownGrace = std::chrono::seconds(30);
};

/// What a reload puts in force at once for new connections: the rules and
/// the options of their Policy (mode, DNS, [auth], [dkim]). The socket and
/// the shutdown grace are read at start only.
struct MilterRules {
  rules::RuleSetPtr rules;
  policies::PolicyOptions policy;
};

/// Loads the config and rules anew; nullopt (with the reasons reported) on errors.
using ReloadFunction = std::function<std::optional<MilterRules>()>;

class MilterServer {
 public:
  /// `log` may be null (no decision log); it must outlive the server.
  MilterServer(MilterSettings settings, MilterRules rules, policies::DecisionLog* log,
               ReloadFunction reload);
  ~MilterServer();
  MilterServer(const MilterServer&) = delete;
  MilterServer& operator=(const MilterServer&) = delete;

  /// Opens the listening socket (a stale unix socket file is removed first;
  /// anything else at that path is an error). False, with the reason on
  /// stderr, if that fails.
  bool open();
  /// Blocks the signals the server takes on its own thread (SIGHUP, SIGUSR1,
  /// SIGUSR2, SIGTERM, SIGINT) in the calling thread. Call first thing in main, before any thread
  /// is made (the DNS resolver's included), so every thread inherits the mask; run() does it too,
  /// for threads made after this point.
  static void blockServerSignals();
  /// Serves until a stop signal; 0 after a clean stop, 1 if the listening
  /// socket failed.
  int run();

  struct Impl;

 private:
  Impl* impl_;  // owned; leaked on purpose if connections outlive the grace (see run())
};

}  // namespace smtpgate::milter
