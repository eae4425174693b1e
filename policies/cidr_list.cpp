#include "policies/cidr_list.h"

#include <arpa/inet.h>

#include <algorithm>
#include <bit>
#include <limits>
#include <string>
#include <variant>

namespace smtpgate::policies {

namespace {

using Key = std::array<std::uint8_t, 16>;

constexpr unsigned kV4Offset = 96;  // IPv4 lives in ::ffff:0:0/96
constexpr unsigned kV4MaxPrefix = 32;
constexpr unsigned kV6MaxPrefix = 128;

bool bitOf(const Key& key, unsigned i) {
  return (key[i / 8] >> (7 - i % 8)) & 1U;
}

/// Number of leading bits `a` and `b` share, at most `limit`. O(16).
unsigned commonPrefix(const Key& a, const Key& b, unsigned limit) {
  unsigned n = 0;
  for (std::size_t i = 0; i < a.size() && n < limit; ++i) {
    const auto diff = static_cast<std::uint8_t>(a[i] ^ b[i]);
    if (diff != 0) {
      n += static_cast<unsigned>(std::countl_zero(diff));
      break;
    }
    n += 8;
  }
  return std::min(n, limit);
}

Key masked(Key key, unsigned length) {
  for (unsigned i = 0; i < key.size(); ++i) {
    const unsigned first = i * 8;
    if (first >= length) {
      key[i] = 0;
    } else if (length - first < 8) {
      key[i] &= static_cast<std::uint8_t>(0xFFU << (8 - (length - first)));
    }
  }
  return key;
}

/// The network in the syntax it was written in (v6 keeps ::ffff:a.b.c.d).
std::string networkText(const Key& key, bool v6Syntax, unsigned familyLength) {
  std::string out;
  if (!v6Syntax) {
    out = rules::IpAddress::fromBytes16(key).toString();
  } else {
    in6_addr v6{};
    std::copy(key.begin(), key.end(), v6.s6_addr);
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(AF_INET6, &v6, buf, sizeof buf);
    out = buf;
  }
  return out + "/" + std::to_string(familyLength);
}

struct ParsedCidr {
  Key key{};            ///< masked to `length`
  unsigned length = 0;  ///< in the 128-bit space
};

/// Parses the prefix digits; nullopt if not 1-3 ASCII digits.
std::optional<unsigned> parsePrefix(std::string_view digits) {
  if (digits.empty() || digits.size() > 3) {
    return std::nullopt;
  }
  unsigned n = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    n = n * 10 + static_cast<unsigned>(c - '0');
  }
  return n;
}

std::optional<ParsedCidr> parseEntry(const rules::ListEntry& entry, rules::Diagnostics& diags) {
  const std::string_view text = entry.text;
  const auto quoted = [&] { return rules::describe(rules::FactValue{entry.text}); };
  const auto slash = text.find('/');
  const std::string_view addrText = text.substr(0, slash);
  const auto addr = rules::IpAddress::parse(addrText);
  if (!addr) {
    diags.error(entry.where,
                "not an IP address or network: " + quoted() +
                    " (expected e.g. 192.0.2.1, 192.0.2.0/24 or 2001:db8::/32)",
                entry.sourceLine);
    return std::nullopt;
  }
  const bool v6Syntax = addrText.find(':') != std::string_view::npos;
  const unsigned maxPrefix = v6Syntax ? kV6MaxPrefix : kV4MaxPrefix;
  const char* family = v6Syntax ? "IPv6" : "IPv4";
  unsigned familyLength = maxPrefix;
  if (slash != std::string_view::npos) {
    const auto prefix = parsePrefix(text.substr(slash + 1));
    if (!prefix) {
      diags.error(entry.where,
                  "bad prefix length in " + quoted() + ": expected a number 0-" +
                      std::to_string(maxPrefix) + " after '/'",
                  entry.sourceLine);
      return std::nullopt;
    }
    if (*prefix > maxPrefix) {
      diags.error(entry.where,
                  "prefix length /" + std::to_string(*prefix) + " in " + quoted() +
                      " is too long: " + family + " prefixes are 0-" + std::to_string(maxPrefix),
                  entry.sourceLine);
      return std::nullopt;
    }
    familyLength = *prefix;
  }
  ParsedCidr parsed;
  parsed.length = v6Syntax ? familyLength : kV4Offset + familyLength;
  parsed.key = masked(addr->bytes(), parsed.length);
  if (parsed.key != addr->bytes()) {
    // The admin most likely meant the network; keep it, but say so.
    diags.warning(entry.where,
                  "host bits set in " + entry.text + "; did you mean " +
                      networkText(parsed.key, v6Syntax, familyLength) + "?",
                  entry.sourceLine);
  }
  return parsed;
}

}  // namespace

