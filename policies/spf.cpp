#include "policies/spf.h"

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "policies/spf_macro.h"
#include "policies/spf_record.h"
#include "rules/ascii.h"

namespace smtpgate::policies {

namespace {

using Clock = DnsResolver::Clock;

// RFC 7208 4.6.4 processing limits.
constexpr int kMaxDnsTerms = 10;             ///< include, a, mx, ptr, exists and redirect
constexpr int kMaxVoidLookups = 2;           ///< answers that are NXDOMAIN or empty
constexpr std::size_t kMaxMxRecords = 10;    ///< more: the mx mechanism is a permerror
constexpr std::size_t kMaxPtrNames = 10;     ///< more: the rest are ignored
constexpr std::size_t kMaxDomainName = 253;  ///< RFC 1035, text form without the final dot
constexpr std::size_t kMaxLabel = 63;
/// An explanation ends up in one SMTP reply line (RFC 5321 4.5.3.1.5: 512
/// bytes with the code), so longer text is cut.
constexpr std::size_t kMaxExplanation = 400;
constexpr std::chrono::milliseconds kMaxTotalTimeout = std::chrono::hours(1);
/// A term quoted in a comment or header is cut there: records may hold
/// terms of kilobytes.
constexpr std::size_t kMaxTermShown = 100;

/// Who is checked (RFC 7208 2.4, 4.3): MAIL FROM, or postmaster@HELO for
/// a null sender.
struct Identity {
  std::string name;  ///< "mailfrom" or "helo"
  std::string localPart;
  std::string domain;  ///< without a final dot
  std::string sender;  ///< localPart@domain
};

Identity identityOf(const SpfRequest& request) {
  Identity id;
  id.name = request.sender.empty() ? "helo" : "mailfrom";
  if (request.sender.empty()) {
    id.domain = request.helo;
  } else if (const auto at = request.sender.rfind('@'); at != std::string::npos) {
    id.localPart = request.sender.substr(0, at);
    id.domain = request.sender.substr(at + 1);
  } else {
    id.domain = request.sender;  // no "@": a bare domain, as pyspf and Mail::SPF read it
  }
  if (id.localPart.empty()) {
    id.localPart = "postmaster";  // 4.3
  }
  if (!id.domain.empty() && id.domain.back() == '.') {
    id.domain.pop_back();
  }
  id.sender = id.localPart + "@" + id.domain;
  return id;
}

/// `text` on one line of printable ASCII: any other byte becomes '?', so
/// nothing from DNS or SMTP can break a log line, reply or header.
std::string printable(std::string_view text, std::size_t max = std::string::npos) {
  std::string out;
  for (std::size_t i = 0; i < text.size() && i < max; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    out += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?';
  }
  return out;
}

/// A term of a (parsed, so visible ASCII) record for messages.
std::string shown(std::string_view term) {
  return term.size() <= kMaxTermShown ? std::string(term)
                                      : std::string(term.substr(0, kMaxTermShown)) + "...";
}

/// Why `domain` cannot be checked at all (4.3: malformed or not multi-label),
/// or empty. Only the initial domain is judged so: names a record builds with
/// macros are queried as they come (7.3 forbids checking their syntax).
std::string malformedDomain(std::string_view domain) {
  if (domain.empty()) {
    return "empty domain";
  }
  if (domain.size() > kMaxDomainName) {
    return "domain name longer than 253 bytes";
  }
  std::size_t labels = 0;
  std::string_view last;
  for (std::size_t start = 0; start <= domain.size();) {
    const std::size_t dot = std::min(domain.find('.', start), domain.size());
    last = domain.substr(start, dot - start);
    ++labels;
    if (last.empty() || last.size() > kMaxLabel) {
      return last.empty() ? "empty label" : "label longer than 63 bytes";
    }
    if (!std::all_of(last.begin(), last.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
      return "not a domain name (space, control or 8-bit byte)";
    }
    start = dot + 1;
  }
  if (labels < 2) {
    return "not a multi-label domain name";
  }
  return isSpfTopLabel(last) ? std::string() : "invalid top label (a domain literal or address?)";
}

/// A name as DNS compares it: lowercase ASCII, without a final dot.
std::string normalized(std::string_view name) {
  return rules::asciiLower(name.ends_with('.') ? name.substr(0, name.size() - 1) : name);
}

bool sameOrSubdomain(std::string_view name, std::string_view domain) {
  const std::string n = normalized(name);
  const std::string d = normalized(domain);
  return n == d || (n.size() > d.size() && n.ends_with(d) && n[n.size() - d.size() - 1] == '.');
}

/// Whether `client` is in `network`/`prefix`. IPv4 addresses live in
/// ::ffff:0:0/96 (rules::IpAddress), so their prefix starts at bit 96; an
/// IPv4 client never matches an IPv6 network (5: an IPv4-mapped client is IPv4).
bool inNetwork(const rules::IpAddress& client, const rules::IpAddress& network, int prefix) {
  if (client.isV4() && !network.isV4()) {
    return false;
  }
  const unsigned first = client.isV4() ? 96 : 0;
  for (unsigned i = first; i < first + static_cast<unsigned>(prefix); ++i) {
    if (client.bit(i) != network.bit(i)) {
      return false;
    }
  }
  return true;
}

std::string_view typeName(DnsType type) {
  switch (type) {
    case DnsType::A:
      return "A";
    case DnsType::Aaaa:
      return "AAAA";
    case DnsType::Mx:
      return "MX";
    case DnsType::Ptr:
      return "PTR";
    case DnsType::Txt:
      return "TXT";
  }
  return "?";
}

SpfStatus statusOf(SpfQualifier q) {
  switch (q) {
    case SpfQualifier::Pass:
      return SpfStatus::Pass;
    case SpfQualifier::Fail:
      return SpfStatus::Fail;
    case SpfQualifier::SoftFail:
      return SpfStatus::SoftFail;
    case SpfQualifier::Neutral:
      return SpfStatus::Neutral;
  }
  return SpfStatus::Neutral;
}

/// How one check_host() call ended, and what a fail needs for its explanation.
struct HostResult {
  SpfStatus status = SpfStatus::None;
  std::string reason;     ///< one line: why
  std::string mechanism;  ///< the term that matched, "default", or empty (none, errors)
  std::string domain;     ///< the domain whose record decided
  std::optional<SpfMacroString> explanation;  ///< that record's exp=
  std::string dnsError;                       ///< the DNS failure behind a temperror
};

HostResult permError(const std::string& domain, const std::string& why) {
  return HostResult{SpfStatus::PermError, domain + ": " + why, {}, domain, {}, {}};
}

HostResult dnsFailure(DnsType type, const std::string& name, const DnsAnswer& answer) {
  HostResult r;
  r.status = SpfStatus::TempError;
  r.dnsError = std::string(typeName(type)) + " " + name + ": " + answer.error;
  r.reason = "DNS lookup failed: " + r.dnsError;
  return r;
}

/// A mechanism's answer: it matched or not, or check_host() stops now.
struct Outcome {
  bool matched = false;
  bool voidLookup = false;  ///< the lookup had no answer (NXDOMAIN or empty)
  std::optional<HostResult> stop;
};

Outcome matchedIf(bool yes) {
  Outcome o;
  o.matched = yes;
  return o;
}

Outcome stopWith(HostResult result) {
  Outcome o;
  o.stop = std::move(result);
  return o;
}

/// No answer: no match, unless it was one void lookup too many (`stop`).
Outcome voidAnswer(std::optional<HostResult> stop) {
  Outcome o;
  o.voidLookup = true;
  o.stop = std::move(stop);
  return o;
}

/// What the client's validated host names are (5.5, %{p}): the PTR names,
/// the first ten, and which of those have the client's address.
struct PtrCache {
  bool looked = false;
  bool voidLookup = false;
  std::vector<std::string> names;
  std::map<std::string, bool> validated;
};

/// One checkSpf() call: check_host() (section 4) with the limits of 4.6.4
/// counted across every include and redirect, over one deadline.
class Evaluator {
 public:
  Evaluator(DnsResolver& resolver, const SpfRequest& request, const SpfOptions& options,
            const Identity& id)
      : resolver_(resolver),
        client_(request.ip),
        options_(options),
        // (Clamped: a configured "forever" must not overflow the clock.)
        deadline_(Clock::now() + std::min(options.totalTimeout, kMaxTotalTimeout)) {
    base_.sender = id.sender;
    base_.localPart = id.localPart;
    base_.senderDomain = id.domain;
    base_.ip = request.ip;
    base_.helo = request.helo;
    base_.receiver = request.receiver;
    // %{t} only (explanations): SpfOptions has no clock to inject, and a
    // timestamp in a fail's text decides nothing.
    base_.timestamp = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
    base_.validatedName = [this](const std::string& domain) { return validatedName(domain); };
  }

  // `base_.validatedName` points at this object.
  Evaluator(const Evaluator&) = delete;
  Evaluator& operator=(const Evaluator&) = delete;

  HostResult checkHost(const std::string& domain);
  std::string explain(const HostResult& fail);
  [[nodiscard]] int lookups() const { return lookups_; }

 private:
  DnsAnswer query(const std::string& name, DnsType type);
  std::optional<HostResult> fetchRecord(const std::string& domain, SpfRecord& out);
  Outcome evaluate(const SpfMechanism& m, const std::string& domain);
  Outcome matchAddresses(const std::string& name, const SpfMechanism& m);
  Outcome matchA(const std::string& name, const SpfMechanism& m, const std::string& domain);
  Outcome matchMx(const std::string& name, const SpfMechanism& m, const std::string& domain);
  Outcome matchPtr(const std::string& name, const SpfMechanism& m, const std::string& domain);
  Outcome matchExists(const std::string& name, const SpfMechanism& m, const std::string& domain);
  Outcome matchInclude(const std::string& name, const SpfMechanism& m, const std::string& domain);
  HostResult redirect(const SpfMacroString& spec, const std::string& domain);
  std::optional<HostResult> countDnsTerm(const std::string& domain, const std::string& term);
  std::optional<HostResult> countVoid(const std::string& domain, const std::string& term);
  std::optional<std::string> target(const std::optional<SpfMacroString>& spec,
                                    const std::string& domain, std::string& error) const;
  const PtrCache& ptrNames();
  bool validates(const std::string& name);
  std::string validatedName(const std::string& domain);
  std::optional<std::string> explanationAt(const SpfMacroString& spec, const SpfMacroValues& v);
  [[nodiscard]] SpfMacroValues values(const std::string& domain) const;
  [[nodiscard]] DnsType addressType() const { return client_.isV4() ? DnsType::A : DnsType::Aaaa; }

  DnsResolver& resolver_;
  const rules::IpAddress client_;
  const SpfOptions& options_;
  const Clock::time_point deadline_;
  SpfMacroValues base_;
  int lookups_ = 0;
  int dnsTerms_ = 0;
  int voidLookups_ = 0;
  PtrCache ptr_;
};

SpfMacroValues Evaluator::values(const std::string& domain) const {
  SpfMacroValues v = base_;
  v.domain = domain;
  return v;
}

DnsAnswer Evaluator::query(const std::string& name, DnsType type) {
  if (name.find('\0') != std::string::npos) {
    // The resolver takes names as C text: a NUL would cut the name and ask
    // for another one. No real name holds one, so it does not exist.
    return DnsAnswer{DnsStatus::NxDomain, {}, {}};
  }
  if (Clock::now() >= deadline_) {
    return DnsAnswer{
        DnsStatus::TempFail,
        {},
        "SPF check ran out of time (" + std::to_string(options_.totalTimeout.count()) + " ms)"};
  }
  // libunbound reads the name as zone-file text, where "\" escapes: a
  // backslash from a macro value is a literal byte, so it is escaped.
  std::string text;
  for (char c : name) {
    text += c == '\\' ? std::string("\\\\") : std::string(1, c);
  }
  ++lookups_;
  return resolver_.query(text, type, deadline_);
}

std::optional<HostResult> Evaluator::countDnsTerm(const std::string& domain,
                                                  const std::string& term) {
  if (++dnsTerms_ > kMaxDnsTerms) {
    return permError(domain,
                     "more than 10 DNS-querying terms (limit reached at '" + shown(term) + "')");
  }
  return std::nullopt;
}

std::optional<HostResult> Evaluator::countVoid(const std::string& domain, const std::string& term) {
  if (++voidLookups_ > kMaxVoidLookups) {
    return permError(domain,
                     "more than 2 void DNS lookups (limit reached at '" + shown(term) + "')");
  }
  return std::nullopt;
}

std::optional<std::string> Evaluator::target(const std::optional<SpfMacroString>& spec,
                                             const std::string& domain, std::string& error) const {
  if (!spec) {
    return domain;
  }
  auto expanded = spec->expand(values(domain), error);
  if (!expanded) {
    return std::nullopt;
  }
  return truncateSpfDomain(std::move(*expanded));
}

std::optional<HostResult> Evaluator::fetchRecord(const std::string& domain, SpfRecord& out) {
  const DnsAnswer txt = query(domain, DnsType::Txt);
  if (txt.tempFailed()) {
    return dnsFailure(DnsType::Txt, domain, txt);
  }
  std::vector<std::string> records;
  for (const auto& rdata : txt.rdata) {
    auto text = parseTxtRdata(rdata);
    if (text && isSpfRecord(*text)) {
      records.push_back(std::move(*text));
    }
  }
  if (records.empty()) {
    return HostResult{SpfStatus::None, "no SPF record at " + domain, {}, domain, {}, {}};
  }
  if (records.size() > 1) {
    return permError(domain, std::to_string(records.size()) + " SPF records (at most one)");
  }
  SpfRecordParse parsed = parseSpfRecord(records.front());
  if (!parsed.record) {
    return permError(domain, parsed.error);
  }
  out = std::move(*parsed.record);
  return std::nullopt;
}

HostResult Evaluator::checkHost(const std::string& domain) {
  SpfRecord record;
  if (auto stop = fetchRecord(domain, record)) {
    return *stop;
  }
  for (const auto& m : record.mechanisms) {
    Outcome o = evaluate(m, domain);
    if (o.stop) {
      return *o.stop;
    }
    if (o.matched) {
      return HostResult{statusOf(m.qualifier), "matched " + shown(m.text) + " in " + domain,
                        shown(m.text),         domain,
                        record.explanation,    {}};
    }
  }
  // 6.1: redirect= applies only when nothing matched, and never beside "all".
  if (record.redirect && !record.hasAll) {
    return redirect(*record.redirect, domain);
  }
  return HostResult{SpfStatus::Neutral, "no mechanism matched in " + domain,
                    "default",          domain,
                    record.explanation, {}};
}

Outcome Evaluator::evaluate(const SpfMechanism& m, const std::string& domain) {
  switch (m.kind) {
    case SpfMechanismKind::All:
      return matchedIf(true);
    case SpfMechanismKind::Ip4:
      return matchedIf(client_.isV4() && inNetwork(client_, m.network, m.cidr4));
    case SpfMechanismKind::Ip6:
      return matchedIf(!client_.isV4() && inNetwork(client_, m.network, m.cidr6));
    default:
      break;
  }
  if (auto stop = countDnsTerm(domain, m.text)) {
    return stopWith(std::move(*stop));
  }
  std::string error;
  const auto name = target(m.domain, domain, error);
  if (!name) {
    return stopWith(permError(domain, error + " in '" + shown(m.text) + "'"));
  }
  switch (m.kind) {
    case SpfMechanismKind::Include:
      return matchInclude(*name, m, domain);
    case SpfMechanismKind::A:
      return matchA(*name, m, domain);
    case SpfMechanismKind::Mx:
      return matchMx(*name, m, domain);
    case SpfMechanismKind::Ptr:
      return matchPtr(*name, m, domain);
    default:
      return matchExists(*name, m, domain);
  }
}

/// The addresses of `name` of the client's family (5.3, 5.4: A for an
/// IPv4 client, AAAA for IPv6) against the mechanism's CIDR lengths.
Outcome Evaluator::matchAddresses(const std::string& name, const SpfMechanism& m) {
  const DnsType type = addressType();
  const DnsAnswer answer = query(name, type);
  if (answer.tempFailed()) {
    return stopWith(dnsFailure(type, name, answer));
  }
  if (!answer.ok()) {
    return voidAnswer(std::nullopt);
  }
  const int prefix = client_.isV4() ? m.cidr4 : m.cidr6;
  for (const auto& rdata : answer.rdata) {
    const auto address = parseAddressRdata(rdata);
    if (address && inNetwork(client_, *address, prefix)) {
      return matchedIf(true);
    }
  }
  return {};
}

Outcome Evaluator::matchA(const std::string& name, const SpfMechanism& m,
                          const std::string& domain) {
  Outcome o = matchAddresses(name, m);
  if (o.voidLookup) {
    o.stop = countVoid(domain, m.text);
  }
  return o;
}

Outcome Evaluator::matchMx(const std::string& name, const SpfMechanism& m,
                           const std::string& domain) {
  const DnsAnswer mx = query(name, DnsType::Mx);
  if (mx.tempFailed()) {
    return stopWith(dnsFailure(DnsType::Mx, name, mx));
  }
  if (!mx.ok()) {
    return voidAnswer(countVoid(domain, m.text));
  }
  if (mx.rdata.size() > kMaxMxRecords) {
    return stopWith(permError(domain, "'" + shown(m.text) + "': more than 10 MX records"));
  }
  for (const auto& rdata : mx.rdata) {
    const auto host = parseMxRdata(rdata);
    if (!host || host->empty()) {
      continue;  // a null MX (RFC 7505, "."): no host to match
    }
    Outcome o = matchAddresses(*host, m);
    if (o.matched || o.stop) {
      return o;
    }
  }
  return {};
}

const PtrCache& Evaluator::ptrNames() {
  if (ptr_.looked) {
    return ptr_;
  }
  ptr_.looked = true;
  const DnsAnswer answer = query(reverseName(client_), DnsType::Ptr);
  // 5.5: a DNS error on the PTR lookup is a no-match, not a temperror.
  ptr_.voidLookup = answer.status == DnsStatus::NxDomain || answer.status == DnsStatus::NoData;
  for (const auto& rdata : answer.rdata) {
    if (ptr_.names.size() == kMaxPtrNames) {
      break;  // 4.6.4: the names after the first 10 are ignored
    }
    if (auto host = parseNameRdata(rdata)) {
      ptr_.names.push_back(std::move(*host));
    }
  }
  return ptr_;
}

/// Whether `name` resolves back to the client (5.5). A DNS error skips the
/// name rather than failing the check (5.5: "that domain name is skipped").
bool Evaluator::validates(const std::string& name) {
  if (auto it = ptr_.validated.find(name); it != ptr_.validated.end()) {
    return it->second;
  }
  bool valid = false;
  const DnsAnswer answer = query(name, addressType());
  for (const auto& rdata : answer.rdata) {
    valid = valid || parseAddressRdata(rdata) == client_;
  }
  ptr_.validated.emplace(name, valid);
  return valid;
}

Outcome Evaluator::matchPtr(const std::string& name, const SpfMechanism& m,
                            const std::string& domain) {
  const PtrCache& ptr = ptrNames();
  if (ptr.voidLookup) {
    return voidAnswer(countVoid(domain, m.text));
  }
  for (const auto& host : ptr.names) {
    // Only names under the target can match: the others need not be validated.
    if (sameOrSubdomain(host, name) && validates(host)) {
      return matchedIf(true);
    }
  }
  return {};
}

std::string Evaluator::validatedName(const std::string& domain) {
  const std::vector<std::string>& names = ptrNames().names;
  // 7.3: the domain itself first, then a name below it, then any.
  const auto exact = [&](const std::string& host) {
    return normalized(host) == normalized(domain);
  };
  const auto below = [&](const std::string& host) { return sameOrSubdomain(host, domain); };
  const auto any = [](const std::string&) { return true; };
  for (const auto& preferred : {std::function<bool(const std::string&)>(exact),
                                std::function<bool(const std::string&)>(below),
                                std::function<bool(const std::string&)>(any)}) {
    for (const auto& host : names) {
      if (preferred(host) && validates(host)) {
        return host;
      }
    }
  }
  return {};
}

Outcome Evaluator::matchExists(const std::string& name, const SpfMechanism& m,
                               const std::string& domain) {
  // 5.7: always an A query, whatever the client's address family.
  const DnsAnswer answer = query(name, DnsType::A);
  if (answer.tempFailed()) {
    return stopWith(dnsFailure(DnsType::A, name, answer));
  }
  if (!answer.ok()) {
    return voidAnswer(countVoid(domain, m.text));
  }
  return matchedIf(true);
}

Outcome Evaluator::matchInclude(const std::string& name, const SpfMechanism& m,
                                const std::string& domain) {
  HostResult inner = checkHost(name);
  switch (inner.status) {
    case SpfStatus::Pass:
      return matchedIf(true);
    case SpfStatus::Fail:
    case SpfStatus::SoftFail:
    case SpfStatus::Neutral:
      return {};
    case SpfStatus::TempError:
    case SpfStatus::PermError:
      return stopWith(std::move(inner));
    case SpfStatus::None:
      break;
  }
  // 5.2: an included domain without a record is the publisher's mistake.
  return stopWith(permError(domain, "'" + shown(m.text) + "': " + inner.reason));
}

HostResult Evaluator::redirect(const SpfMacroString& spec, const std::string& domain) {
  const std::string term = "redirect=" + spec.text();
  if (auto stop = countDnsTerm(domain, term)) {
    return *stop;
  }
  std::string error;
  const auto name = target(spec, domain, error);
  if (!name) {
    return permError(domain, error + " in '" + shown(term) + "'");
  }
  HostResult result = checkHost(*name);
  if (result.status == SpfStatus::None) {
    // 6.1: no record (or a malformed target) after a redirect is a permerror.
    return permError(domain, "'" + shown(term) + "': " + result.reason);
  }
  return result;
}

std::optional<std::string> Evaluator::explanationAt(const SpfMacroString& spec,
                                                    const SpfMacroValues& v) {
  std::string error;
  const auto name = spec.expand(v, error);
  if (!name) {
    return std::nullopt;
  }
  // 6.2: a DNS error, no record or more than one, or a syntax error in the
  // text: as if there were no exp= (and never an error of the check).
  const DnsAnswer txt = query(truncateSpfDomain(*name), DnsType::Txt);
  if (!txt.ok() || txt.rdata.size() != 1) {
    return std::nullopt;
  }
  const auto text = parseTxtRdata(txt.rdata.front());
  const auto macro =
      text ? SpfMacroString::parse(*text, SpfMacroSyntax::Explanation, error) : std::nullopt;
  return macro ? macro->expand(v, error) : std::nullopt;
}

std::string Evaluator::explain(const HostResult& fail) {
  const SpfMacroValues v = values(fail.domain);
  if (fail.explanation) {
    if (auto text = explanationAt(*fail.explanation, v)) {
      return printable(*text, kMaxExplanation);
    }
  }
  std::string error;
  const auto fallback =
      SpfMacroString::parse(options_.defaultExplanation, SpfMacroSyntax::Explanation, error);
  const auto text = fallback ? fallback->expand(v, error) : std::nullopt;
  return text ? printable(*text, kMaxExplanation) : printable(options_.defaultExplanation);
}

/// A Received-SPF key's value (RFC 7208 9.1): as is when a dot-atom, else
/// a quoted-string. Bytes no header may carry become '?'.
std::string headerValue(std::string_view value) {
  static constexpr std::string_view kAtext = "!#$%&'*+-/=?^_`{|}~";
  bool atom = !value.empty() && value.front() != '.' && value.back() != '.' &&
              value.find("..") == std::string_view::npos;
  for (char c : value) {
    const bool atext = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       kAtext.find(c) != std::string_view::npos;
    atom = atom && (atext || c == '.');
  }
  if (atom) {
    return std::string(value);
  }
  std::string out = "\"";
  for (char c : printable(value)) {
    if (c == '"' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  return out + "\"";
}

/// Text for a header comment: printable, with ( ) \ as quoted-pairs.
std::string headerComment(std::string_view text) {
  std::string out;
  for (char c : printable(text)) {
    if (c == '(' || c == ')' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  return out;
}

/// The comment of Received-SPF, worded as RFC 7208 9.1's example.
std::string resultSentence(SpfStatus status, const std::string& who, const std::string& ip) {
  switch (status) {
    case SpfStatus::Pass:
      return "domain of " + who + " designates " + ip + " as permitted sender";
    case SpfStatus::Fail:
      return "domain of " + who + " does not designate " + ip + " as permitted sender";
    case SpfStatus::SoftFail:
      return "domain of transitioning " + who + " does not designate " + ip +
             " as permitted sender";
    case SpfStatus::Neutral:
      return ip + " is neither permitted nor denied by domain of " + who;
    case SpfStatus::None:
      return "domain of " + who + " does not designate permitted sender hosts";
    case SpfStatus::TempError:
      return "temporary error in processing during lookup of " + who;
    case SpfStatus::PermError:
      return "permanent error in processing domain of " + who;
  }
  return {};
}

/// "Received-SPF: pass (receiver: sentence) client-ip=...; ..." (9.1), one
/// line without CRLF.
std::string receivedSpfHeader(const SpfRequest& request, const Identity& id,
                              const HostResult& result) {
  const std::string ip = request.ip.toString();
  const std::string who = id.name == "helo" ? request.helo : id.sender;
  std::string out = "Received-SPF: " + std::string(toString(result.status)) + " (" +
                    headerComment((request.receiver.empty() ? "" : request.receiver + ": ") +
                                  resultSentence(result.status, who, ip)) +
                    ")";
  std::vector<std::pair<std::string_view, std::string>> pairs = {{"client-ip", ip}};
  if (!request.sender.empty()) {
    pairs.emplace_back("envelope-from", request.sender);
  }
  if (!request.helo.empty()) {
    pairs.emplace_back("helo", request.helo);
  }
  if (!request.receiver.empty()) {
    pairs.emplace_back("receiver", request.receiver);
  }
  pairs.emplace_back("identity", id.name);
  if (!result.mechanism.empty()) {
    pairs.emplace_back("mechanism", result.mechanism);
  } else if (result.status == SpfStatus::TempError || result.status == SpfStatus::PermError) {
    pairs.emplace_back("problem", result.reason);
  }
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    out += (i == 0 ? " " : "; ") + std::string(pairs[i].first) + "=" + headerValue(pairs[i].second);
  }
  return out;
}

SpfResult evaluate(DnsResolver& resolver, const SpfRequest& request, const SpfOptions& options) {
  const Identity id = identityOf(request);
  Evaluator evaluator(resolver, request, options, id);
  HostResult result;
  if (request.sender.empty() && request.helo.empty()) {
    result.reason = "no identity to check (empty MAIL FROM and HELO)";
  } else if (const std::string why = malformedDomain(id.domain); !why.empty()) {
    // 4.3: a domain that cannot exist has no policy: none, not an error.
    result.reason = "'" + printable(id.domain, 64) + "' cannot be checked: " + why;
  } else {
    result = evaluator.checkHost(id.domain);
  }
  SpfResult out;
  out.status = result.status;
  out.identity = id.name;
  out.domain = printable(id.domain);  // (only a malformed domain, "none", can change)
  if (result.status == SpfStatus::Fail) {
    out.explanation = evaluator.explain(result);
  }
  out.comment = printable(result.reason);
  out.receivedSpf = receivedSpfHeader(request, id, result);
  out.dnsError = printable(result.dnsError);
  out.dnsLookups = evaluator.lookups();
  return out;
}

}  // namespace

std::string_view toString(SpfStatus status) {
  switch (status) {
    case SpfStatus::None:
      return "none";
    case SpfStatus::Neutral:
      return "neutral";
    case SpfStatus::Pass:
      return "pass";
    case SpfStatus::Fail:
      return "fail";
    case SpfStatus::SoftFail:
      return "softfail";
    case SpfStatus::TempError:
      return "temperror";
    case SpfStatus::PermError:
      return "permerror";
  }
  return "permerror";
}

SpfResult checkSpf(DnsResolver& resolver, const SpfRequest& request, const SpfOptions& options) {
  // Nothing may escape to the caller (a worker of the proxy or milter): an
  // unexpected failure (out of memory) is a temperror, so the mail is
  // deferred, never passed (STYLE.md G9).
  try {
    return evaluate(resolver, request, options);
  } catch (const std::exception& e) {
    SpfResult out;
    out.status = SpfStatus::TempError;
    out.identity = request.sender.empty() ? "helo" : "mailfrom";
    out.comment = std::string("SPF internal error: ") + e.what();
    return out;
  } catch (...) {
    SpfResult out;
    out.status = SpfStatus::TempError;
    out.comment = "SPF internal error";
    return out;
  }
}

}  // namespace smtpgate::policies
