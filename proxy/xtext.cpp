#include "proxy/xtext.h"

#include <algorithm>

namespace smtpgate::proxy {

namespace {

constexpr std::string_view kUnavailable = "[UNAVAILABLE]";
constexpr std::string_view kTempUnavailable = "[TEMPUNAVAIL]";
constexpr std::string_view kXclient = "XCLIENT";

bool isXchar(unsigned char c) {
  return c >= 33 && c <= 126 && c != '+' && c != '=';
}

int hexValue(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/// The xtext form of one byte.
std::string_view encodeByte(unsigned char c, char (&buf)[3]) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  if (isXchar(c)) {
    buf[0] = static_cast<char>(c);
    return {buf, 1};
  }
  buf[0] = '+';
  buf[1] = kHex[c >> 4];
  buf[2] = kHex[c & 0xF];
  return {buf, 3};
}

/// xtext of `raw`, cut before the first encoded byte that would make it longer
/// than `budget`.
std::string encodeWithin(std::string_view raw, std::size_t budget) {
  std::string out;
  char buf[3];
  for (char ch : raw) {
    std::string_view piece = encodeByte(static_cast<unsigned char>(ch), buf);
    if (out.size() + piece.size() > budget) {
      break;
    }
    out.append(piece);
  }
  return out;
}

std::string_view cut(std::string_view s, std::size_t n) {
  return s.substr(0, std::min(n, s.size()));
}

std::string nameValue(const std::string& name, LookupStatus status) {
  if (status == LookupStatus::TempFailure) {
    return std::string(kTempUnavailable);
  }
  if (status == LookupStatus::Ok && !name.empty()) {
    return std::string(cut(name, limits::kXclientValueMax));
  }
  return std::string(kUnavailable);
}

std::string addrValue(const std::string& addr) {
  if (addr.empty()) {
    return std::string(kUnavailable);
  }
  auto upper = [](char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; };
  bool tagged =
      addr.size() > 5 && std::equal(addr.begin(), addr.begin() + 5,
                                    "IPV6:", [&](char a, char b) { return upper(a) == b; });
  // Postfix wants "IPV6:" before an IPv6 address, and no brackets.
  return addr.find(':') != std::string::npos && !tagged ? "IPV6:" + addr : addr;
}

std::string portValue(const std::optional<std::uint16_t>& port) {
  return port ? std::to_string(*port) : std::string(kUnavailable);
}

/// The attributes the backend named after "XCLIENT" in its EHLO reply.
std::optional<std::set<std::string, std::less<>>> advertised(const std::set<std::string>& caps) {
  for (const std::string& cap : caps) {
    if (cap == kXclient || cap.rfind("XCLIENT ", 0) == 0) {
      std::set<std::string, std::less<>> names;
      std::size_t pos = kXclient.size();
      while (pos < cap.size()) {
        std::size_t start = cap.find_first_not_of(' ', pos);
        if (start == std::string::npos) {
          break;
        }
        pos = std::min(cap.find(' ', start), cap.size());
        names.insert(cap.substr(start, pos - start));
      }
      return names;
    }
  }
  return std::nullopt;
}

struct Attribute {
  std::string_view name;
  std::optional<std::string> value;  ///< nullopt: not sent at all
};

/// In the order XCLIENT_README suggests (names and address first, then HELO
/// and PROTO), so a split keeps related attributes together.
std::vector<Attribute> attributes(const XclientFields& f) {
  std::optional<std::string> proto;
  if (f.proto) {
    proto = *f.proto == SmtpProtocol::Esmtp ? "ESMTP" : "SMTP";
  }
  std::optional<std::string> helo =
      f.helo ? std::string(cut(*f.helo, limits::kXclientValueMax)) : std::string(kUnavailable);
  return {
      {"ADDR", addrValue(f.addr)},
      {"PORT", portValue(f.port)},
      {"NAME", nameValue(f.name, f.nameStatus)},
      {"REVERSE_NAME", nameValue(f.reverseName, f.reverseNameStatus)},
      {"HELO", helo},
      {"PROTO", proto},
      {"LOGIN", f.login},
      {"DESTADDR", f.destAddr.empty() ? std::nullopt : std::optional(addrValue(f.destAddr))},
      {"DESTPORT", f.destPort ? std::optional(portValue(f.destPort)) : std::nullopt},
  };
}

}  // namespace

std::string xtextEncode(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  char buf[3];
  for (char ch : raw) {
    out.append(encodeByte(static_cast<unsigned char>(ch), buf));
  }
  return out;
}

std::optional<std::string> xtextDecode(std::string_view xtext) {
  std::string out;
  out.reserve(xtext.size());
  for (std::size_t i = 0; i < xtext.size(); ++i) {
    auto c = static_cast<unsigned char>(xtext[i]);
    if (c == '+') {
      if (i + 2 >= xtext.size()) {
        return std::nullopt;
      }
      int h = hexValue(xtext[i + 1]);
      int l = hexValue(xtext[i + 2]);
      if (h < 0 || l < 0) {
        return std::nullopt;
      }
      out += static_cast<char>(h * 16 + l);
      i += 2;
    } else if (isXchar(c)) {
      out += static_cast<char>(c);
    } else {
      return std::nullopt;
    }
  }
  return out;
}

std::vector<std::string> xclientCommands(const XclientFields& fields,
                                         const std::set<std::string>& capabilities,
                                         std::size_t maxLine) {
  std::vector<std::string> commands;
  auto names = advertised(capabilities);
  if (!names) {
    return commands;
  }
  std::string line(kXclient);
  for (const Attribute& attr : attributes(fields)) {
    if (!attr.value || names->count(attr.name) == 0) {
      continue;
    }
    // Room for the value on a line of its own: "XCLIENT NAME=value".
    std::size_t overhead = kXclient.size() + 1 + attr.name.size() + 1;
    if (maxLine <= overhead) {
      continue;
    }
    std::string token =
        std::string(attr.name) + '=' + encodeWithin(*attr.value, maxLine - overhead);
    if (line.size() + 1 + token.size() > maxLine) {
      commands.push_back(std::move(line));
      line = std::string(kXclient);
    }
    line += ' ';
    line += token;
  }
  if (line.size() > kXclient.size()) {
    commands.push_back(std::move(line));
  }
  return commands;
}

bool xclientTakesAddress(const std::set<std::string>& capabilities) {
  auto names = advertised(capabilities);
  return names && names->count("ADDR") > 0;
}

}  // namespace smtpgate::proxy
