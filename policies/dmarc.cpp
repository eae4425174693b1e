#include "policies/dmarc.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "rules/ascii.h"

namespace smtpgate::policies {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) {
    s.remove_prefix(1);
  }
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) {
    s.remove_suffix(1);
  }
  return s;
}

std::string normalDomain(std::string_view d) {
  d = trim(d);
  while (!d.empty() && d.back() == '.') {
    d.remove_suffix(1);
  }
  return rules::asciiLower(d);
}

/// `value` without RFC 5322 comments (nested, quoted-pairs respected), and
/// its top-level comma-separated parts (commas in quotes or <> don't split).
std::vector<std::string> addressParts(std::string_view value) {
  std::vector<std::string> parts(1);
  int depth = 0;
  bool quoted = false;
  bool angle = false;
  for (std::size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (c == '\\' && i + 1 < value.size() && (quoted || depth > 0)) {
      if (depth == 0) {
        parts.back() += value.substr(i, 2);
      }
      ++i;
      continue;
    }
    if (depth > 0) {
      depth += c == '(' ? 1 : c == ')' ? -1 : 0;
      continue;
    }
    if (quoted) {
      quoted = c != '"';
      parts.back() += c;
      continue;
    }
    if (c == '(') {
      depth = 1;
    } else if (c == '"') {
      quoted = true;
      parts.back() += c;
    } else if (c == '<') {
      angle = true;
      parts.back() += c;
    } else if (c == '>') {
      angle = false;
      parts.back() += c;
    } else if (c == ',' && !angle) {
      parts.emplace_back();
    } else {
      parts.back() += c;
    }
  }
  std::vector<std::string> out;
  for (auto& p : parts) {
    if (!trim(p).empty()) {
      out.emplace_back(trim(p));
    }
  }
  return out;
}

struct Record {
  DmarcPolicy p = DmarcPolicy::None;
  bool pValid = false;
  bool hasSp = false;
  DmarcPolicy sp = DmarcPolicy::None;
  bool strictDkim = false;
  bool strictSpf = false;
  int pct = 100;
  bool hasRua = false;
};

bool isDmarcRecord(std::string_view text) {
  text = trim(text);
  if (text.size() < 8 || rules::asciiLower(text.substr(0, 1)) != "v") {
    return false;
  }
  text.remove_prefix(1);
  text = trim(text);
  if (text.empty() || text.front() != '=') {
    return false;
  }
  text.remove_prefix(1);
  text = trim(text);
  return text.substr(0, 6) == "DMARC1" &&
         (text.size() == 6 || text[6] == ';' || std::isspace(static_cast<unsigned char>(text[6])));
}

bool parsePolicy(std::string_view v, DmarcPolicy& out) {
  const std::string l = rules::asciiLower(trim(v));
  if (l == "none") {
    out = DmarcPolicy::None;
  } else if (l == "quarantine") {
    out = DmarcPolicy::Quarantine;
  } else if (l == "reject") {
    out = DmarcPolicy::Reject;
  } else {
    return false;
  }
  return true;
}

Record parseRecord(std::string_view text) {
  Record r;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t end = text.find(';', pos);
    std::string_view tag = trim(text.substr(pos, end == text.npos ? text.npos : end - pos));
    const std::size_t eq = tag.find('=');
    if (eq != std::string_view::npos) {
      const std::string name = rules::asciiLower(trim(tag.substr(0, eq)));
      const std::string_view value = trim(tag.substr(eq + 1));
      if (name == "p") {
        r.pValid = parsePolicy(value, r.p);
      } else if (name == "sp") {
        r.hasSp = parsePolicy(value, r.sp);
      } else if (name == "adkim") {
        r.strictDkim = rules::asciiLower(value) == "s";
      } else if (name == "aspf") {
        r.strictSpf = rules::asciiLower(value) == "s";
      } else if (name == "pct") {
        int pct = 0;
        bool digits = !value.empty() && value.size() <= 3;
        for (char c : value) {
          digits = digits && std::isdigit(static_cast<unsigned char>(c));
          pct = pct * 10 + (c - '0');
        }
        if (digits && pct <= 100) {
          r.pct = pct;
        }
      } else if (name == "rua") {
        r.hasRua = !value.empty();
      }
    }
    if (end == std::string_view::npos) {
      break;
    }
    pos = end + 1;
  }
  return r;
}

