// Fuzz target: parseSpfRecord and SpfMacroString (policies/spf_record,
// policies/spf_macro), the parsers of DNS text any domain owner controls.
// Invariants: parsing never crashes and either yields a record or says why
// not; every expansion stays within kMaxSpfExpansion; a domain-spec's
// expansion truncated for a query is at most 253 bytes.

#include <string>

#include "fuzz_check.h"
#include "policies/spf_macro.h"
#include "policies/spf_record.h"

namespace {

using namespace smtpgate::policies;

SpfMacroValues fuzzValues(std::string_view input) {
  SpfMacroValues v;
  v.sender = std::string(input.substr(0, 64)) + "@example.org";
  v.localPart = std::string(input.substr(0, 64));
  v.senderDomain = "example.org";
  v.domain = "example.org";
  v.ip = *smtpgate::rules::IpAddress::parse(input.size() % 2 != 0 ? "192.0.2.3" : "2001:db8::cb01");
  v.helo = std::string(input.substr(0, 32));
  v.receiver = "mx.example.net";
  v.timestamp = 1'700'000'000;
  return v;
}

void checkExpansion(const SpfMacroString& macro, const SpfMacroValues& values, bool domainSpec) {
  std::string error;
  if (auto expanded = macro.expand(values, error)) {
    FUZZ_CHECK(expanded->size() <= kMaxSpfExpansion);
    if (domainSpec) {
      FUZZ_CHECK(truncateSpfDomain(*expanded).size() <= 253);
    }
  } else {
    FUZZ_CHECK(!error.empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const SpfMacroValues values = fuzzValues(input);

  std::string text = "v=spf1 " + std::string(input);
  SpfRecordParse parsed = parseSpfRecord(text);
  FUZZ_CHECK(parsed.record.has_value() != !parsed.error.empty());
  if (parsed.record) {
    for (const auto& m : parsed.record->mechanisms) {
      FUZZ_CHECK(m.cidr4 >= 0 && m.cidr4 <= 32 && m.cidr6 >= 0 && m.cidr6 <= 128);
      if (m.domain) {
        checkExpansion(*m.domain, values, true);
      }
    }
    if (parsed.record->redirect) {
      checkExpansion(*parsed.record->redirect, values, true);
    }
  }

  for (auto syntax :
       {SpfMacroSyntax::DomainSpec, SpfMacroSyntax::UnknownModifier, SpfMacroSyntax::Explanation}) {
    std::string error;
    auto macro = SpfMacroString::parse(input, syntax, error);
    FUZZ_CHECK(macro.has_value() || !error.empty());
    if (macro) {
      checkExpansion(*macro, values, syntax == SpfMacroSyntax::DomainSpec);
    }
  }
  return 0;
}
