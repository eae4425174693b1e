#include "policies/spf_record.h"

#include <array>
#include <cstdio>

namespace smtpgate::policies {

namespace {

constexpr std::string_view kVersion = "v=spf1";
constexpr std::size_t kMaxQuotedTerm = 64;
constexpr int kMaxCidr4 = 32;
constexpr int kMaxCidr6 = 128;

struct MechanismName {
  std::string_view name;
  SpfMechanismKind kind;
};
constexpr std::array<MechanismName, 8> kMechanisms = {{
    {"all", SpfMechanismKind::All},
    {"include", SpfMechanismKind::Include},
    {"a", SpfMechanismKind::A},
    {"mx", SpfMechanismKind::Mx},
    {"ptr", SpfMechanismKind::Ptr},
    {"ip4", SpfMechanismKind::Ip4},
    {"ip6", SpfMechanismKind::Ip6},
    {"exists", SpfMechanismKind::Exists},
}};

bool isAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    const char x = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] - 'A' + 'a') : a[i];
    if (x != b[i]) {
      return false;
    }
  }
  return true;
}

/// A term for an error message: quoted, bytes outside visible ASCII as
/// \xNN, at most kMaxQuotedTerm bytes of it.
std::string quoted(std::string_view term) {
  std::string out = "'";
  for (std::size_t i = 0; i < term.size() && i < kMaxQuotedTerm; ++i) {
    const auto c = static_cast<unsigned char>(term[i]);
    if (c > 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    }
  }
  return out + (term.size() > kMaxQuotedTerm ? "...'" : "'");
}

/// A CIDR length: "0" or digits without a leading zero, at most `max`.
bool parseCidrLength(std::string_view digits, int max, int& out) {
  if (digits.empty() || digits.size() > 3 || (digits.size() > 1 && digits[0] == '0')) {
    return false;
  }
  int value = 0;
  for (char c : digits) {
    if (!isDigit(c)) {
      return false;
    }
    value = value * 10 + (c - '0');
  }
  if (value > max) {
    return false;
  }
  out = value;
  return true;
}

/// If `arg` ends in "//" DIGITS (`doubleSlash`) or in a single "/" DIGITS
/// (not), those digits, and `arg` loses them; else nullopt.
std::optional<std::string_view> cutSlashDigits(std::string_view& arg, bool doubleSlash) {
  const std::size_t slash = arg.rfind('/');
  if (slash == std::string_view::npos || slash + 1 == arg.size()) {
    return std::nullopt;
  }
  const std::string_view digits = arg.substr(slash + 1);
  for (char c : digits) {
    if (!isDigit(c)) {
      return std::nullopt;
    }
  }
  const bool twoSlashes = slash > 0 && arg[slash - 1] == '/';
  if (twoSlashes != doubleSlash) {
    return std::nullopt;
  }
  arg = arg.substr(0, doubleSlash ? slash - 1 : slash);
  return digits;
}

/// dual-cidr-length = [ ip4-cidr-length ] [ "/" ip6-cidr-length ], cut
/// from the end of `arg` (a and mx).
bool cutDualCidr(std::string_view& arg, SpfMechanism& m, std::string& error) {
  if (auto v6 = cutSlashDigits(arg, true)) {
    if (!parseCidrLength(*v6, kMaxCidr6, m.cidr6)) {
      error = "invalid IPv6 CIDR length in " + quoted(m.text);
      return false;
    }
  }
  if (auto v4 = cutSlashDigits(arg, false)) {
    if (!parseCidrLength(*v4, kMaxCidr4, m.cidr4)) {
      error = "invalid IPv4 CIDR length in " + quoted(m.text);
      return false;
    }
  }
  return true;
}

