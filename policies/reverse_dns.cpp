#include "policies/reverse_dns.h"

#include <algorithm>
#include <cctype>

namespace smtpgate::policies {

namespace {

constexpr std::size_t kMaxPtrNames = 10;

std::string lowerNoDot(std::string name) {
  if (!name.empty() && name.back() == '.') {
    name.pop_back();
  }
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name;
}

}  // namespace

ReverseDns lookupReverseDns(DnsResolver& resolver, const rules::IpAddress& ip,
                            DnsResolver::Clock::time_point deadline) {
  ReverseDns out;
  const std::string qname = reverseName(ip);
  DnsAnswer ptr = resolver.query(qname, DnsType::Ptr, deadline);
  if (ptr.tempFailed()) {
    out.error = "PTR " + qname + ": " + ptr.error;
    return out;
  }
  out.ptrKnown = true;
  std::vector<std::string> names;
  for (const auto& rdata : ptr.rdata) {
    if (auto name = parseNameRdata(rdata); name && !name->empty()) {
      names.push_back(lowerNoDot(*name));
    }
  }
  if (names.empty()) {
    out.fcrdns = false;
    return out;
  }
  out.ptr = names.front();
  const DnsType forward = ip.isV4() ? DnsType::A : DnsType::Aaaa;
  bool unknown = false;
  for (std::size_t i = 0; i < names.size() && i < kMaxPtrNames; ++i) {
    DnsAnswer a = resolver.query(names[i], forward, deadline);
    if (a.tempFailed()) {
      unknown = true;
      if (out.error.empty()) {
        out.error = names[i] + ": " + a.error;
      }
      continue;
    }
    for (const auto& rdata : a.rdata) {
      if (auto addr = parseAddressRdata(rdata); addr && *addr == ip) {
        out.ptr = names[i];
        out.fcrdns = true;
        return out;
      }
    }
  }
  if (!unknown) {
    out.fcrdns = false;
  }
  return out;
}

}  // namespace smtpgate::policies
