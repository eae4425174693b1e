// Tests of the list data structures: CIDR trie, domain suffix set, string
// set, DNSBL helpers, and the builder that dispatches on the list kind.

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "policies/cidr_list.h"
#include "policies/dnsbl_list.h"
#include "policies/domain_list.h"
#include "policies/list_builder.h"
#include "policies/string_list.h"

namespace smtpgate::policies {
namespace {

using rules::Diagnostics;
using rules::FactValue;
using rules::IpAddress;
using rules::ListEntry;
using rules::ListKind;
using rules::Severity;
using rules::Tri;

ListEntry entry(std::string text, int line = 1, int column = 1) {
  ListEntry e;
  e.where = {"test.list", line, column};
  e.sourceLine = std::string(static_cast<std::size_t>(column - 1), ' ') + text;
  e.text = std::move(text);
  return e;
}

std::vector<ListEntry> entries(std::initializer_list<const char*> texts) {
  std::vector<ListEntry> out;
  int line = 1;
  for (const char* t : texts) {
    out.push_back(entry(t, line++));
  }
  return out;
}

IpAddress ip(const std::string& text) {
  const auto a = IpAddress::parse(text);
  INFO("address " << text);
  REQUIRE(a.has_value());
  return *a;
}

std::shared_ptr<const CidrList> cidrs(std::initializer_list<const char*> texts) {
  Diagnostics diags;
  auto list = CidrList::build(entries(texts), diags);
  INFO(rules::format(diags));
  REQUIRE(diags.empty());
  return list;
}

// ---------------------------------------------------------------- CIDR

struct MatchCase {
  std::vector<const char*> entries;
  const char* address;
  std::optional<int> expected;  ///< longest prefix, family terms
};

TEST_CASE("cidr longest-prefix match", "[lists]") {
  const std::vector<MatchCase> cases = {
      // IPv4 host and network
      {{"192.0.2.1"}, "192.0.2.1", 32},
      {{"192.0.2.1"}, "192.0.2.2", std::nullopt},
      {{"192.0.2.0/24"}, "192.0.2.255", 24},
      {{"192.0.2.0/24"}, "192.0.3.0", std::nullopt},
      {{"192.0.2.7/32"}, "192.0.2.7", 32},
      // overlapping prefixes: longest wins, in either insertion order
      {{"10.0.0.0/8", "10.1.0.0/16"}, "10.1.2.3", 16},
      {{"10.0.0.0/8", "10.1.0.0/16"}, "10.2.0.1", 8},
      {{"10.1.0.0/16", "10.0.0.0/8"}, "10.1.2.3", 16},
      {{"10.1.0.0/16", "10.0.0.0/8"}, "10.2.0.1", 8},
      {{"10.0.0.0/8", "10.1.0.0/16"}, "11.0.0.1", std::nullopt},
      // siblings that split an edge, then a covering prefix
      {{"10.1.2.0/24", "10.1.3.0/24", "10.1.0.0/16"}, "10.1.3.9", 24},
      {{"10.1.2.0/24", "10.1.3.0/24", "10.1.0.0/16"}, "10.1.4.9", 16},
      {{"10.1.2.0/24", "10.1.3.0/24"}, "10.1.4.9", std::nullopt},
      {{"10.1.2.0/24", "10.1.2.128/25", "10.1.2.192/26"}, "10.1.2.200", 26},
      {{"10.1.2.192/26", "10.1.2.128/25", "10.1.2.0/24"}, "10.1.2.130", 25},
      // /0: v4 all of IPv4 only; ::/0 everything
      {{"0.0.0.0/0"}, "203.0.113.9", 0},
      {{"0.0.0.0/0"}, "::ffff:203.0.113.9", 0},
      {{"0.0.0.0/0"}, "2001:db8::1", std::nullopt},
      {{"0.0.0.0/0"}, "::1", std::nullopt},
      {{"::/0"}, "2001:db8::1", 0},
      {{"::/0"}, "203.0.113.9", 0},
      {{"::/0", "0.0.0.0/0"}, "203.0.113.9", 0},
      {{"::/0", "203.0.113.0/24"}, "203.0.113.9", 24},
      // IPv6
      {{"2001:db8::/32"}, "2001:db8:ffff::1", 32},
      {{"2001:db8::/32"}, "2001:db9::1", std::nullopt},
      {{"2001:db8::/32", "2001:db8:1::/48"}, "2001:db8:1::5", 48},
      {{"2001:db8::/32", "2001:db8:1::/48"}, "2001:db8:2::5", 32},
      {{"2001:db8::1/128"}, "2001:db8::1", 128},
      {{"2001:db8::1/128"}, "2001:db8::2", std::nullopt},
      {{"::1"}, "::1", 128},
      {{"::1"}, "::", std::nullopt},
      {{"2001:db8::/31"}, "2001:db9::1", 31},
      // v4-mapped: either side may be written as ::ffff:a.b.c.d
      {{"1.2.3.0/24"}, "::ffff:1.2.3.4", 24},
      {{"::ffff:1.2.3.0/120"}, "1.2.3.4", 24},
      {{"::ffff:0:0/96"}, "8.8.8.8", 0},
      // a native v6 network that covers the v4-mapped space answers in v6 terms
      {{"::/64"}, "1.2.3.4", 64},
      {{"::/64"}, "2001:db8::1", std::nullopt},
      // v4 entries never match native v6 that shares the low 32 bits
      {{"1.2.3.4"}, "::1.2.3.4", std::nullopt},
  };
  for (const auto& c : cases) {
    Diagnostics diags;
    std::vector<ListEntry> es;
    for (const char* t : c.entries) {
      es.push_back(entry(t));
    }
    const auto list = CidrList::build(es, diags);
    INFO("entries[0]=" << c.entries.front() << " n=" << c.entries.size() << " address "
                       << c.address);
    CHECK(diags.empty());
    CHECK(list->longestMatch(ip(c.address)) == c.expected);
    CHECK(list->contains(ip(c.address), "") == rules::toTri(c.expected.has_value()));
  }
}

TEST_CASE("cidr contains by value type", "[lists]") {
  const auto list = cidrs({"10.0.0.0/8", "2001:db8::/32"});
  CHECK(list->kind() == ListKind::Cidr);
  CHECK(list->size() == 2);
  CHECK(list->contains(ip("10.9.9.9"), "") == Tri::True);
  CHECK(list->contains(ip("2001:db8::9"), "") == Tri::True);
  CHECK(list->contains(ip("192.0.2.1"), "") == Tri::False);
  CHECK(list->contains(rules::Strings{"junk", "192.0.2.1", "10.1.1.1"}, "") == Tri::True);
  CHECK(list->contains(rules::Strings{"junk", "192.0.2.1"}, "") == Tri::False);
  CHECK(list->contains(rules::Strings{}, "") == Tri::False);
  CHECK(list->contains(std::string("10.1.1.1"), "") == Tri::False);
  CHECK(list->contains(true, "") == Tri::False);
  CHECK(list->contains(10.0, "") == Tri::False);
  CHECK(list->contains(rules::Unavailable{"no client"}, "") == Tri::Unknown);
}

TEST_CASE("cidr duplicates count once", "[lists]") {
  const auto list = cidrs({"10.0.0.0/8", "10.0.0.0/8", "::ffff:10.0.0.0/104", "::/0", "::/0"});
  CHECK(list->size() == 2);
  CHECK(list->longestMatch(ip("10.1.1.1")) == 8);
}

// A plain 128-bit brute force to check the trie against.
struct Prefix {
  std::array<std::uint8_t, 16> key{};
  unsigned length = 0;  // 128-bit terms
};

bool inPrefix(const std::array<std::uint8_t, 16>& addr, const Prefix& p) {
  for (unsigned i = 0; i < p.length; i += 8) {
    const unsigned bits = std::min(8U, p.length - i);
    const auto mask = static_cast<std::uint8_t>(0xFFU << (8 - bits));
    if ((addr[i / 8] & mask) != (p.key[i / 8] & mask)) {
      return false;
    }
  }
  return true;
}

std::string prefixText(const Prefix& p, bool v4) {
  const IpAddress a = IpAddress::fromBytes16(p.key);
  if (v4) {
    return a.toString() + "/" + std::to_string(p.length - 96);
  }
  return a.toString() + "/" + std::to_string(p.length);
}

TEST_CASE("cidr 100,000 random prefixes agree with brute force", "[lists]") {
  std::mt19937 rng(20240601);
  std::uniform_int_distribution<int> byte(0, 255);
  const IpAddress v6Base = *IpAddress::parse("2001:db8::");
  std::vector<Prefix> prefixes;
  std::vector<ListEntry> es;
  constexpr int kEntries = 100000;
  for (int i = 0; i < kEntries; ++i) {
    const bool v4 = i % 2 == 0;
    Prefix p;
    std::array<std::uint8_t, 16> bytes = v4 ? IpAddress::fromV4(0).bytes() : v6Base.bytes();
    for (int b = v4 ? 12 : 4; b < 16; ++b) {
      bytes[b] = static_cast<std::uint8_t>(byte(rng));
    }
    p.length = v4 ? 96 + std::uniform_int_distribution<unsigned>(16, 32)(rng)
                  : std::uniform_int_distribution<unsigned>(48, 128)(rng);
    for (unsigned bit = p.length; bit < 128; ++bit) {
      bytes[bit / 8] &= static_cast<std::uint8_t>(~(0x80U >> (bit % 8)));
    }
    p.key = bytes;
    prefixes.push_back(p);
    es.push_back(entry(prefixText(p, v4), i + 1));
  }
  Diagnostics diags;
  const auto list = CidrList::build(es, diags);
  INFO(rules::format(diags));
  REQUIRE(diags.empty());
  REQUIRE(list->size() <= static_cast<std::size_t>(kEntries));
  REQUIRE(list->size() > static_cast<std::size_t>(kEntries) * 9 / 10);

  int hits = 0;
  for (int i = 0; i < 1000; ++i) {
    // Half the samples sit inside a random entry (host bits randomised), half anywhere.
    const Prefix& near =
        prefixes[std::uniform_int_distribution<std::size_t>(0, prefixes.size() - 1)(rng)];
    std::array<std::uint8_t, 16> addr = near.key;
    const bool v4 = addr[10] == 0xff;
    for (int b = (i % 2 == 0) ? 15 : (v4 ? 12 : 4); b < 16; ++b) {
      addr[b] = static_cast<std::uint8_t>(byte(rng));
    }
    std::optional<unsigned> best;
    for (const auto& p : prefixes) {
      if ((!best || p.length > *best) && inPrefix(addr, p)) {
        best = p.length;
      }
    }
    std::optional<int> expected;
    if (best) {
      expected = static_cast<int>(v4 ? *best - 96 : *best);
      ++hits;
    }
    const IpAddress a = IpAddress::fromBytes16(addr);
    INFO("address " << a.toString());
    CHECK(list->longestMatch(a) == expected);
  }
  CHECK(hits > 100);   // the sample really exercises matches
  CHECK(hits < 1000);  // ... and misses
}

struct DiagCase {
  const char* text;
  Severity severity;
  const char* message;  ///< a substring of the message
};

TEST_CASE("cidr diagnostics", "[lists]") {
  const std::vector<DiagCase> cases = {
      {"not-an-ip", Severity::Error, "not an IP address or network: \"not-an-ip\""},
      {"1.2.3", Severity::Error, "not an IP address or network"},
      {"1.2.3.256", Severity::Error, "not an IP address or network"},
      {"2001:db8:::1", Severity::Error, "not an IP address or network"},
      {"/24", Severity::Error, "not an IP address or network"},
      {"1.2.3.4/33", Severity::Error,
       "prefix length /33 in \"1.2.3.4/33\" is too long: IPv4 "
       "prefixes are 0-32"},
      {"2001:db8::/129", Severity::Error, "IPv6 prefixes are 0-128"},
      {"1.2.3.4/x", Severity::Error, "bad prefix length in \"1.2.3.4/x\": expected a number 0-32"},
      {"1.2.3.4/", Severity::Error, "bad prefix length"},
      {"1.2.3.4/-1", Severity::Error, "bad prefix length"},
      {"1.2.3.4/+8", Severity::Error, "bad prefix length"},
      {"1.2.3.4/1000", Severity::Error, "bad prefix length"},
      {"1.2.3.0/24/8", Severity::Error, "bad prefix length"},
      {"2001:db8::/x", Severity::Error, "expected a number 0-128"},
      {"10.0.0.1/8", Severity::Warning, "host bits set in 10.0.0.1/8; did you mean 10.0.0.0/8?"},
      {"192.0.2.129/25", Severity::Warning, "did you mean 192.0.2.128/25?"},
      {"2001:db8::1/32", Severity::Warning,
       "host bits set in 2001:db8::1/32; did you mean 2001:db8::/32?"},
      {"::ffff:10.0.0.1/104", Severity::Warning, "did you mean ::ffff:10.0.0.0/104?"},
      {"\x01\x02", Severity::Error, "\"\\x01\\x02\""},
  };
  for (const auto& c : cases) {
    INFO("entry " << c.text);
    Diagnostics diags;
    CidrList list;
    const bool added = list.add(entry(c.text, 7, 5), diags);
    CHECK(added == (c.severity == Severity::Warning));
    REQUIRE(diags.items().size() == 1);
    const auto& d = diags.items().front();
    CHECK(d.severity == c.severity);
    CHECK_THAT(d.message, Catch::Contains(c.message));
    CHECK(d.where.file == "test.list");
    CHECK(d.where.line == 7);
    CHECK(d.where.column == 5);
    CHECK(d.sourceLine == std::string("    ") + c.text);
  }
}

TEST_CASE("cidr host-bits entry still adds the network", "[lists]") {
  Diagnostics diags;
  const auto list = CidrList::build({entry("10.0.0.1/8", 2, 3), entry("bogus", 3, 1)}, diags);
  REQUIRE(diags.items().size() == 2);
  CHECK(diags.items()[0].severity == Severity::Warning);
  CHECK(diags.items()[0].where.column == 3);
  CHECK(diags.items()[1].severity == Severity::Error);
  CHECK(diags.items()[1].where.line == 3);
  CHECK(list->size() == 1);
  CHECK(list->longestMatch(ip("10.200.0.1")) == 8);
}

// ---------------------------------------------------------------- domain

TEST_CASE("domain list suffix semantics", "[lists]") {
  Diagnostics diags;
  const auto list = DomainList::build(
      entries({"example.com", "Sub.Example.ORG.", "*.wild.net", "a_b.test"}), diags);
  REQUIRE(diags.items().size() == 1);  // the redundant *.
  CHECK(list->size() == 4);
  CHECK(list->kind() == ListKind::Domain);

  const std::string deep = [] {
    std::string s;
    for (int i = 0; i < 5000; ++i) {
      s += "a.";
    }
    return s;
  }();
  const std::vector<std::pair<std::string, bool>> cases = {
      {"example.com", true},
      {"EXAMPLE.COM", true},
      {"example.com.", true},
      {"a.b.example.com", true},
      {"A.B.Example.Com.", true},
      {"badexample.com", false},
      {"com", false},
      {"example.co", false},
      {"example.com.evil.net", false},
      {"xexample.com", false},
      {"user@example.com", true},
      {"User@Mail.EXAMPLE.com", true},
      {"a@b@mail.example.com", true},
      {"example.com@evil.net", false},
      {"@example.com", true},
      {"sub.example.org", true},
      {"x.sub.example.org", true},
      {"example.org", false},
      {"wild.net", true},
      {"a.wild.net", true},
      {"a_b.test", true},
      {"", false},
      {"@", false},
      {".", false},
      {deep + "example.com", true},
      {deep + "badexample.com", false},
      {std::string(5000, 'x') + "example.com", false},
      {std::string(5000, 'x'), false},
  };
  for (const auto& [value, expected] : cases) {
    INFO("value " << value.substr(0, 60) << " (size " << value.size() << ")");
    CHECK(list->matches(value) == expected);
    CHECK(list->contains(value, "") == rules::toTri(expected));
  }
  CHECK(list->contains(rules::Strings{"gmail.com", "x.example.com"}, "") == Tri::True);
  CHECK(list->contains(rules::Strings{"gmail.com"}, "") == Tri::False);
  CHECK(list->contains(ip("1.2.3.4"), "") == Tri::False);
  CHECK(list->contains(rules::Unavailable{"no sender"}, "") == Tri::Unknown);
}

TEST_CASE("domain list: a match window ending exactly on a label boundary", "[lists]") {
  // 253 bytes: a label of 63, then 189 bytes of example labels; the value has
  // one more label in front, so the window starts right after a dot.
  std::string name = std::string(63, 'a') + ".";
  while (name.size() + 2 < 241) {
    name += "b.";
  }
  name += std::string(241 - name.size(), 'c') + ".example.com";
  REQUIRE(name.size() == 253);
  Diagnostics diags;
  const auto list = DomainList::build({entry(name)}, diags);
  INFO(rules::format(diags));
  REQUIRE(diags.empty());
  CHECK(list->matches("x." + name));
  CHECK(list->matches("user@x.y." + name + "."));
  CHECK_FALSE(list->matches("x" + name));
}

TEST_CASE("domain list diagnostics", "[lists]") {
  const std::string label64(64, 'a');
  std::string name254;
  while (name254.size() < 254) {
    name254 += "abcdefghi.";
  }
  name254.resize(254);
  name254.back() = 'x';
  const std::vector<std::pair<std::string, std::pair<Severity, std::string>>> cases = {
      {"*.example.com", {Severity::Warning, "'*.' is redundant: example.com already matches"}},
      {"a..b", {Severity::Error, "bad domain \"a..b\": empty label"}},
      {".example.com", {Severity::Error, "empty label"}},
      {"", {Severity::Error, "empty domain name"}},
      {".", {Severity::Error, "empty domain name"}},
      {"*.", {Severity::Error, "empty domain name"}},
      {"*", {Severity::Error, "'*' is only allowed as a leading '*.'"}},
      {"foo.*.com", {Severity::Error, "'*' is only allowed"}},
      {"exa mple.com", {Severity::Error, "invalid character \" \""}},
      {"bad\x7f.com", {Severity::Error, "invalid character \"\\x7f\""}},
      {"user@example.com", {Severity::Error, "use a string list for whole addresses"}},
      {label64 + ".com", {Severity::Error, "label longer than 63 characters"}},
      {name254, {Severity::Error, "longer than 253 characters"}},
  };
  for (const auto& [text, expected] : cases) {
    INFO("entry " << text);
    Diagnostics diags;
    DomainList list;
    CHECK(list.add(entry(text, 4, 9), diags) == (expected.first == Severity::Warning));
    REQUIRE(diags.items().size() == 1);
    CHECK(diags.items()[0].severity == expected.first);
    CHECK_THAT(diags.items()[0].message, Catch::Contains(expected.second));
    CHECK(diags.items()[0].where.line == 4);
    CHECK(diags.items()[0].where.column == 9);
  }
  // Limits are inclusive: a 63-character label and a 253-character name are fine.
  Diagnostics diags;
  DomainList list;
  CHECK(list.add(entry(std::string(63, 'a') + ".com"), diags));
  CHECK(list.add(entry(name254.substr(1)), diags));
  CHECK(list.add(entry(name254.substr(1) + "."), diags));
  CHECK(diags.empty());
}

// ---------------------------------------------------------------- string

TEST_CASE("string list is exact and ASCII case-insensitive", "[lists]") {
  Diagnostics diags;
  const auto list = StringList::build(
      entries({"Postmaster@Example.com", "abuse@example.net", "ABUSE@EXAMPLE.NET"}), diags);
  REQUIRE(diags.empty());
  CHECK(list->kind() == ListKind::String);
  CHECK(list->size() == 2);
  const std::vector<std::pair<std::string, bool>> cases = {
      {"postmaster@example.com", true},    {"POSTMASTER@EXAMPLE.COM", true},
      {"Postmaster@Example.com", true},    {"abuse@Example.Net", true},
      {"postmaster@example.co", false},    {"postmaster@example.com ", false},
      {"x.postmaster@example.com", false}, {"", false},
      {std::string(100000, 'p'), false},
  };
  for (const auto& [value, expected] : cases) {
    INFO("value " << value.substr(0, 60));
    CHECK(list->contains(value, "") == rules::toTri(expected));
  }
  CHECK(list->contains(rules::Strings{"a", "ABUSE@example.net"}, "") == Tri::True);
  CHECK(list->contains(rules::Strings{"a", "b"}, "") == Tri::False);
  CHECK(list->contains(ip("1.2.3.4"), "") == Tri::False);
  CHECK(list->contains(rules::Unavailable{"x"}, "") == Tri::Unknown);
}

TEST_CASE("string list non-ASCII bytes compare exactly", "[lists]") {
  Diagnostics diags;
  const auto list = StringList::build({entry("J\xC3\x96RG@example.com")}, diags);
  CHECK(list->contains(std::string("j\xC3\x96rg@EXAMPLE.com"), "") == Tri::True);
  CHECK(list->contains(std::string("j\xC3\xB6rg@example.com"), "") == Tri::False);
}

TEST_CASE("string list empty entry is an error", "[lists]") {
  Diagnostics diags;
  StringList list;
  CHECK_FALSE(list.add(entry("", 2, 3), diags));
  REQUIRE(diags.items().size() == 1);
  CHECK(diags.items()[0].severity == Severity::Error);
  CHECK(diags.items()[0].where.line == 2);
  CHECK(diags.items()[0].where.column == 3);
}

// ---------------------------------------------------------------- dnsbl

TEST_CASE("dnsbl query names (RFC 5782)", "[lists]") {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"192.0.2.99", "99.2.0.192.zen.example.org"},
      {"127.0.0.2", "2.0.0.127.zen.example.org"},
      {"::ffff:192.0.2.1", "1.2.0.192.zen.example.org"},
      {"2001:db8:1:2:3:4:567:89ab",
       "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.zen.example.org"},
      {"::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.zen.example.org"},
      {"FE80::ABCD",
       "d.c.b.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f.zen.example.org"},
  };
  for (const auto& [address, expected] : cases) {
    INFO("address " << address);
    CHECK(DnsblList::queryName(ip(address), "zen.example.org") == expected);
  }
}