/// ip4-network: four decimal octets 0-255 without leading zeros.
std::optional<rules::IpAddress> parseIp4Network(std::string_view text) {
  std::uint32_t value = 0;
  int octets = 0;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t dot = text.find('.', start);
    const std::string_view part =
        text.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    int octet = 0;
    if (++octets > 4 || !parseCidrLength(part, 255, octet)) {
      return std::nullopt;  // (octets follow the same no-leading-zero digits rule)
    }
    value = value << 8 | static_cast<std::uint32_t>(octet);
    if (dot == std::string_view::npos) {
      break;
    }
    start = dot + 1;
  }
  return octets == 4 ? std::optional(rules::IpAddress::fromV4(value)) : std::nullopt;
}

/// ip6-network: RFC 4291 text (with a colon, so never an IPv4 address).
std::optional<rules::IpAddress> parseIp6Network(std::string_view text) {
  if (text.find(':') == std::string_view::npos || text.find('[') != std::string_view::npos) {
    return std::nullopt;
  }
  return rules::IpAddress::parse(text);
}

/// ip4 / ip6: ":" network [ "/" length ].
bool parseIpArgument(std::string_view rest, SpfMechanism& m, std::string& error) {
  const bool v4 = m.kind == SpfMechanismKind::Ip4;
  if (rest.empty() || rest[0] != ':') {
    error = quoted(m.text) + " needs ':' and a network";
    return false;
  }
  rest.remove_prefix(1);
  const std::size_t slash = rest.find('/');
  if (slash != std::string_view::npos &&
      !parseCidrLength(rest.substr(slash + 1), v4 ? kMaxCidr4 : kMaxCidr6,
                       v4 ? m.cidr4 : m.cidr6)) {
    error = "invalid CIDR length in " + quoted(m.text);
    return false;
  }
  const auto network =
      v4 ? parseIp4Network(rest.substr(0, slash)) : parseIp6Network(rest.substr(0, slash));
  if (!network) {
    error = std::string("invalid ") + (v4 ? "IPv4" : "IPv6") + " network in " + quoted(m.text);
    return false;
  }
  m.network = *network;
  return true;
}

bool parseDomainSpec(std::string_view text, const std::string& term,
                     std::optional<SpfMacroString>& out, std::string& error) {
  std::string why;
  out = SpfMacroString::parse(text, SpfMacroSyntax::DomainSpec, why);
  if (!out) {
    error = why + " in " + quoted(term);
  }
  return out.has_value();
}

/// What follows a mechanism's name: the domain-spec and CIDR lengths its
/// grammar allows (section 5).
bool parseMechanismArgument(std::string_view rest, SpfMechanism& m, std::string& error) {
  using Kind = SpfMechanismKind;
  switch (m.kind) {
    case Kind::All:
      if (!rest.empty()) {
        error = quoted(m.text) + ": 'all' takes no argument";
      }
      return rest.empty();
    case Kind::Ip4:
    case Kind::Ip6:
      return parseIpArgument(rest, m, error);
    case Kind::A:
    case Kind::Mx:
      if (!cutDualCidr(rest, m, error)) {
        return false;
      }
      break;
    case Kind::Include:
    case Kind::Exists:
      if (rest.empty() || rest[0] != ':') {
        error = quoted(m.text) + " needs ':' and a domain-spec";
        return false;
      }
      break;
    case Kind::Ptr:
      break;
  }
  if (rest.empty()) {
    return true;  // a, mx or ptr of the current domain
  }
  if (rest[0] != ':') {
    error = "invalid argument in " + quoted(m.text);
    return false;
  }
  return parseDomainSpec(rest.substr(1), m.text, m.domain, error);
}

