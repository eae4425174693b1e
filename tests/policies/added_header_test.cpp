// AddedHeader: the wire form of a field smtpgate adds, and the last guard
// that keeps its value on one line.
#include <catch2/catch.hpp>

#include "policies/added_header.h"

using smtpgate::policies::AddedHeader;
using smtpgate::policies::oneLineHeaderValue;

TEST_CASE("an added header value is one line", "[added_header]") {
  struct Case {
    std::string in, out;
  };
  const Case cases[] = {
      {"mx.example.com; none", "mx.example.com; none"},
      {"a\r\nX-Injected: yes", "a  X-Injected: yes"},
      {"bare\nlf and bare\rcr", "bare lf and bare cr"},
      {std::string("nul\0byte", 8), "nul byte"},
      {"tab\tstays, del\x7fgoes", "tab\tstays, del goes"},
      {"100% utf-8 \xC3\xA9", "100% utf-8 \xC3\xA9"},
  };
  for (const auto& c : cases) {
    CHECK(oneLineHeaderValue(c.in) == c.out);
  }
}

TEST_CASE("an added header goes on the wire as one CRLF line", "[added_header]") {
  CHECK(AddedHeader{"Authentication-Results", "mx.example.com; none"}.line() ==
        "Authentication-Results: mx.example.com; none\r\n");
}
