// The resolver's answer cache: TTLs on a manual clock, negative caching
// (RFC 2308 from the SOA of the answer), LRU eviction, many threads; then the
// resolver in front of a real unbound, and its cache-only mode, which the
// proxy's inline path and Policy rely on.
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "policies/dns_cache.h"
#include "policies/dns_resolver.h"
#include "policies/list_builder.h"
#include "policies/policy.h"
#include "tests/policies/test_resolver.h"
#include "tests/support/unbound_server.h"

using namespace smtpgate;
using namespace std::chrono_literals;
using policies::DnsAnswer;
using policies::DnsCache;
using policies::DnsResolver;
using policies::DnsStatus;
using policies::DnsType;
using testing::resolverFor;
using testing::UnboundServer;

namespace {

const DnsCache::Clock::time_point kT0{std::chrono::hours(1000)};

DnsAnswer answer(std::string rdata) {
  return DnsAnswer{DnsStatus::Answer, {std::move(rdata)}, {}};
}

/// A DNS message: header, one question, no answer, one authority RR of `type`
/// with TTL `ttl`, and for an SOA the MINIMUM `minimum` (names compressed to
/// the question where a real server would).
std::string negativeMessage(std::uint16_t type, std::uint32_t ttl, std::uint32_t minimum) {
  auto u16 = [](std::uint16_t v) { return std::string{char(v >> 8), char(v & 0xFF)}; };
  auto u32 = [&](std::uint32_t v) { return u16(std::uint16_t(v >> 16)) + u16(std::uint16_t(v)); };
  std::string m = u16(0x1234) + u16(0x8183) + u16(1) + u16(0) + u16(1) + u16(0);
  m += std::string("\7example\3org\0", 13) + u16(1) + u16(1);  // question at offset 12
  std::string rdata = std::string("\2ns\300\14", 5) + std::string("\4host\300\14", 7) + u32(1) +
                      u32(3600) + u32(600) + u32(86400) + u32(minimum);
  if (type != 6) {
    rdata = "\1\2\3\4";
  }
  m += std::string("\300\14", 2) + u16(type) + u16(1) + u32(ttl) +
       u16(static_cast<std::uint16_t>(rdata.size())) + rdata;
  return m;
}

}  // namespace

TEST_CASE("dns cache: an answer is served until its TTL passes", "[dns][cache]") {
  DnsCache cache;
  CHECK_FALSE(cache.find("mail.example.org", DnsType::A, kT0));
  cache.store("mail.example.org", DnsType::A, answer("\1\2\3\4"), 60s, kT0);

  struct Case {
    const char* name;
    DnsType type;
    std::chrono::seconds at;
    bool hit;
  };
  const Case cases[] = {
      {"mail.example.org", DnsType::A, 0s, true},
      {"MAIL.Example.ORG.", DnsType::A, 30s, true},     // case and the final dot don't matter
      {"mail.example.org", DnsType::Aaaa, 30s, false},  // another type is another key
      {"mail.example.org", DnsType::A, 59s, true},
      {"mail.example.org", DnsType::A, 60s, false},  // expired, and dropped
      {"mail.example.org", DnsType::A, 0s, false},   // (so not back either)
  };
  for (const Case& c : cases) {
    INFO(c.name << " at +" << c.at.count() << "s");
    auto found = cache.find(c.name, c.type, kT0 + c.at);
    CHECK(found.has_value() == c.hit);
    if (found) {
      CHECK(found->rdata == std::vector<std::string>{"\1\2\3\4"});
    }
  }
  CHECK(cache.size() == 0);
  CHECK(cache.stats().hits == 3);
}

TEST_CASE("dns cache: what is kept, and for how long at most", "[dns][cache]") {
  struct Case {
    const char* what;
    DnsAnswer answer;
    std::chrono::seconds ttl;
    std::chrono::seconds askAt;
    bool hit;
  };
  const Case cases[] = {
      {"nxdomain for its TTL", {DnsStatus::NxDomain, {}, {}}, 300s, 299s, true},
      {"nodata for its TTL", {DnsStatus::NoData, {}, {}}, 300s, 299s, true},
      {"a temporary failure never", {DnsStatus::TempFail, {}, "timed out"}, 300s, 0s, false},
      {"TTL 0 never", answer("x"), 0s, 0s, false},
      {"answers at most a day", answer("x"), 7 * 86400s, 86400s, false},
      {"answers up to a day", answer("x"), 7 * 86400s, 86399s, true},
      {"negative at most an hour", {DnsStatus::NxDomain, {}, {}}, 86400s, 3600s, false},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    DnsCache cache;
    cache.store("a.example", DnsType::Txt, c.answer, c.ttl, kT0);
    auto found = cache.find("a.example", DnsType::Txt, kT0 + c.askAt);
    REQUIRE(found.has_value() == c.hit);
    if (found) {
      CHECK(found->status == c.answer.status);
    }
  }
  DnsCache off(0);
  off.store("a.example", DnsType::A, answer("x"), 60s, kT0);
  CHECK_FALSE(off.find("a.example", DnsType::A, kT0));
}