enum class Lookup { Found, NotFound, Several, TempFail };

Lookup findRecord(DnsResolver& resolver, const std::string& domain,
                  DnsResolver::Clock::time_point deadline, std::string& record,
                  std::string& error) {
  DnsAnswer answer = resolver.query("_dmarc." + domain, DnsType::Txt, deadline);
  if (answer.status == DnsStatus::TempFail) {
    error = "_dmarc." + domain + ": " + answer.error;
    return Lookup::TempFail;
  }
  int found = 0;
  for (const auto& rdata : answer.rdata) {
    auto text = parseTxtRdata(rdata);
    if (text && isDmarcRecord(*text)) {
      record = *text;
      ++found;
    }
  }
  return found == 0 ? Lookup::NotFound : found == 1 ? Lookup::Found : Lookup::Several;
}

}  // namespace

PublicSuffixList PublicSuffixList::parse(std::string_view text) {
  PublicSuffixList list;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    std::string_view line = text.substr(pos, end == text.npos ? text.npos : end - pos);
    pos = end == text.npos ? text.size() : end + 1;
    // A rule is the first whitespace-delimited word of a line.
    line = trim(line);
    line = line.substr(0, std::min(line.find(' '), line.find('\t')));
    if (line.empty() || line.starts_with("//")) {
      continue;
    }
    if (line.starts_with("!")) {
      list.exceptions_.insert(rules::asciiLower(line.substr(1)));
    } else if (line.starts_with("*.")) {
      list.wildcards_.insert(rules::asciiLower(line.substr(2)));
    } else {
      list.rules_.insert(rules::asciiLower(line));
    }
  }
  return list;
}

const PublicSuffixList& PublicSuffixList::system() {
  static const PublicSuffixList list = [] {
    std::ifstream in{std::string(kSystemPath)};
    std::ostringstream text;
    text << in.rdbuf();
    return parse(text.str());
  }();
  return list;
}

std::string PublicSuffixList::organizationalDomain(std::string_view domain) const {
  const std::string d = normalDomain(domain);
  std::vector<std::size_t> starts{0};  // where each label begins
  for (std::size_t i = 0; i < d.size(); ++i) {
    if (d[i] == '.') {
      starts.push_back(i + 1);
    }
  }
  const std::size_t labels = starts.size();
  // The public suffix is the longest matching rule (exceptions first);
  // without one, the last label ("*", the default rule).
  std::size_t suffixLabels = 1;
  for (std::size_t i = 0; i < labels; ++i) {
    const std::string candidate = d.substr(starts[i]);
    if (exceptions_.count(candidate) != 0) {
      suffixLabels = labels - i - 1;
      break;
    }
    if (rules_.count(candidate) != 0) {
      suffixLabels = labels - i;
      break;
    }
    if (i + 1 < labels && wildcards_.count(d.substr(starts[i + 1])) != 0) {
      suffixLabels = labels - i;
      break;
    }
  }
  if (suffixLabels >= labels) {
    return d;  // the domain is a public suffix
  }
  return d.substr(starts[labels - suffixLabels - 1]);
}

std::string_view toString(DmarcStatus status) {
  switch (status) {
    case DmarcStatus::None:
      return "none";
    case DmarcStatus::Pass:
      return "pass";
    case DmarcStatus::Fail:
      return "fail";
    case DmarcStatus::TempError:
      return "temperror";
    case DmarcStatus::PermError:
      return "permerror";
  }
  return "none";
}

std::string_view toString(DmarcPolicy policy) {
  switch (policy) {
    case DmarcPolicy::None:
      return "none";
    case DmarcPolicy::Quarantine:
      return "quarantine";
    case DmarcPolicy::Reject:
      return "reject";
  }
  return "none";
}

