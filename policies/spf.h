#pragma once
/// SPF (RFC 7208), evaluated by smtpgate itself on our DnsResolver.
///
/// `checkSpf` evaluates the MAIL FROM identity, or the HELO identity when
/// MAIL FROM is empty (postmaster@HELO, as RFC 7208 2.4 says), for one
/// client address: check_host() of section 4 with the mechanisms of section
/// 5, the modifiers of section 6 and the macros of section 7. The record
/// parser is spf_record.h (the ABNF of section 12, strictly: any syntax
/// error anywhere in a record is a permerror), the macros spf_macro.h.
/// Only TXT records are read (3.1: type SPF (99) is never queried); a
/// domain with more than one "v=spf1" record is a permerror (4.5).
///
/// Results, as section 2.6 defines them: `none` when the domain publishes
/// no record or cannot be a domain at all (4.3: an empty or over-long
/// label, a single label, a domain literal); `temperror` when a lookup the
/// result depends on times out or fails (SERVFAIL...), except where the RFC
/// says to skip the name (5.5: the PTR lookup and the address lookups of
/// ptr validation); `permerror` for a record error, an include of a domain
/// without a record, or a limit passed. The explanation (exp=, 6.2) is
/// looked up only for a fail; when it cannot be had (no single TXT record,
/// a DNS error, a syntax error) `SpfOptions::defaultExplanation` is used.
///
/// Limits (4.6.4), counted across all includes and redirects of one check:
/// at most 10 terms that query DNS (include, a, mx, ptr, exists, redirect),
/// at most 2 void lookups (NXDOMAIN or no records; the exp= lookup is not
/// counted), at most 10 MX records per mx (more is a permerror), the first
/// 10 PTR names per ptr. Those bound the recursion (includes nest at most
/// 10 deep) and the number of queries (about 10 x 11 plus %{p}'s 11, each
/// name asked once). Time: every lookup has the resolver's per-query
/// timeout, and the whole check a deadline (`SpfOptions::totalTimeout`, 20 s
/// by default, 4.6.4); past it every further lookup fails at once, so a
/// record with many slow names still ends as one `temperror`.
///
/// SECURITY: records (DNS) and the identities (SMTP) are untrusted. The
/// parser and macro expansion are linear and bounded (see their headers);
/// names built from macros are queried as they come, cut to 253 bytes
/// (7.3), never with a NUL. `comment`, `explanation` and `dnsError` are
/// printable ASCII on one line; `receivedSpf` quotes every value, so no CR
/// or LF from a sender, HELO or record reaches a header. Nothing throws out
/// of `checkSpf`: an internal failure (out of memory) is a temperror.
///
/// Threads: `checkSpf` is reentrant (each call has its own state) and
/// blocks the calling thread while it waits for DNS: call it from a worker,
/// never from an event loop thread.

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
  std::string comment;      ///< one-line reason ("matched ip4:192.0.2.0/24 in example.org")
  std::string receivedSpf;  ///< the whole header line "Received-SPF: pass (...) ..."
  std::string dnsError;     ///< the DNS failure behind a temperror, if any
  int dnsLookups = 0;       ///< queries sent to the resolver
};

SpfResult checkSpf(DnsResolver& resolver, const SpfRequest& request,
                   const SpfOptions& options = {});

}  // namespace smtpgate::policies
