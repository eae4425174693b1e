#pragma once
/// Reverse DNS — `client.ptr` and `client.fcrdns` for a client address.
///
/// The PTR names of the address are looked up; each (at most 10, RFC 7208
/// 5.5's limit) is resolved forward (A for an IPv4 client, AAAA for IPv6)
/// until one leads back to the address: that name is `client.ptr` and
/// `client.fcrdns` is true. If none does, `client.ptr` is the first PTR name
/// and `client.fcrdns` false. No PTR at all (NXDOMAIN or no data) is a
/// definite empty name. A PTR lookup that fails temporarily makes both facts
/// unknown; a forward lookup that fails leaves `ptr` known and `fcrdns`
/// unknown (unless another name confirmed already).
///
/// Threads: reentrant; blocks the calling thread on the resolver.

#include <optional>
#include <string>

#include "policies/dns_resolver.h"
#include "rules/value.h"

namespace smtpgate::policies {

struct ReverseDns {
  bool ptrKnown = false;       ///< false: the PTR lookup failed temporarily
  std::string ptr;             ///< the PTR name (no final dot), empty if none
  std::optional<bool> fcrdns;  ///< nullopt: unknown (a lookup failed)
  std::string error;           ///< the DNS failure, if any
};

ReverseDns lookupReverseDns(DnsResolver& resolver, const rules::IpAddress& ip,
                            DnsResolver::Clock::time_point deadline);

}  // namespace smtpgate::policies