TEST_CASE("dns cache: the negative TTL comes from the SOA (RFC 2308)", "[dns][cache]") {
  struct Case {
    const char* what;
    std::string message;
    std::chrono::seconds ttl;
  };
  const Case cases[] = {
      {"SOA TTL below MINIMUM", negativeMessage(6, 120, 300), 120s},
      {"MINIMUM below SOA TTL", negativeMessage(6, 3600, 300), 300s},
      {"capped at an hour", negativeMessage(6, 86400, 86400), DnsCache::kMaxNegativeTtl},
      {"TTL with the top bit set is 0", negativeMessage(6, 0x80000000U, 300), 0s},
      {"no SOA: briefly", negativeMessage(1, 3600, 0), DnsCache::kNegativeTtlWithoutSoa},
      {"truncated", negativeMessage(6, 120, 300).substr(0, 40), DnsCache::kNegativeTtlWithoutSoa},
      {"empty", "", DnsCache::kNegativeTtlWithoutSoa},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    CHECK(DnsCache::negativeTtl(c.message) == c.ttl);
  }
}

TEST_CASE("dns cache: a full cache evicts the least recently used", "[dns][cache]") {
  // One entry per shard: every shard holds exactly one name.
  DnsCache cache(DnsCache::kShards);
  REQUIRE(cache.capacity() == DnsCache::kShards);
  constexpr int kNames = 200;
  for (int i = 0; i < kNames; ++i) {
    cache.store("n" + std::to_string(i) + ".example", DnsType::A, answer("x"), 60s, kT0);
    // The name just stored is always there; the cache never grows past its capacity.
    CHECK(cache.find("n" + std::to_string(i) + ".example", DnsType::A, kT0));
    CHECK(cache.size() <= cache.capacity());
  }
  CHECK(cache.stats().evictions == kNames - cache.size());

  // LRU within a shard: with room for two, the one found again stays.
  DnsCache two(2 * DnsCache::kShards);
  std::vector<std::string> sameShard;
  // Names that share a shard with "keep.example" (by trying: the hash is the library's).
  DnsCache probe(DnsCache::kShards);
  probe.store("keep.example", DnsType::A, answer("x"), 60s, kT0);
  for (int i = 0; sameShard.size() < 2 && i < 10'000; ++i) {
    std::string name = "other" + std::to_string(i) + ".example";
    probe.store(name, DnsType::A, answer("x"), 60s, kT0);
    if (!probe.find("keep.example", DnsType::A, kT0)) {
      sameShard.push_back(name);
      probe.store("keep.example", DnsType::A, answer("x"), 60s, kT0);
    }
  }
  REQUIRE(sameShard.size() == 2);
  two.store("keep.example", DnsType::A, answer("x"), 60s, kT0);
  two.store(sameShard[0], DnsType::A, answer("x"), 60s, kT0);
  CHECK(two.find("keep.example", DnsType::A, kT0));            // now the most recent
  two.store(sameShard[1], DnsType::A, answer("x"), 60s, kT0);  // evicts sameShard[0]
  CHECK(two.find("keep.example", DnsType::A, kT0));
  CHECK_FALSE(two.find(sameShard[0], DnsType::A, kT0));
  CHECK(two.find(sameShard[1], DnsType::A, kT0));
}