std::shared_ptr<const CidrList> CidrList::build(const std::vector<rules::ListEntry>& entries,
                                                rules::Diagnostics& diags) {
  auto list = std::make_shared<CidrList>();
  for (const auto& entry : entries) {
    list->add(entry, diags);
  }
  return list;
}

CidrList::CidrList() {
  nodes_.emplace_back();
}

bool CidrList::add(const rules::ListEntry& entry, rules::Diagnostics& diags) {
  const auto parsed = parseEntry(entry, diags);
  if (!parsed) {
    return false;
  }
  if (!insert(parsed->key, parsed->length)) {
    diags.error(entry.where, "too many networks in one list", entry.sourceLine);
    return false;
  }
  return true;
}

std::int32_t CidrList::newNode(const Key& key, unsigned length, bool terminal) {
  if (nodes_.size() >= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
    return -1;
  }
  Node node;
  node.key = key;
  node.length = static_cast<std::uint8_t>(length);
  node.terminal = terminal;
  nodes_.push_back(node);
  size_ += terminal ? 1 : 0;
  return static_cast<std::int32_t>(nodes_.size() - 1);
}

// Radix insertion. Invariant at the top of the loop: `key` agrees with
// nodes_[at] on its first nodes_[at].length bits, and length >= that length.
// Indexes, not references, are kept across newNode(), which may reallocate.
bool CidrList::insert(const Key& key, unsigned length) {
  std::int32_t at = 0;
  for (;;) {
    if (nodes_[at].length == length) {
      size_ += nodes_[at].terminal ? 0 : 1;
      nodes_[at].terminal = true;
      return true;
    }
    const bool dir = bitOf(key, nodes_[at].length);
    const std::int32_t next = nodes_[at].child[dir];
    if (next < 0) {
      const auto leaf = newNode(key, length, true);
      nodes_[at].child[dir] = leaf;
      return leaf >= 0;
    }
    const unsigned nextLength = nodes_[next].length;
    const unsigned common = commonPrefix(key, nodes_[next].key, std::min(length, nextLength));
    if (common == nextLength) {
      at = next;  // the child's prefix is a prefix of ours: descend
      continue;
    }
    // Our prefix and the child's part ways (or ours ends) at bit `common`:
    // put a node there holding both.
    const auto mid = newNode(masked(key, common), common, common == length);
    if (mid < 0) {
      return false;
    }
    nodes_[mid].child[bitOf(nodes_[next].key, common)] = next;
    nodes_[at].child[dir] = mid;
    if (common == length) {
      return true;
    }
    const auto leaf = newNode(key, length, true);
    nodes_[mid].child[bitOf(key, common)] = leaf;
    return leaf >= 0;
  }
}

std::optional<unsigned> CidrList::longestMatch128(const Key& key) const {
  std::optional<unsigned> best;
  std::int32_t at = 0;
  while (at >= 0) {
    const Node& node = nodes_[at];
    if (commonPrefix(key, node.key, node.length) < node.length) {
      break;
    }
    if (node.terminal) {
      best = node.length;
    }
    if (node.length == kV6MaxPrefix) {
      break;
    }
    at = node.child[bitOf(key, node.length)];
  }
  return best;
}

std::optional<int> CidrList::longestMatch(const rules::IpAddress& addr) const {
  const auto best = longestMatch128(addr.bytes());
  if (!best) {
    return std::nullopt;
  }
  // A match of /96 or longer on a v4-mapped address is inside ::ffff:0:0/96,
  // i.e. an IPv4 network: report it in IPv4 terms.
  if (addr.isV4() && *best >= kV4Offset) {
    return static_cast<int>(*best - kV4Offset);
  }
  return static_cast<int>(*best);
}

rules::Tri CidrList::contains(const rules::FactValue& value, std::string_view /*qualifier*/) const {
  if (std::holds_alternative<rules::Unavailable>(value)) {
    return rules::Tri::Unknown;  // never fake an answer about an unknown address
  }
  if (const auto* addr = std::get_if<rules::IpAddress>(&value)) {
    return rules::toTri(longestMatch128(addr->bytes()).has_value());
  }
  if (const auto* texts = std::get_if<rules::Strings>(&value)) {
    for (const auto& text : *texts) {
      const auto addr = rules::IpAddress::parse(text);
      if (addr && longestMatch128(addr->bytes())) {
        return rules::Tri::True;
      }
    }
  }
  return rules::Tri::False;
}

}  // namespace smtpgate::policies