TEST_CASE("dnsbl contains is Unknown until DNS is wired", "[lists]") {
  Diagnostics diags;
  const auto list = DnsblList::build({entry("Zen.Example.ORG.")}, diags);
  REQUIRE(diags.empty());
  CHECK(list->kind() == ListKind::Dnsbl);
  CHECK(list->size() == 1);
  CHECK(list->zone() == "zen.example.org");
  CHECK(list->contains(ip("127.0.0.2"), "") == Tri::Unknown);
  CHECK(list->contains(ip("192.0.2.1"), "127.0.0.2") == Tri::Unknown);
  CHECK(list->contains(ip("2001:db8::1"), "127.0.0.2-11") == Tri::Unknown);
  CHECK(list->contains(rules::Strings{"junk", "192.0.2.1"}, "") == Tri::Unknown);
  CHECK(list->contains(rules::Unavailable{"no client"}, "") == Tri::Unknown);
  CHECK(list->contains(rules::Strings{"junk"}, "") == Tri::False);
  CHECK(list->contains(std::string("example.com"), "") == Tri::False);
}

TEST_CASE("dnsbl qualifier syntax", "[lists]") {
  using Range = DnsblList::AnswerRange;
  constexpr std::uint32_t k127 = 0x7F000000U;
  const std::vector<std::pair<const char*, std::optional<Range>>> cases = {
      {"127.0.0.2", Range{k127 | 2, k127 | 2}},
      {"127.0.0.2-11", Range{k127 | 2, k127 | 11}},
      {"127.0.0.2-2", Range{k127 | 2, k127 | 2}},
      {"127.0.1.0-255", Range{k127 | 0x100, k127 | 0x1FF}},
      {"127.0.0.11-2", std::nullopt},
      {"127.0.0.2-256", std::nullopt},
      {"127.0.0.2-", std::nullopt},
      {"127.0.0.2-1x", std::nullopt},
      {"127.0.0.2-11-12", std::nullopt},
      {"127.0.0.2-0011", std::nullopt},
      {"127.0.0", std::nullopt},
      {"127.0.0.256", std::nullopt},
      {"[127.0.0.2]", std::nullopt},
      {"::1", std::nullopt},
      {"::ffff:127.0.0.2", std::nullopt},
      {"", std::nullopt},
      {"listed", std::nullopt},
  };
  for (const auto& [text, expected] : cases) {
    INFO("qualifier " << text);
    CHECK(DnsblList::parseQualifier(text) == expected);
    CHECK(DnsblList::validQualifier(text) == expected.has_value());
  }
}