std::optional<SpfMechanism> parseMechanism(std::string_view term, std::string& error) {
  SpfMechanism m;
  m.text = std::string(term);
  static constexpr std::string_view kQualifiers = "+-~?";
  if (const auto q = kQualifiers.find(term[0]); q != std::string_view::npos) {
    m.qualifier = static_cast<SpfQualifier>(q);  // same order as the enum
    term.remove_prefix(1);
  }
  const std::size_t end = term.find_first_of(":/");
  const std::string_view name = term.substr(0, end);
  bool known = false;
  for (const auto& [text, kind] : kMechanisms) {
    if (equalsIgnoreCase(name, text)) {
      m.kind = kind;
      known = true;
      break;
    }
  }
  if (!known) {
    error = "unknown mechanism " + quoted(m.text);
    return std::nullopt;
  }
  if (!parseMechanismArgument(term.substr(name.size()), m, error)) {
    return std::nullopt;
  }
  return m;
}

/// The modifier name of `term` (before its "="), or empty if `term` is not
/// a modifier: name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ).
std::string_view modifierName(std::string_view term) {
  if (term.empty() || !isAlpha(term[0])) {
    return {};
  }
  std::size_t i = 1;
  while (i < term.size() && (isAlpha(term[i]) || isDigit(term[i]) || term[i] == '-' ||
                             term[i] == '_' || term[i] == '.')) {
    ++i;
  }
  return i < term.size() && term[i] == '=' ? term.substr(0, i) : std::string_view();
}

bool parseModifier(std::string_view term, std::string_view name, SpfRecord& record,
                   std::string& error) {
  const std::string_view value = term.substr(name.size() + 1);
  const std::string text(term);
  const bool redirect = equalsIgnoreCase(name, "redirect");
  if (redirect || equalsIgnoreCase(name, "exp")) {
    auto& slot = redirect ? record.redirect : record.explanation;
    if (slot) {
      error = std::string(redirect ? "redirect=" : "exp=") + " appears twice";
      return false;
    }
    return parseDomainSpec(value, text, slot, error);
  }
  // Unknown modifiers are ignored (6.3), but only when well-formed.
  std::string why;
  if (!SpfMacroString::parse(value, SpfMacroSyntax::UnknownModifier, why)) {
    error = why + " in modifier " + quoted(text);
    return false;
  }
  return true;
}

bool parseTerm(std::string_view term, SpfRecord& record, std::string& error) {
  if (const std::string_view name = modifierName(term); !name.empty()) {
    return parseModifier(term, name, record, error);
  }
  auto m = parseMechanism(term, error);
  if (!m) {
    return false;
  }
  record.hasAll = record.hasAll || m->kind == SpfMechanismKind::All;
  record.mechanisms.push_back(std::move(*m));
  return true;
}

}  // namespace

std::string_view toString(SpfMechanismKind kind) {
  for (const auto& [text, k] : kMechanisms) {
    if (k == kind) {
      return text;
    }
  }
  return "?";
}

bool SpfMechanism::queriesDns() const {
  return kind == SpfMechanismKind::Include || kind == SpfMechanismKind::A ||
         kind == SpfMechanismKind::Mx || kind == SpfMechanismKind::Ptr ||
         kind == SpfMechanismKind::Exists;
}

bool isSpfRecord(std::string_view text) {
  return text.size() >= kVersion.size() &&
         equalsIgnoreCase(text.substr(0, kVersion.size()), kVersion) &&
         (text.size() == kVersion.size() || text[kVersion.size()] == ' ');
}

SpfRecordParse parseSpfRecord(std::string_view text) {
  SpfRecordParse out;
  if (!isSpfRecord(text)) {
    out.error = "not an SPF record (no \"v=spf1\")";
    return out;
  }
  SpfRecord record;
  std::size_t pos = kVersion.size();
  // terms = *( 1*SP ( directive / modifier ) ), record = version terms *SP:
  // only spaces separate terms, so any other byte is part of a term.
  while (pos < text.size()) {
    if (text[pos] == ' ') {
      ++pos;
      continue;
    }
    const std::size_t end = std::min(text.find(' ', pos), text.size());
    if (!parseTerm(text.substr(pos, end - pos), record, out.error)) {
      return out;
    }
    pos = end;
  }
  out.record = std::move(record);
  return out;
}

}  // namespace smtpgate::policies
