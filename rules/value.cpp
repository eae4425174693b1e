#include "rules/value.h"

#include <arpa/inet.h>

#include <cstdio>

namespace smtpgate::rules {

std::string_view toString(Tri t) {
  switch (t) {
    case Tri::True:
      return "true";
    case Tri::False:
      return "false";
    case Tri::Unknown:
      return "unknown";
  }
  return "unknown";
}

namespace {
constexpr std::array<std::uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  // inet_pton needs a NUL-terminated string; addresses are short, so bound the copy.
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) {
    return std::nullopt;
  }
  std::string s(text);
  if (s.front() == '[' && s.back() == ']') {
    s = s.substr(1, s.size() - 2);
  }
  in_addr v4{};
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    return fromV4(ntohl(v4.s_addr));
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::array<std::uint8_t, 16> b{};
    for (int i = 0; i < 16; ++i) {
      b[i] = v6.s6_addr[i];
    }
    return fromBytes16(b);
  }
  return std::nullopt;
}

IpAddress IpAddress::fromV4(std::uint32_t hostOrder) {
  IpAddress a;
  for (std::size_t i = 0; i < kV4MappedPrefix.size(); ++i) {
    a.bytes_[i] = kV4MappedPrefix[i];
  }
  a.bytes_[12] = static_cast<std::uint8_t>(hostOrder >> 24);
  a.bytes_[13] = static_cast<std::uint8_t>(hostOrder >> 16);
  a.bytes_[14] = static_cast<std::uint8_t>(hostOrder >> 8);
  a.bytes_[15] = static_cast<std::uint8_t>(hostOrder);
  return a;
}

IpAddress IpAddress::fromBytes16(const std::array<std::uint8_t, 16>& bytes) {
  IpAddress a;
  a.bytes_ = bytes;
  return a;
}

bool IpAddress::isV4() const {
  for (std::size_t i = 0; i < kV4MappedPrefix.size(); ++i) {
    if (bytes_[i] != kV4MappedPrefix[i]) {
      return false;
    }
  }
  return true;
}

std::string IpAddress::toString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (isV4()) {
    std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", bytes_[12], bytes_[13], bytes_[14], bytes_[15]);
    return buf;
  }
  in6_addr v6{};
  for (int i = 0; i < 16; ++i) {
    v6.s6_addr[i] = bytes_[i];
  }
  inet_ntop(AF_INET6, &v6, buf, sizeof buf);
  return buf;
}

namespace {

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string number(double d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", d);
  return buf;
}

}  // namespace

std::string describe(const FactValue& v) {
  struct Visitor {
    std::string operator()(const Unavailable& u) const { return "unavailable (" + u.reason + ")"; }
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(double d) const { return number(d); }
    std::string operator()(const std::string& s) const { return quoted(s); }
    std::string operator()(const IpAddress& a) const { return a.toString(); }
    std::string operator()(const Strings& ss) const {
      if (ss.empty()) {
        return "(none)";
      }
      std::string out = "[";
      for (std::size_t i = 0; i < ss.size(); ++i) {
        out += (i ? ", " : "") + quoted(ss[i]);
      }
      return out + "]";
    }
  };
  return std::visit(Visitor{}, v);
}

}  // namespace smtpgate::rules