TEST_CASE("dnsbl zone diagnostics", "[lists]") {
  Diagnostics diags;
  const auto list = DnsblList::build({entry("zen.example.org", 1), entry("ZEN.example.org.", 2),
                                      entry("bl..example", 3), entry("other.example", 4)},
                                     diags);
  CHECK(list->zone() == "zen.example.org");
  REQUIRE(diags.items().size() == 2);
  CHECK(diags.items()[0].where.line == 3);
  CHECK_THAT(diags.items()[0].message, Catch::Contains("bad DNSBL zone \"bl..example\""));
  CHECK(diags.items()[1].where.line == 4);
  CHECK_THAT(diags.items()[1].message, Catch::Contains("holds one zone"));
}

// ---------------------------------------------------------------- builder

TEST_CASE("standard list builder dispatches on kind", "[lists]") {
  StandardListBuilder builder;
  const std::vector<std::pair<ListKind, std::vector<ListEntry>>> cases = {
      {ListKind::Cidr, entries({"10.0.0.0/8"})},
      {ListKind::Domain, entries({"example.com"})},
      {ListKind::String, entries({"x@example.com"})},
      {ListKind::Dnsbl, entries({"zen.example.org"})},
  };
  for (const auto& [kind, es] : cases) {
    Diagnostics diags;
    const auto list = builder.build(kind, "l", es, diags);
    REQUIRE(list != nullptr);
    CHECK(list->kind() == kind);
    CHECK(list->size() == 1);
    CHECK(diags.empty());
  }
  Diagnostics diags;
  CHECK(builder.build(ListKind::Regex, "words", entries({"v[i1]agra"}), diags) == nullptr);
  CHECK(diags.empty());
  const auto cidr =
      builder.build(ListKind::Cidr, "office", entries({"10.0.0.0/8", "10.0.0.0/8"}), diags);
  CHECK(cidr->size() == 1);
  CHECK(cidr->contains(ip("10.1.2.3"), "") == Tri::True);
  CHECK(diags.empty());  // duplicates are fine
}

TEST_CASE("standard list builder warns about empty lists", "[lists]") {
  StandardListBuilder builder;
  Diagnostics diags;
  const auto list = builder.build(ListKind::Domain, "freemail", entries({"a..b", "@x"}), diags);
  REQUIRE(list != nullptr);
  CHECK(list->size() == 0);
  CHECK_FALSE(list->contains(std::string("a.b"), "") == Tri::True);
  REQUIRE(diags.items().size() == 3);
  const auto& w = diags.items().back();
  CHECK(w.severity == Severity::Warning);
  CHECK(w.message == "list freemail is empty");
  CHECK(w.where.file == "test.list");
  CHECK(w.where.line == 0);

  Diagnostics none;
  const auto empty = builder.build(ListKind::Cidr, "office", {}, none);
  REQUIRE(empty != nullptr);
  CHECK(empty->size() == 0);
  CHECK(empty->contains(ip("10.0.0.1"), "") == Tri::False);
  CHECK(none.empty());  // no entry, so no file to point at
}

}  // namespace
}  // namespace smtpgate::policies