std::string authorDomain(const std::vector<std::string>& fromFields, std::string& error) {
  if (fromFields.empty()) {
    error = "no From header field";
    return {};
  }
  if (fromFields.size() > 1) {
    error = "more than one From header field";
    return {};
  }
  const auto parts = addressParts(fromFields[0]);
  if (parts.size() != 1) {
    error = parts.empty() ? "empty From header field" : "more than one From address";
    return {};
  }
  std::string_view address = parts[0];
  if (auto lt = address.rfind('<'); lt != std::string_view::npos) {
    address = address.substr(lt + 1);
    address = address.substr(0, address.find('>'));
  }
  const auto at = address.rfind('@');
  std::string domain =
      at == std::string_view::npos ? std::string() : normalDomain(address.substr(at + 1));
  if (domain.empty() || domain.front() == '[' ||
      domain.find_first_of(" \t<>\"(),;:\\") != std::string::npos) {
    error = "no domain in the From address";
    return {};
  }
  return domain;
}

DmarcResult checkDmarc(DnsResolver& resolver, const DmarcRequest& request,
                       DnsResolver::Clock::time_point deadline, const PublicSuffixList& suffixes) {
  DmarcResult result;
  std::string error;
  result.fromDomain = authorDomain(request.fromFields, error);
  if (result.fromDomain.empty()) {
    result.status = DmarcStatus::PermError;
    result.reason = error;
    return result;
  }
  result.organizationalDomain = suffixes.organizationalDomain(result.fromDomain);

  std::string record;
  Lookup found = findRecord(resolver, result.fromDomain, deadline, record, result.dnsError);
  result.recordDomain = result.fromDomain;
  if (found == Lookup::NotFound && result.organizationalDomain != result.fromDomain) {
    found = findRecord(resolver, result.organizationalDomain, deadline, record, result.dnsError);
    result.recordDomain = result.organizationalDomain;
  }
  switch (found) {
    case Lookup::TempFail:
      result.status = DmarcStatus::TempError;
      result.reason = "DMARC record lookup failed";
      return result;
    case Lookup::NotFound:
      result.reason = "no DMARC record";
      result.recordDomain.clear();
      return result;
    case Lookup::Several:
      result.reason = "more than one DMARC record at _dmarc." + result.recordDomain;
      return result;
    case Lookup::Found:
      break;
  }
  result.record = record;
  const Record r = parseRecord(record);
  if (!r.pValid && !r.hasRua) {
    result.reason = "DMARC record without a valid p= (ignored)";
    return result;
  }
  const bool atOrganization = result.recordDomain != result.fromDomain;
  result.policy = atOrganization && r.hasSp ? r.sp : r.pValid ? r.p : DmarcPolicy::None;
  result.strictDkim = r.strictDkim;
  result.strictSpf = r.strictSpf;
  result.pct = r.pct;

  auto aligned = [&](const std::string& domain, bool strict) {
    const std::string d = normalDomain(domain);
    return strict ? d == result.fromDomain
                  : suffixes.organizationalDomain(d) == result.organizationalDomain;
  };
  bool couldStillAlign = false;
  if (request.dkim != nullptr) {
    for (const auto& s : request.dkim->signatures) {
      if (!aligned(s.domain, r.strictDkim)) {
        continue;
      }
      if (s.status == DkimStatus::Pass) {
        result.dkimAlignedDomain = s.domain;
        break;
      }
      couldStillAlign = couldStillAlign || s.status == DkimStatus::TempError;
    }
  }
  if (request.spf != nullptr && !request.spf->domain.empty() &&
      aligned(request.spf->domain, r.strictSpf)) {
    result.spfAligned = request.spf->status == SpfStatus::Pass;
    couldStillAlign = couldStillAlign || request.spf->status == SpfStatus::TempError;
  }
  if (!result.dkimAlignedDomain.empty() || result.spfAligned) {
    result.status = DmarcStatus::Pass;
  } else if (couldStillAlign) {
    result.status = DmarcStatus::TempError;
    result.reason = "an aligned SPF or DKIM check failed temporarily";
    if (result.dnsError.empty()) {
      result.dnsError = request.dkim && !request.dkim->dnsError.empty() ? request.dkim->dnsError
                        : request.spf                                   ? request.spf->dnsError
                                                                        : std::string();
    }
  } else {
    result.status = DmarcStatus::Fail;
    result.reason = "no aligned SPF or DKIM pass";
  }
  return result;
}

}  // namespace smtpgate::policies
