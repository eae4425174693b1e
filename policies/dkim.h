#pragma once
/// DKIM verification (RFC 6376, RFC 8463) with libopendkim, its key lookups
/// on our DnsResolver.
///
/// `verifyDkim` checks the DKIM-Signature fields of one whole message and
/// returns one result per signature: pass, fail, neutral, temperror or
/// permerror (RFC 8601 2.7.1), with d=, s=, the algorithm, the key size and
/// whether an l= tag left part of the body unsigned (`partialBody`: such a
/// signature can pass for a message with anything appended; rules should not
/// trust it blindly). The message's result is pass if any signature passed,
/// else temperror, fail, permerror, neutral in that order (a temporary
/// failure comes before fail: a retry may pass), none without signatures.
///
/// DNS: libopendkim never touches the network. At end of headers (its
/// prescreen callback) the keys of every signature to check are looked up at
/// once through the process resolver (`queryAsync`, in parallel, one shared
/// deadline `DkimOptions::totalTimeout`); libopendkim's key-lookup callback
/// then answers from those results. A key whose lookup failed temporarily
/// (timeout, SERVFAIL) makes that signature temperror, and it is not given to
/// libopendkim at all; a key that does not exist (NXDOMAIN, no TXT) is
/// permerror. With several TXT records at a key name, the first is used.
///
/// Rules kept beyond libopendkim's own:
///  - at most `maxSignatures` signatures are checked, in message order; the
///    rest are counted in `signaturesSkipped` and cost no DNS;
///  - a message with more than one From field cannot pass (RFC 6376 8.15,
///    RFC 7489 6.6.1): signatures that verified are reported fail ("more
///    than one From header field"); with no From at all, permerror.
///
/// Threads: `verifyDkim` may run on any number of threads at once. libopendkim
/// keeps state in its DKIM_LIB handle (options, callbacks, the DNS service),
/// so each thread gets its own handle (thread_local, created on first use,
/// closed at thread exit); no handle is ever shared between threads.
/// `verifyDkim` blocks its thread while keys are looked up: call it from a
/// worker, never from an event loop thread.
///
/// SECURITY: the message comes from the network. libopendkim parses it
/// (header fields over its limit fail that signature, not the process); key
/// records come from DNS and are handed to libopendkim as text. Work is
/// linear in the message size per signature checked, and bounded in number
/// by `maxSignatures`.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "policies/dns_resolver.h"

namespace smtpgate::policies {

enum class DkimStatus { None, Pass, Fail, Neutral, TempError, PermError };

/// "none", "pass", "fail", "neutral", "temperror", "permerror".
std::string_view toString(DkimStatus status);

struct DkimSignature {
  DkimStatus status = DkimStatus::PermError;
  std::string domain;            ///< d=, lowercase
  std::string selector;          ///< s=
  std::string identity;          ///< i= (or "@" + d= when absent)
  std::string algorithm;         ///< "rsa-sha256", "ed25519-sha256", "rsa-sha1"
  std::string canonicalization;  ///< "relaxed/simple"
  unsigned keyBits = 0;          ///< 0 if the key was not loaded
  long long bodyLength = -1;     ///< the l= value, -1 without l=
  bool partialBody = false;      ///< l= covered less than the whole body
  std::string headerB;           ///< a unique prefix of b=, for header.b (RFC 6008)
  std::string reason;            ///< why it did not pass ("signature mismatch")
};

struct DkimResult {
  DkimStatus status = DkimStatus::None;
  std::vector<DkimSignature> signatures;  ///< the checked ones, in message order
  std::size_t signaturesSkipped = 0;      ///< beyond DkimOptions::maxSignatures
  std::size_t fromHeaders = 0;            ///< From fields in the message
  std::string error;                      ///< a message-level problem, if any
  std::string dnsError;                   ///< the first temporary DNS failure, if any
  int dnsLookups = 0;                     ///< key queries sent to the resolver

  /// The d= of every signature that passed, lowercase, without repeats.
  [[nodiscard]] std::vector<std::string> passingDomains() const;
};

struct DkimOptions {
  std::size_t maxSignatures = 5;  ///< `[dkim] max_signatures`
  /// All key lookups of one message together (each also has the resolver's
  /// per-query timeout).
  std::chrono::milliseconds totalTimeout{10'000};
};

/// Verifies every DKIM signature of `rawMessage` (CRLF line ends; bare LF is
/// accepted too). Never throws for anything the message or DNS does.
DkimResult verifyDkim(DnsResolver& resolver, std::string_view rawMessage,
                      const DkimOptions& options = {});

}  // namespace smtpgate::policies
