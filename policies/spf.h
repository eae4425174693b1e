#pragma once
/// SPF (RFC 7208) with libspf2, its DNS on our DnsResolver.
///
/// `checkSpf` evaluates the MAIL FROM identity, or the HELO identity when
/// MAIL FROM is empty (postmaster@HELO, as RFC 7208 2.4 says), for one
/// client address. libspf2 never touches the network itself: a custom
/// SPF_dns_server_t layer answers its lookups through the process resolver,
/// so they share its cache, servers and timeouts. Type SPF (99) lookups are
/// answered "no data" without a query (RFC 7208 3.1: only TXT is used).
///
/// Time: every lookup has the resolver's per-query timeout, and the whole
/// check a deadline (`SpfOptions::totalTimeout`, 20 s by default, RFC 7208
/// 4.6.4); past it every further lookup fails at once, so a record with
/// many slow names still ends as one `temperror`.
///
/// libspf2 is old C. Its error handler (which calls abort()) is replaced
/// process-wide by one that throws back to `checkSpf`, which answers
/// `temperror` ("libspf2 internal error"): a misbehaving record costs one
/// temperror, never the process (the objects of that one check leak).
/// Warnings and debug output are dropped.
///
/// Two libspf2 shortcomings are worked around in the DNS layer: a TXT
/// record that is not an SPF record (so can only be an exp= explanation) has
/// its spaces given to libspf2 as the macro "%_" (libspf2 turns a literal
/// space into '%' and stops expanding macros after it); and a compile error
/// in the domain's own v=spf1 record is reported as permerror (libspf2
/// leaves the result unset). docs/conformance.md lists what remains.
///
/// Threads: `checkSpf` is reentrant (each call has its own SPF_server_t and
/// DNS layer) and blocks the calling thread while it waits for DNS: call it
/// from a worker, never from an event loop thread.

#include <chrono>
#include <string>
#include <string_view>

#include "policies/dns_resolver.h"
#include "rules/value.h"

namespace smtpgate::policies {

enum class SpfStatus { None, Neutral, Pass, Fail, SoftFail, TempError, PermError };

/// "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror".
std::string_view toString(SpfStatus status);

struct SpfRequest {
  rules::IpAddress ip;
  std::string helo;
  std::string sender;    ///< MAIL FROM; empty: check the HELO identity
  std::string receiver;  ///< our host name, for Received-SPF and %{r}
};

struct SpfOptions {
  std::chrono::milliseconds totalTimeout{20'000};
  /// The explanation of a fail whose domain gives none (a macro-string;
  /// empty: none). The RFC 7208 test suite expects "DEFAULT".
  std::string defaultExplanation = {};
};

struct SpfResult {
  SpfStatus status = SpfStatus::None;
  std::string identity;     ///< "mailfrom" or "helo"
  std::string domain;       ///< the domain checked
  std::string explanation;  ///< the exp= text on fail (may be empty)
  std::string comment;      ///< libspf2's one-line reason, for logs and `check`
  std::string receivedSpf;  ///< the whole header line "Received-SPF: pass (...) ..."
  std::string dnsError;     ///< the DNS failure behind a temperror, if any
  int dnsLookups = 0;       ///< queries sent to the resolver
};

SpfResult checkSpf(DnsResolver& resolver, const SpfRequest& request,
                   const SpfOptions& options = {});

}  // namespace smtpgate::policies
