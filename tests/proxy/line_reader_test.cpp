// LineReader: CRLF and bare-LF lines, flags, pipelined input, the length
// limit with recovery, and chunking invariance.

#include "proxy/line_reader.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "test_util.h"

namespace smtpgate::proxy {
namespace {

using test::visible;

/// Feeds chunks and records what came out: "HELO a", "HELO a [bareLf]",
/// "!LineTooLong", "...partial" for an unfinished line at the end.
std::vector<std::string> events(LineReader& reader, const std::vector<std::string_view>& chunks) {
  std::vector<std::string> out;
  for (std::string_view chunk : chunks) {
    while (!chunk.empty()) {
      ParseResult r = reader.feed(chunk);
      REQUIRE(r.consumed <= chunk.size());
      REQUIRE(reader.buffered() <= limits::kCommandLineMax + 1);
      chunk.remove_prefix(r.consumed);
      if (r.status == ParseStatus::Complete) {
        const CommandLine& line = reader.line();
        std::string e = visible(line.text);
        e += line.bareLf ? " [bareLf]" : "";
        e += line.hasNul ? " [nul]" : "";
        e += line.hasBareCr ? " [bareCr]" : "";
        out.push_back(e);
      } else if (r.status == ParseStatus::Error) {
        REQUIRE(reader.error() == LineError::LineTooLong);
        out.emplace_back("!LineTooLong");
      } else {
        REQUIRE(chunk.empty());
      }
    }
  }
  if (reader.buffered() > 0) {
    out.emplace_back("...partial");
  }
  return out;
}

std::vector<std::string> events(std::size_t maxLine, std::string_view input) {
  LineReader reader(maxLine);
  return events(reader, {input});
}

struct Case {
  std::string name;
  std::string input;
  std::vector<std::string> expected;
};

TEST_CASE("LineReader splits lines and flags oddities", "[proxy][line_reader]") {
  const std::vector<Case> cases = {
      {"one CRLF line", "HELO a\r\n", {"HELO a"}},
      {"pipelined",
       "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n",
       {"MAIL FROM:<a@b>", "RCPT TO:<c@d>", "DATA"}},
      {"bare LF accepted and reported", "NOOP\nQUIT\r\n", {"NOOP [bareLf]", "QUIT"}},
      {"empty line", "\r\n", {""}},
      {"empty bare-LF line", "\n", {" [bareLf]"}},
      {"NUL flagged", std::string("NO\0OP\r\n", 7), {"NO\\x00OP [nul]"}},
      {"bare CR inside flagged", "NOOP\rQUIT\r\n", {"NOOP\\rQUIT [bareCr]"}},
      {"CR CR LF: one bare CR", "NOOP\r\r\n", {"NOOP\\r [bareCr]"}},
      {"unfinished line kept", "HELO a\r\nQUI", {"HELO a", "...partial"}},
      {"8-bit bytes pass", "HELO \xC3\xA9t\xC3\xA9\r\n", {"HELO \\xC3\\xA9t\\xC3\\xA9"}},
  };
  for (const auto& c : cases) {
    INFO(c.name << ": " << visible(c.input));
    CHECK(events(limits::kCommandLineMax, c.input) == c.expected);
    LineReader bytewise;
    CHECK(events(bytewise, test::byteChunks(c.input)) == c.expected);
  }
}

TEST_CASE("LineReader enforces the line limit and recovers", "[proxy][line_reader]") {
  const std::size_t max = 8;
  const std::vector<Case> cases = {
      {"exactly max", "12345678\r\n", {"12345678"}},
      {"exactly max, bare LF", "12345678\n", {"12345678 [bareLf]"}},
      {"max + 1", "123456789\r\nNOOP\r\n", {"!LineTooLong", "NOOP"}},
      {"far too long", std::string(10000, 'x') + "\r\nNOOP\r\n", {"!LineTooLong", "NOOP"}},
      {"too long, bare LF end", std::string(100, 'x') + "\nQUIT\r\n", {"!LineTooLong", "QUIT"}},
      {"max then CR then text", "12345678\rX\r\nNOOP\r\n", {"!LineTooLong", "NOOP"}},
      {"two long lines",
       std::string(20, 'a') + "\r\n" + std::string(20, 'b') + "\r\nRSET\r\n",
       {"!LineTooLong", "!LineTooLong", "RSET"}},
      {"too long, no end yet", std::string(20, 'a'), {"!LineTooLong"}},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    CHECK(events(max, c.input) == c.expected);
    LineReader bytewise(max);
    CHECK(events(bytewise, test::byteChunks(c.input)) == c.expected);
    for (unsigned seed = 1; seed <= 20; ++seed) {
      LineReader chunked(max);
      CHECK(events(chunked, test::randomChunks(c.input, 7, seed)) == c.expected);
    }
  }
}

TEST_CASE("LineReader discards an over-long line across feeds without buffering it",
          "[proxy][line_reader]") {
  LineReader reader(16);
  ParseResult r = reader.feed(std::string(17, 'x'));
  CHECK(r == ParseResult{ParseStatus::Error, 17});
  CHECK(reader.discarding());
  for (int i = 0; i < 1000; ++i) {
    CHECK(reader.feed(std::string(4096, 'y')) == ParseResult{ParseStatus::NeedMore, 4096});
    REQUIRE(reader.buffered() == 0);
  }
  r = reader.feed("tail\r\nNOOP\r\n");
  CHECK(r == ParseResult{ParseStatus::Complete, 12});
  CHECK(reader.line().text == "NOOP");
  CHECK_FALSE(reader.discarding());
  CHECK(reader.error() == LineError::None);
}

TEST_CASE("LineReader: reset drops a partial line", "[proxy][line_reader]") {
  LineReader reader;
  CHECK(reader.feed("STARTTLS\r\nEHLO inj").status == ParseStatus::Complete);
  CHECK(reader.feed("EHLO inj") == ParseResult{ParseStatus::NeedMore, 8});
  reader.reset();
  CHECK(reader.feed("EHLO real\r\n").status == ParseStatus::Complete);
  CHECK(reader.line().text == "EHLO real");
}

TEST_CASE("LineReader: reply for an over-long line", "[proxy][line_reader]") {
  CHECK(replyFor(LineError::LineTooLong).line() == "500 5.5.2 Error: line too long");
}

}  // namespace
}  // namespace smtpgate::proxy
