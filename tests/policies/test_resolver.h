#pragma once
/// The resolver the DNS-backed policy tests share: one libunbound resolver
/// asking only `server` (an UnboundServer's "127.0.0.1:PORT"), failing the
/// test with libunbound's reason when it cannot be made.

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "policies/dns_resolver.h"

namespace smtpgate::testing {

inline std::shared_ptr<policies::DnsResolver> resolverFor(
    const std::string& server,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(2000)) {
  std::string error;
  auto r = policies::DnsResolver::create({{server}, timeout}, error);
  INFO(error);
  REQUIRE(r);
  return r;
}

}  // namespace smtpgate::testing
