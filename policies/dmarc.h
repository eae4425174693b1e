#pragma once
/// DMARC (RFC 7489): the From domain's policy and whether SPF or DKIM
/// authenticated a domain aligned with it.
///
/// There is no libopendmarc in Debian 12, so this is RFC 7489 done here:
///  - the author domain is the domain of the one address in the one From
///    field (more than one From field or address, or none: permerror — RFC
///    7489 6.6.1 leaves such messages to local policy, and they must not
///    pass);
///  - the record is the TXT at `_dmarc.<author domain>`, else at
///    `_dmarc.<organizational domain>` (6.6.3); records not starting with
///    `v=DMARC1` are ignored, and more than one DMARC record means none;
///  - the organizational domain is the public suffix plus one label, from
///    the Public Suffix List of Debian's `publicsuffix` package
///    (/usr/share/publicsuffix/public_suffix_list.dat), ICANN and private
///    sections alike; without the file every domain's suffix is its last
///    label (the list's own default rule);
///  - DKIM is aligned when a signature that passed has d= equal to the
///    author domain (adkim=s) or the same organizational domain (adkim=r,
///    the default); SPF likewise with the domain SPF checked (aspf);
///  - pass if either is aligned; otherwise temperror if the record lookup,
///    or an SPF or DKIM check that could still have aligned, failed
///    temporarily; otherwise fail;
///  - `policy` is p=, or sp= when the record was found at the
///    organizational domain and has one; a p= that is not none, quarantine
///    or reject makes the record invalid (none), unless rua= is present, in
///    which case p=none (6.6.3).
/// pct= is reported, not applied: rules decide (`dmarc == fail and
/// dmarc.policy == reject`).
///
/// Threads: `checkDmarc` is reentrant and blocks the calling thread for the
/// record lookups (two at most); the suffix list is loaded once per process
/// and read-only afterwards.
///
/// Limits: IDN labels in the suffix list are UTF-8 while mail domains are
/// A-labels (xn--); the few rules under IDN TLDs therefore never match and
/// those domains fall back to the default rule.

#include <chrono>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "policies/dkim.h"
#include "policies/dns_resolver.h"
#include "policies/spf.h"

namespace smtpgate::policies {

class PublicSuffixList {
 public:
  /// The list in `text` (the publicsuffix.org format: one rule a line,
  /// `//` comments, `*.` wildcards, `!` exceptions).
  static PublicSuffixList parse(std::string_view text);
  /// Debian's list, loaded on first use (empty if the file is missing).
  static const PublicSuffixList& system();
  static constexpr std::string_view kSystemPath = "/usr/share/publicsuffix/public_suffix_list.dat";

  /// "mail.example.co.uk" -> "example.co.uk"; a public suffix itself is
  /// its own organizational domain. Lowercase, no final dot.
  [[nodiscard]] std::string organizationalDomain(std::string_view domain) const;
  [[nodiscard]] std::size_t size() const {
    return rules_.size() + wildcards_.size() + exceptions_.size();
  }

 private:
  std::unordered_set<std::string> rules_;
  std::unordered_set<std::string> wildcards_;  ///< "*.ck" stored as "ck"
  std::unordered_set<std::string> exceptions_;
};

enum class DmarcStatus { None, Pass, Fail, TempError, PermError };
enum class DmarcPolicy { None, Quarantine, Reject };

std::string_view toString(DmarcStatus status);
std::string_view toString(DmarcPolicy policy);

struct DmarcRequest {
  /// The raw (undecoded) value of every top-level From field.
  std::vector<std::string> fromFields;
  const DkimResult* dkim = nullptr;  ///< null: DKIM not checked (never aligned)
  const SpfResult* spf = nullptr;    ///< null: SPF not checked
};

struct DmarcResult {
  DmarcStatus status = DmarcStatus::None;
  DmarcPolicy policy = DmarcPolicy::None;  ///< what the domain asks for
  std::string fromDomain;                  ///< the author domain
  std::string organizationalDomain;
  std::string recordDomain;  ///< where the record was found
  std::string record;
  bool strictDkim = false;  ///< adkim=s
  bool strictSpf = false;   ///< aspf=s
  int pct = 100;
  std::string dkimAlignedDomain;  ///< the d= that aligned, if any
  bool spfAligned = false;
  std::string reason;    ///< why not pass, for logs and `check`
  std::string dnsError;  ///< the temporary failure behind a temperror
};

/// The domain of the one address in `fromFields`; empty with `error` set if
/// there is not exactly one.
std::string authorDomain(const std::vector<std::string>& fromFields, std::string& error);

DmarcResult checkDmarc(DnsResolver& resolver, const DmarcRequest& request,
                       DnsResolver::Clock::time_point deadline,
                       const PublicSuffixList& suffixes = PublicSuffixList::system());

}  // namespace smtpgate::policies
