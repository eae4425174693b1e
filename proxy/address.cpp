#include "proxy/address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace smtpgate::proxy {

namespace {

bool isAlpha(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool isDigit(unsigned char c) {
  return c >= '0' && c <= '9';
}

/// RFC 5322 atext.
bool isAtext(unsigned char c) {
  return isAlpha(c) || isDigit(c) ||
         (c != 0 && c < 0x80 && std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr);
}

/// RFC 5321 qtextSMTP: %d32-33 / %d35-91 / %d93-126.
bool isQtext(unsigned char c) {
  return c >= 32 && c <= 126 && c != '"' && c != '\\';
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

/// Reads one UTF-8 sequence at `pos`; false if malformed.
bool takeUtf8(std::string_view s, std::size_t& pos) {
  std::size_t n = utf8SequenceLength(s, pos);
  pos += n;
  return n != 0;
}

/// Quoted-string at text[pos] == '"'. Moves pos past the closing quote.
AddressError scanQuoted(std::string_view text, std::size_t& pos, bool& utf8) {
  ++pos;
  while (pos < text.size()) {
    auto c = static_cast<unsigned char>(text[pos]);
    if (c == '"') {
      ++pos;
      return AddressError::None;
    }
    if (c == '\\') {  // quoted-pairSMTP = "\" %d32-126
      if (pos + 1 >= text.size() || text[pos + 1] < 32 || text[pos + 1] > 126) {
        return AddressError::Syntax;
      }
      pos += 2;
    } else if (c >= 0x80) {
      utf8 = true;
      if (!takeUtf8(text, pos)) {
        return AddressError::BadUtf8;
      }
    } else if (isQtext(c)) {
      ++pos;
    } else {
      return AddressError::Syntax;
    }
  }
  return AddressError::Syntax;
}

/// Dot-string (lenient about empty atoms, see the header). Stops at the first
/// byte that cannot be part of it.
AddressError scanDotString(std::string_view text, std::size_t& pos, bool& utf8) {
  std::size_t start = pos;
  while (pos < text.size()) {
    auto c = static_cast<unsigned char>(text[pos]);
    if (c >= 0x80) {
      utf8 = true;
      if (!takeUtf8(text, pos)) {
        return AddressError::BadUtf8;
      }
    } else if (isAtext(c) || c == '.') {
      ++pos;
    } else {
      break;
    }
  }
  return pos == start ? AddressError::Syntax : AddressError::None;
}

bool isIpv4Literal(std::string_view s) {
  int parts = 0;
  std::size_t pos = 0;
  while (parts < 4) {
    std::size_t start = pos;
    int value = 0;
    while (pos < s.size() && isDigit(s[pos]) && pos - start < 3) {
      value = value * 10 + (s[pos++] - '0');
    }
    if (pos == start || value > 255) {
      return false;
    }
    ++parts;
    if (parts < 4) {
      if (pos >= s.size() || s[pos] != '.') {
        return false;
      }
      ++pos;
    }
  }
  return pos == s.size();
}

bool isIpv6(std::string_view s) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (s.empty() || s.size() >= sizeof buf) {
    return false;
  }
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  unsigned char out[16];
  return inet_pton(AF_INET6, buf, out) == 1;
}

/// The inside of "[...]". A General-address-literal ("tag:content") needs a
/// Standardized-tag registered with IANA (RFC 5321 4.1.3) and none is but
/// IPv6, so every other tag is refused.
bool isAddressLiteral(std::string_view s) {
  if (s.size() > 5 && iequals(s.substr(0, 5), "IPv6:")) {
    return isIpv6(s.substr(5));
  }
  return isIpv4Literal(s);
}

/// Domain or address literal at text[pos], ending where `end` says (the ">"
/// of a path, or the end of a bare mailbox).
AddressError scanDomainPart(std::string_view text, std::size_t& pos, std::size_t end, Path& out) {
  std::string_view domain = text.substr(pos, end - pos);
  if (!domain.empty() && domain.front() == '[') {
    if (domain.size() < 2 || domain.back() != ']' ||
        !isAddressLiteral(domain.substr(1, domain.size() - 2))) {
      return AddressError::Syntax;
    }
    out.addressLiteral = true;
  } else {
    bool utf8 = false;
    bool valid = isValidDomain(domain, utf8);
    out.needsSmtputf8 = out.needsSmtputf8 || utf8;
    if (!valid) {
      // Tell malformed UTF-8 apart: it gets the same reply but a clearer log.
      for (std::size_t i = 0; i < domain.size(); ++i) {
        if (static_cast<unsigned char>(domain[i]) >= 0x80 && utf8SequenceLength(domain, i) == 0) {
          return AddressError::BadUtf8;
        }
      }
      return AddressError::Syntax;
    }
  }
  out.domain = std::string(domain);
  pos = end;
  return AddressError::None;
}

/// A-d-l ":" at text[pos] == '@'; moves pos past the colon.
AddressError skipSourceRoute(std::string_view text, std::size_t& pos) {
  while (pos < text.size() && text[pos] == '@') {
    std::size_t end = text.find_first_of(",:>", pos + 1);
    if (end == std::string_view::npos || text[end] == '>') {
      return AddressError::Syntax;
    }
    bool utf8 = false;
    if (!isValidDomain(text.substr(pos + 1, end - pos - 1), utf8)) {
      return AddressError::Syntax;
    }
    pos = end + 1;
    if (text[end] == ':') {
      return AddressError::None;
    }
  }
  return AddressError::Syntax;
}

/// Local-part ["@" domain] starting at pos. `bracketed`: inside "<...>" (ends
/// before the ">"), else a bare mailbox that must end at the end of text.
AddressError scanMailbox(std::string_view text, std::size_t& pos, bool allowPostmaster,
                         bool bracketed, Path& out) {
  std::size_t start = pos;
  bool utf8 = false;
  bool quoted = pos < text.size() && text[pos] == '"';
  AddressError e = quoted ? scanQuoted(text, pos, utf8) : scanDotString(text, pos, utf8);
  if (e != AddressError::None) {
    return e;
  }
  out.localPart = std::string(text.substr(start, pos - start));
  out.needsSmtputf8 = utf8;
  bool atEnd = bracketed ? (pos < text.size() && text[pos] == '>') : pos == text.size();
  if (atEnd) {
    if (!allowPostmaster || quoted || !iequals(out.localPart, "postmaster")) {
      return AddressError::Syntax;
    }
    out.isPostmaster = true;
    out.address = out.localPart;
    return AddressError::None;
  }
  if (pos >= text.size() || text[pos] != '@') {
    return AddressError::Syntax;
  }
  ++pos;
  std::size_t end = bracketed ? text.find('>', pos) : text.size();
  if (end == std::string_view::npos) {
    return AddressError::Syntax;
  }
  if ((e = scanDomainPart(text, pos, end, out)) != AddressError::None) {
    return e;
  }
  out.address = out.localPart + '@' + out.domain;
  return AddressError::None;
}

AddressError checkLengths(const Path& p, std::size_t pathLength, const AddressLimits& limits) {
  // Most specific first: the log then says which part is too long.
  if (p.localPart.size() > limits.localPart) {
    return AddressError::LocalPartTooLong;
  }
  if (p.domain.size() > limits.domain) {
    return AddressError::DomainTooLong;
  }
  if (pathLength > limits.path) {
    return AddressError::PathTooLong;
  }
  return AddressError::None;
}

PathParse failed(AddressError e) {
  PathParse r;
  r.error = e;
  return r;
}

}  // namespace

std::size_t utf8SequenceLength(std::string_view s, std::size_t i) {
  auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = at(i);
  std::size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
  if (n == 0 || c > 0xF4 || i + n > s.size()) {
    return 0;
  }
  // The second byte's range depends on the first (RFC 3629 section 4).
  unsigned char lo = 0x80, hi = 0xBF;
  if (c == 0xE0)
    lo = 0xA0;
  if (c == 0xED)
    hi = 0x9F;
  if (c == 0xF0)
    lo = 0x90;
  if (c == 0xF4)
    hi = 0x8F;
  if (at(i + 1) < lo || at(i + 1) > hi) {
    return 0;
  }
  for (std::size_t k = 2; k < n; ++k) {
    if (at(i + k) < 0x80 || at(i + k) > 0xBF) {
      return 0;
    }
  }
  return n;
}

bool isValidDomain(std::string_view domain, bool& utf8) {
  if (domain.empty()) {
    return false;
  }
  std::size_t pos = 0;
  while (true) {
    std::size_t dot = std::min(domain.find('.', pos), domain.size());
    std::string_view label = domain.substr(pos, dot - pos);
    if (label.empty() || label.front() == '-' || label.back() == '-') {
      return false;
    }
    bool ascii = true;
    for (std::size_t i = 0; i < label.size();) {
      auto c = static_cast<unsigned char>(label[i]);
      if (c >= 0x80) {
        ascii = false;
        if (!takeUtf8(label, i)) {
          return false;
        }
      } else if (isAlpha(c) || isDigit(c) || c == '-' || c == '_') {
        ++i;
      } else {
        return false;
      }
    }
    // The 63-octet limit applies to the A-label of a U-label, which we do not
    // compute; the domain total still bounds it.
    if (ascii && label.size() > limits::kDomainLabelMax) {
      return false;
    }
    utf8 = utf8 || !ascii;
    if (dot == domain.size()) {
      return true;
    }
    pos = dot + 1;
  }
}

PathParse parsePath(std::string_view text, const PathOptions& options) {
  if (text.empty() || text[0] != '<') {
    return failed(AddressError::Syntax);
  }
  PathParse r;
  if (text.size() >= 2 && text[1] == '>') {
    if (!options.allowNull) {
      return failed(AddressError::Syntax);
    }
    r.path.isNull = true;
    r.consumed = 2;
    return r;
  }
  std::size_t pos = 1;
  if (pos < text.size() && text[pos] == '@') {
    if (AddressError e = skipSourceRoute(text, pos); e != AddressError::None) {
      return failed(e);
    }
    r.path.hadSourceRoute = true;
  }
  if (AddressError e = scanMailbox(text, pos, options.allowPostmaster, true, r.path);
      e != AddressError::None) {
    return failed(e);
  }
  if (pos >= text.size() || text[pos] != '>') {
    return failed(AddressError::Syntax);
  }
  r.consumed = pos + 1;
  if (AddressError e = checkLengths(r.path, r.consumed, options.limits); e != AddressError::None) {
    return failed(e);
  }
  return r;
}

PathParse parseMailbox(std::string_view text, const AddressLimits& limits) {
  PathParse r;
  std::size_t pos = 0;
  if (AddressError e = scanMailbox(text, pos, false, false, r.path); e != AddressError::None) {
    return failed(e);
  }
  r.consumed = pos;
  // A bare mailbox has no brackets; measure it as the path it would become.
  if (AddressError e = checkLengths(r.path, r.consumed + 2, limits); e != AddressError::None) {
    return failed(e);
  }
  return r;
}

}  // namespace smtpgate::proxy