TEST_CASE("dns cache: many threads store and find at once", "[dns][cache]") {
  DnsCache cache(1000);
  constexpr int kThreads = 8;
  constexpr int kRounds = 5000;
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        const std::string name = "n" + std::to_string((i * 7 + t) % 1500) + ".example";
        if (auto found = cache.find(name, DnsType::Txt, kT0)) {
          if (found->rdata.size() != 1 || found->rdata[0] != name) {
            ++wrong;  // an answer under another name's key
          }
        } else {
          cache.store(name, DnsType::Txt, answer(name), 60s, kT0);
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  CHECK(wrong == 0);
  CHECK(cache.size() <= cache.capacity());
  const auto stats = cache.stats();
  CHECK(stats.hits + stats.misses == std::uint64_t{kThreads} * kRounds);
}

TEST_CASE("resolver: answers come from the cache the second time", "[dns][cache]") {
  SKIP_WITHOUT_UNBOUND();
  UnboundServer dns;
  dns.addRecord("mail.example.org. 300 A 203.0.113.9");
  dns.addRecord(". 3600 SOA ns.example. host.example. 1 3600 600 86400 300");
  dns.timeoutName("hang.example.org");
  dns.start();
  auto resolver = resolverFor(dns.address(), 500ms);

  CHECK(resolver->query("mail.example.org", DnsType::A).ok());
  CHECK(resolver->query("nowhere.example.org", DnsType::A).status == DnsStatus::NxDomain);
  CHECK(resolver->query("hang.example.org", DnsType::A).tempFailed());
  const auto before = resolver->cache().stats();
  CHECK(before.stores == 2);  // the answer and the NXDOMAIN; the timeout is not kept

  auto again = resolver->query("Mail.Example.org.", DnsType::A);
  REQUIRE(again.ok());
  CHECK(policies::parseAddressRdata(again.rdata.at(0)) == rules::IpAddress::parse("203.0.113.9"));
  CHECK(resolver->query("nowhere.example.org", DnsType::A).status == DnsStatus::NxDomain);
  CHECK(resolver->cache().stats().hits == before.hits + 2);

  SECTION("cache-only: a hit answers, a miss throws WouldBlock from query") {
    DnsResolver::CacheOnlyScope scope;
    CHECK(resolver->query("mail.example.org", DnsType::A).ok());
    CHECK_FALSE(scope.missed());
    CHECK_THROWS_AS(resolver->query("other.example.org", DnsType::A), DnsResolver::WouldBlock);
    CHECK(scope.missed());
    CHECK(DnsResolver::cacheMissedOnThisThread());
    CHECK_THROWS_AS(DnsResolver::throwIfCacheMissed(), DnsResolver::WouldBlock);
  }
  SECTION("cache-only: queryAsync and a quiet scope answer a miss TempFail, never throw") {
    DnsResolver::CacheOnlyScope scope;
    DnsResolver::QuietMissScope quiet;
    std::optional<DnsAnswer> got;
    resolver->queryAsync("other.example.org", DnsType::Txt, DnsResolver::Clock::now() + 1s,
                         [&](DnsAnswer a) { got = std::move(a); });
    REQUIRE(got);  // answered before queryAsync returned
    CHECK(got->tempFailed());
    CHECK(resolver->query("hang.example.org", DnsType::A).tempFailed());
    CHECK(scope.missed());
  }
  SECTION("outside a scope nothing is cache-only, inside one nested scopes restore") {
    {
      DnsResolver::CacheOnlyScope outer;
      {
        DnsResolver::CacheOnlyScope inner;
        CHECK_THROWS_AS(resolver->query("x.example.org", DnsType::A), DnsResolver::WouldBlock);
      }
      CHECK_FALSE(outer.missed());  // the inner scope's miss was its own
    }
    CHECK_FALSE(DnsResolver::cacheMissedOnThisThread());
    CHECK(resolver->query("x.example.org", DnsType::A).status == DnsStatus::NxDomain);
  }
}

TEST_CASE("policy: a stage aborted in cache-only mode reruns as if it never ran", "[dns][cache]") {
  SKIP_WITHOUT_UNBOUND();
  UnboundServer dns;
  dns.addRecord("example.org. TXT \"v=spf1 ip4:198.51.100.0/24 -all\"");
  dns.addRecord("7.100.51.198.zen.test. A 127.0.0.2");
  dns.start();
  auto resolver = resolverFor(dns.address(), 1000ms);
  policies::StandardListBuilder lists(resolver);
  rules::Diagnostics diags;
  auto rules = rules::RuleSet::loadText(R"(
list zen dnsbl "zen.test"
rule listed3  on connect when client.ip in @zen:127.0.0.3 then reject "554 5.7.1 listed"
rule listed   on mail    when client.ip in @zen then score 1
rule spf-pass on mail    when spf == pass       then score 2
rule spf-fail on mail    when spf == fail       then reject "550 5.7.23 SPF fail"
)",
                                        "test.rules", lists, diags);
  INFO(rules::format(diags));
  REQUIRE(rules);
  policies::PolicyOptions options{false, "proxy"};
  options.resolver = resolver;
  policies::Policy policy(rules, "S1", options);
  const policies::ConnectInfo client{*rules::IpAddress::parse("198.51.100.7"), 40000, 25};

  // Cold cache: the connect stage cannot finish from the cache, and says so.
  {
    DnsResolver::CacheOnlyScope scope;
    CHECK_THROWS_AS(policy.onConnect(client), DnsResolver::WouldBlock);
  }
  CHECK(policy.onConnect(client).action == policies::Action::Continue);  // as the pool would

  // MAIL: SPF's evaluator catches everything; the miss must still come out,
  // and neither the SPF result nor the transaction may stay behind.
  {
    DnsResolver::CacheOnlyScope scope;
    CHECK_THROWS_AS(policy.onMail("a@example.org"), DnsResolver::WouldBlock);
  }
  CHECK(policy.spfResult() == nullptr);
  CHECK(policy.transaction() == nullptr);
  auto mail = policy.onMail("a@example.org");
  CHECK(mail.action == policies::Action::Continue);
  REQUIRE(policy.spfResult() != nullptr);
  CHECK(policy.spfResult()->status == policies::SpfStatus::Pass);
  CHECK(mail.score == 3);  // 1 + 2, each counted once
  CHECK(policy.record(mail).transaction == 1);

  // Warm cache: a new session's stages run entirely from the cache.
  policies::Policy second(rules, "S2", options);
  DnsResolver::CacheOnlyScope scope;
  CHECK(second.onConnect(client).action == policies::Action::Continue);
  CHECK(second.onMail("b@example.org").score == 3);
  CHECK_FALSE(scope.missed());
}
