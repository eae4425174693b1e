#include "policies/dns_cache.h"

#include <algorithm>
#include <functional>

namespace smtpgate::policies {

namespace {

constexpr std::uint16_t kClassIn = 1;
constexpr std::uint16_t kTypeSoa = 6;
constexpr std::size_t kHeaderSize = 12;
constexpr std::size_t kRrFixedSize = 10;  ///< type, class, TTL, RDLENGTH
constexpr std::size_t kSoaMinRdata = 22;  ///< two root names and five 32-bit fields

std::uint32_t readU32(std::string_view p, std::size_t at) {
  return (std::uint32_t{static_cast<unsigned char>(p[at])} << 24) |
         (std::uint32_t{static_cast<unsigned char>(p[at + 1])} << 16) |
         (std::uint32_t{static_cast<unsigned char>(p[at + 2])} << 8) |
         std::uint32_t{static_cast<unsigned char>(p[at + 3])};
}

std::uint16_t readU16(std::string_view p, std::size_t at) {
  return static_cast<std::uint16_t>((static_cast<unsigned char>(p[at]) << 8) |
                                    static_cast<unsigned char>(p[at + 1]));
}

/// The offset after the (possibly compressed) name at `at`; nullopt if it runs off the end.
std::optional<std::size_t> skipName(std::string_view p, std::size_t at) {
  while (at < p.size()) {
    const auto len = static_cast<unsigned char>(p[at]);
    if (len == 0) {
      return at + 1;
    }
    if ((len & 0xC0U) == 0xC0U) {
      return at + 2 <= p.size() ? std::optional<std::size_t>{at + 2} : std::nullopt;
    }
    if ((len & 0xC0U) != 0) {
      return std::nullopt;  // the reserved label types
    }
    at += 1U + len;
  }
  return std::nullopt;
}

/// The offset after the resource record at `at`, with its type, TTL and RDATA span.
struct Rr {
  std::size_t end = 0;
  std::uint16_t type = 0;
  std::uint32_t ttl = 0;
  std::size_t rdata = 0;
  std::size_t rdlength = 0;
};

std::optional<Rr> readRr(std::string_view p, std::size_t at) {
  auto fixed = skipName(p, at);
  if (!fixed || *fixed + kRrFixedSize > p.size()) {
    return std::nullopt;
  }
  Rr rr;
  rr.type = readU16(p, *fixed);
  rr.ttl = readU32(p, *fixed + 4);
  rr.rdlength = readU16(p, *fixed + 8);
  rr.rdata = *fixed + kRrFixedSize;
  rr.end = rr.rdata + rr.rdlength;
  if (rr.end > p.size()) {
    return std::nullopt;
  }
  return rr;
}

}  // namespace

DnsCache::DnsCache(std::size_t maxEntries)
    : perShard_(maxEntries == 0 ? 0 : (maxEntries + kShards - 1) / kShards) {}

std::string DnsCache::keyFor(std::string_view name, DnsType type) {
  if (!name.empty() && name.back() == '.') {
    name.remove_suffix(1);
  }
  std::string key;
  key.reserve(name.size() + 5);
  for (char c : name) {
    key += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  // A NUL cannot be in a name we query (plausibleName and libunbound refuse it).
  const auto t = static_cast<std::uint16_t>(type);
  key += '\0';
  key += static_cast<char>(t >> 8);
  key += static_cast<char>(t & 0xFFU);
  key += static_cast<char>(kClassIn >> 8);
  key += static_cast<char>(kClassIn & 0xFFU);
  return key;
}

DnsCache::Shard& DnsCache::shardFor(std::string_view key) {
  return shards_[std::hash<std::string_view>{}(key) % kShards];
}

std::optional<DnsAnswer> DnsCache::find(std::string_view name, DnsType type,
                                        Clock::time_point now) {
  if (perShard_ == 0) {
    return std::nullopt;
  }
  const std::string key = keyFor(name, type);
  Shard& shard = shardFor(key);
  {
    std::lock_guard lock(shard.mutex);
    auto it = shard.index.find(key);
    if (it != shard.index.end()) {
      auto entry = it->second;
      if (entry->expires > now) {
        shard.lru.splice(shard.lru.begin(), shard.lru, entry);
        DnsAnswer answer = entry->answer;
        hits_.fetch_add(1, std::memory_order_relaxed);
        return answer;
      }
      shard.index.erase(it);
      shard.lru.erase(entry);
    }
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  return std::nullopt;
}

void DnsCache::store(std::string_view name, DnsType type, const DnsAnswer& answer,
                     std::chrono::seconds ttl, Clock::time_point now) {
  if (perShard_ == 0 || answer.tempFailed() || ttl <= std::chrono::seconds::zero()) {
    return;
  }
  const bool negative = answer.status != DnsStatus::Answer;
  ttl = std::min(ttl, negative ? kMaxNegativeTtl : kMaxTtl);
  std::string key = keyFor(name, type);
  Shard& shard = shardFor(key);
  std::lock_guard lock(shard.mutex);
  if (auto it = shard.index.find(key); it != shard.index.end()) {
    it->second->answer = answer;
    it->second->expires = now + ttl;
    shard.lru.splice(shard.lru.begin(), shard.lru, it->second);
    stores_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (shard.lru.size() >= perShard_) {
    shard.index.erase(shard.lru.back().key);
    shard.lru.pop_back();
    evictions_.fetch_add(1, std::memory_order_relaxed);
  }
  shard.lru.push_front(Entry{std::move(key), answer, now + ttl});
  shard.index.emplace(shard.lru.front().key, shard.lru.begin());
  stores_.fetch_add(1, std::memory_order_relaxed);
}

DnsCache::Stats DnsCache::stats() const {
  return {hits_.load(std::memory_order_relaxed), misses_.load(std::memory_order_relaxed),
          stores_.load(std::memory_order_relaxed), evictions_.load(std::memory_order_relaxed)};
}

std::size_t DnsCache::size() const {
  std::size_t n = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    n += shard.lru.size();
  }
  return n;
}

std::chrono::seconds DnsCache::negativeTtl(std::string_view packet) {
  if (packet.size() < kHeaderSize) {
    return kNegativeTtlWithoutSoa;
  }
  const std::uint16_t questions = readU16(packet, 4);
  const std::uint16_t answers = readU16(packet, 6);
  const std::uint16_t authority = readU16(packet, 8);
  std::size_t at = kHeaderSize;
  for (std::uint16_t i = 0; i < questions; ++i) {
    auto end = skipName(packet, at);
    if (!end || *end + 4 > packet.size()) {
      return kNegativeTtlWithoutSoa;
    }
    at = *end + 4;
  }
  for (std::uint32_t i = 0; i < std::uint32_t{answers} + authority; ++i) {
    auto rr = readRr(packet, at);
    if (!rr) {
      break;
    }
    at = rr->end;
    if (i >= answers && rr->type == kTypeSoa && rr->rdlength >= kSoaMinRdata) {
      const std::uint32_t minimum = readU32(packet, rr->end - 4);
      // RFC 2181 8: a TTL with the top bit set is read as zero.
      const std::uint32_t ttl = (rr->ttl & 0x80000000U) != 0 ? 0 : rr->ttl;
      const auto seconds = std::chrono::seconds(std::min(ttl, minimum));
      return std::min(seconds, kMaxNegativeTtl);
    }
  }
  return kNegativeTtlWithoutSoa;
}

}  // namespace smtpgate::policies
