// DataFramer: the end of DATA (only CRLF.CRLF), dot-unstuffing, SMTP
// smuggling sequences under both bare-line policies, limits that drain,
// pipelined bytes left alone, and the same result however the input is split.

#include "proxy/data_framer.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "test_util.h"

namespace smtpgate::proxy {
namespace {

using test::visible;

struct Framed {
  bool complete = false;
  std::size_t consumed = 0;
  std::string message;
  DataError error = DataError::None;
  std::uint64_t bytesIn = 0;
  std::uint64_t bytesOut = 0;

  friend bool operator==(const Framed&, const Framed&) = default;
};

Framed frame(const std::vector<std::string_view>& chunks, DataLimits limits = {}) {
  DataFramer framer(limits);
  StringSink sink;
  Framed f;
  for (std::string_view chunk : chunks) {
    ParseResult r = framer.feed(chunk, sink);
    REQUIRE(r.status != ParseStatus::Error);
    f.consumed += r.consumed;
    if (r.status == ParseStatus::Complete) {
      f.complete = true;
      break;
    }
    REQUIRE(r.consumed == chunk.size());
  }
  f.message = sink.data();
  f.error = framer.error();
  f.bytesIn = framer.bytesIn();
  f.bytesOut = framer.bytesOut();
  REQUIRE(f.complete == framer.complete());
  REQUIRE(f.bytesIn == f.consumed);
  REQUIRE(f.bytesOut == f.message.size());
  return f;
}

Framed frame(std::string_view input, DataLimits limits = {}) {
  return frame(std::vector<std::string_view>{input}, limits);
}

DataLimits normalize() {
  DataLimits limits;
  limits.bareLines = BareLinePolicy::Normalize;
  return limits;
}

/// Every way of splitting `input` gives the same result as feeding it whole.
void checkSplitInvariance(const std::string& input, DataLimits limits) {
  Framed whole = frame(input, limits);
  for (std::size_t i = 0; i <= input.size(); ++i) {
    std::string_view in(input);
    INFO("split at " << i);
    REQUIRE(frame({in.substr(0, i), in.substr(i)}, limits) == whole);
  }
  REQUIRE(frame(test::byteChunks(input), limits) == whole);
  for (unsigned seed = 1; seed <= 50; ++seed) {
    REQUIRE(frame(test::randomChunks(input, 9, seed), limits) == whole);
  }
}

struct Case {
  std::string name;
  std::string input;
  std::string message;
  std::size_t consumed;
};

TEST_CASE("DataFramer ends only at CRLF.CRLF and unstuffs dots", "[proxy][data]") {
  const std::vector<Case> cases = {
      {"simple", "Subject: hi\r\n\r\nbody\r\n.\r\n", "Subject: hi\r\n\r\nbody\r\n", 24},
      {"empty message", ".\r\n", "", 3},
      {"one empty line", "\r\n.\r\n", "\r\n", 5},
      {"stuffed dot", "..leading dot\r\n.\r\n", ".leading dot\r\n", 18},
      {"stuffed lone dot", "..\r\n.\r\n", ".\r\n", 7},
      {"two stuffed dots", "...\r\n.\r\n", "..\r\n", 8},
      {"unstuffed leading dot (dropped)", ".x\r\n.\r\n", "x\r\n", 7},
      {"dot mid-line stays", "a.b\r\n.\r\n", "a.b\r\n", 8},
      {"dot then text is not the end", "a\r\n.x\r\n.\r\n", "a\r\nx\r\n", 10},
      {"dot space is not the end", "a\r\n. \r\n.\r\n", "a\r\n \r\n", 10},
      {"pipelined command left", "a\r\n.\r\nQUIT\r\n", "a\r\n", 6},
      {"next message left", "a\r\n.\r\nMAIL FROM:<x@y>\r\nDATA\r\nb\r\n.\r\n", "a\r\n", 6},
      {"8-bit and NUL are content", std::string("\xC3\xA9\0z\r\n.\r\n", 9),
       std::string("\xC3\xA9\0z\r\n", 6), 9},
  };
  for (const auto& c : cases) {
    INFO(c.name << ": " << visible(c.input));
    for (DataLimits limits : {DataLimits{}, normalize()}) {
      Framed f = frame(c.input, limits);
      CHECK(f.complete);
      CHECK(f.error == DataError::None);
      CHECK(visible(f.message) == visible(c.message));
      CHECK(f.consumed == c.consumed);
      checkSplitInvariance(c.input, limits);
    }
  }
}

TEST_CASE("DataFramer needs more until the terminator", "[proxy][data]") {
  for (std::string input : {"", "a", "a\r\n", "a\r\n.", "a\r\n.\r", "a\n.\n", "a\r\n..\r\n"}) {
    INFO(visible(input));
    Framed f = frame(input);
    CHECK_FALSE(f.complete);
    CHECK(f.consumed == input.size());
  }
}

struct Smuggle {
  std::string sequence;
  DataError rejectError;  ///< the first bare line end in "body" + sequence + "MAIL..."
};

// The sequences of the SMTP smuggling family (CVE-2023-51764 and relatives):
// each must not end the data.
const std::vector<Smuggle> kSmuggling = {
    {"\n.\n", DataError::BareLf},       {"\n.\r\n", DataError::BareLf},
    {"\r.\r", DataError::BareCr},       {"\r\n.\n", DataError::BareLf},
    {"\r.\r\n", DataError::BareCr},     {"\r\n.\r", DataError::BareCr},
    {"\n.\r", DataError::BareLf},       {"\r.\n", DataError::BareCr},
    {"\r\n.\r\r\n", DataError::BareCr}, {"\r\n\n.\r\n", DataError::BareLf},
};

std::string smuggled(const std::string& seq) {
  return "Subject: hi\r\n\r\nbody" + seq + "MAIL FROM:<evil@attacker.example>\r\n" +
         "RCPT TO:<victim@example.org>\r\nDATA\r\nSpoofed\r\n.\r\nQUIT\r\n";
}

TEST_CASE("DataFramer: smuggling sequences do not end the data (Reject)", "[proxy][data]") {
  for (const auto& s : kSmuggling) {
    std::string input = smuggled(s.sequence);
    INFO(visible(s.sequence));
    Framed f = frame(input);
    CHECK(f.complete);
    // Only the real CRLF.CRLF ends it: just QUIT is left for the command reader.
    CHECK(input.substr(f.consumed) == "QUIT\r\n");
    CHECK(f.error == s.rejectError);
    // Nothing after the bare line end was written.
    CHECK(f.message.find("MAIL FROM") == std::string::npos);
    checkSplitInvariance(input, DataLimits{});
  }
}

TEST_CASE("DataFramer: smuggling sequences are normalized (Normalize)", "[proxy][data]") {
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"\n.\n", "body\r\n.\r\nMAIL"},           {"\n.\r\n", "body\r\n.\r\nMAIL"},
      {"\r.\r", "body\r\n.\r\nMAIL"},           {"\r\n.\n", "body\r\n.\r\nMAIL"},
      {"\r.\r\n", "body\r\n.\r\nMAIL"},         {"\r\n.\r", "body\r\n.\r\nMAIL"},
      {"\n.\r", "body\r\n.\r\nMAIL"},           {"\r.\n", "body\r\n.\r\nMAIL"},
      {"\r\n.\r\r\n", "body\r\n.\r\n\r\nMAIL"}, {"\r\n\n.\r\n", "body\r\n\r\n.\r\nMAIL"},
  };
  REQUIRE(expected.size() == kSmuggling.size());
  for (const auto& [seq, fragment] : expected) {
    std::string input = smuggled(seq);
    INFO(visible(seq));
    Framed f = frame(input, normalize());
    CHECK(f.complete);
    CHECK(input.substr(f.consumed) == "QUIT\r\n");
    CHECK(f.error == DataError::None);
    CHECK(visible(f.message).find(visible(fragment)) != std::string::npos);
    CHECK(f.message.find("Spoofed\r\n") != std::string::npos);  // one message, all content
    checkSplitInvariance(input, normalize());
  }
}

TEST_CASE("DataFramer: bare line ends elsewhere", "[proxy][data]") {
  struct Bare {
    std::string input;
    DataError reject;
    std::string normalized;
  };
  const std::vector<Bare> cases = {
      {"a\nb\r\n.\r\n", DataError::BareLf, "a\r\nb\r\n"},
      {"a\rb\r\n.\r\n", DataError::BareCr, "a\r\nb\r\n"},
      {"a\r\rb\r\n.\r\n", DataError::BareCr, "a\r\n\r\nb\r\n"},
      {"\n.\r\n.\r\n", DataError::BareLf, "\r\n.\r\n"},
      {"\n..x\r\n.\r\n", DataError::BareLf, "\r\n.x\r\n"},  // unstuffed after a normalized end
      {"a\r\nb\n\r\n.\r\n", DataError::BareLf, "a\r\nb\r\n\r\n"},
      // "\r" + "\r\n.\r\n": the bytes hold a real CRLF.CRLF, so this one does end.
      {"a\r\r\n.\r\n", DataError::BareCr, "a\r\n\r\n"},
  };
  for (const auto& c : cases) {
    INFO(visible(c.input));
    Framed rejected = frame(c.input);
    CHECK(rejected.complete);
    CHECK(rejected.consumed == c.input.size());
    CHECK(rejected.error == c.reject);
    Framed normalized = frame(c.input, normalize());
    CHECK(normalized.complete);
    CHECK(normalized.error == DataError::None);
    CHECK(visible(normalized.message) == visible(c.normalized));
  }
}

TEST_CASE("DataFramer: TooBig drains to the end and stops output", "[proxy][data]") {
  DataLimits limits;
  limits.maxSize = 10;
  std::string input = std::string(100, 'x') + "\r\n" + std::string(5000, 'y') + "\r\n.\r\nQUIT\r\n";
  Framed f = frame(input, limits);
  CHECK(f.complete);
  CHECK(f.error == DataError::TooBig);
  CHECK(input.substr(f.consumed) == "QUIT\r\n");
  CHECK(f.message == std::string(10, 'x'));  // output stops at the limit
  checkSplitInvariance(input, limits);

  // Exactly at the limit is fine; one byte more is not.
  limits.maxSize = 5;
  CHECK(frame("abc\r\n.\r\n", limits).error == DataError::None);
  CHECK(frame("abcd\r\n.\r\n", limits).error == DataError::TooBig);
  // The first error wins.
  CHECK(frame("abcdefgh\nz\r\n.\r\n", limits).error == DataError::TooBig);
  CHECK(frame("a\nbcdefgh\r\n.\r\n", limits).error == DataError::BareLf);
}

TEST_CASE("DataFramer: LineTooLong drains to the end", "[proxy][data]") {
  DataLimits limits;
  limits.maxLine = 4;
  CHECK(frame("abcd\r\n.\r\n", limits).error == DataError::None);
  Framed f = frame("abcde\r\nfg\r\n.\r\nRSET\r\n", limits);
  CHECK(f.complete);
  CHECK(f.error == DataError::LineTooLong);
  CHECK(f.consumed == 14);
  CHECK(f.message == "abcd");
  checkSplitInvariance("abcde\r\nfg\r\n.\r\nRSET\r\n", limits);
  // A stuffed dot does not count.
  CHECK(frame("..abc\r\n.\r\n", limits).error == DataError::None);
}

TEST_CASE("DataFramer: HeaderTooBig counts the header section only, and drains", "[proxy][data]") {
  DataLimits limits;
  limits.maxHeader = 40;
  const std::string header20 = "Subject: 0123456789\r\n";  // 21 bytes with its CRLF
  REQUIRE(header20.size() == 21);
  const std::string body(5000, 'b');

  // 21 + 19 = 40 bytes of header: at the limit; the body is not counted.
  CHECK(
      frame("Subject: 0123456789\r\nX-A: 0123456789\r\n\r\n" + body + "\r\n.\r\n", limits).error ==
      DataError::None);
  // Folded continuation lines belong to the header.
  std::string folded = header20 + " continued here and over\r\n\r\nbody\r\n.\r\nQUIT\r\n";
  Framed f = frame(folded, limits);
  CHECK(f.complete);
  CHECK(f.error == DataError::HeaderTooBig);
  CHECK(folded.substr(f.consumed) == "QUIT\r\n");
  CHECK(f.message == header20 + " continued here and over\r\n");  // stops after that line
  checkSplitInvariance(folded, limits);

  // Every line up to the empty line counts, header field or not: GMime,
  // which the rules read, parses them all as header fields.
  CHECK(frame(header20 + "no colon in this line\r\n\r\n.\r\n", limits).error ==
        DataError::HeaderTooBig);
  const std::string noEmptyLine =
      header20 + "the body without the empty line\r\n" + body + "\r\n.\r\n";
  CHECK(frame(noEmptyLine, limits).error == DataError::HeaderTooBig);
  checkSplitInvariance(noEmptyLine, limits);
  // An empty first line: no header at all, however long the body.
  CHECK(frame("\r\n" + body + "\r\n.\r\n", limits).error == DataError::None);
  // BDAT chunks count the same way.
  DataFramer chunks(limits, Framing::Chunks);
  StringSink sink;
  chunks.feed(header20, sink);
  chunks.feed("X-B: " + std::string(20, 'x') + "\r\n", sink);
  chunks.finish(sink);
  CHECK(chunks.error() == DataError::HeaderTooBig);
}

TEST_CASE("DataFramer: a complete framer consumes nothing more; reset starts over",
          "[proxy][data]") {
  DataFramer framer;
  StringSink sink;
  CHECK(framer.feed("a\r\n.\r\nb", sink) == ParseResult{ParseStatus::Complete, 6});
  CHECK(framer.feed("b\r\n.\r\n", sink) == ParseResult{ParseStatus::Complete, 0});
  CHECK(framer.bytesIn() == 6);
  CHECK(framer.bytesOut() == 3);
  framer.reset();
  sink.clear();
  CHECK_FALSE(framer.complete());
  CHECK(framer.feed("b\r\n.\r\n", sink) == ParseResult{ParseStatus::Complete, 6});
  CHECK(sink.data() == "b\r\n");
}

TEST_CASE("DataFramer: a large message goes to the sink in bounded pieces", "[proxy][data]") {
  struct CountingSink : MessageSink {
    std::size_t calls = 0;
    std::size_t total = 0;
    std::size_t largest = 0;
    void append(std::string_view bytes) override {
      ++calls;
      total += bytes.size();
      largest = std::max(largest, bytes.size());
    }
  } sink;
  std::string line = std::string(70, 'm') + "\r\n";
  std::string input = "Subject: big\r\n\r\n";  // 1.4 MB of body, not header
  const std::size_t header = input.size();
  for (int i = 0; i < 20000; ++i) {
    input += line;
  }
  input += ".\r\n";
  DataLimits limits;
  limits.maxSize = 10'000'000;
  DataFramer framer(limits);
  CHECK(framer.feed(input, sink).status == ParseStatus::Complete);
  CHECK(framer.error() == DataError::None);
  CHECK(sink.total == header + 20000 * line.size());
  CHECK(sink.calls > 1);
  CHECK(sink.largest < 64 * 1024 + line.size());
}

/// BDAT: the chunks' bytes, fed as they come, then finish().
Framed frameChunks(const std::vector<std::string_view>& chunks, DataLimits limits = {}) {
  DataFramer framer(limits, Framing::Chunks);
  StringSink sink;
  Framed f;
  for (std::string_view chunk : chunks) {
    ParseResult r = framer.feed(chunk, sink);
    REQUIRE(r == ParseResult{ParseStatus::NeedMore, chunk.size()});  // all of it, never an end
    f.consumed += r.consumed;
  }
  REQUIRE_FALSE(framer.complete());
  framer.finish(sink);
  f.complete = framer.complete();
  f.message = sink.data();
  f.error = framer.error();
  f.bytesIn = framer.bytesIn();
  f.bytesOut = framer.bytesOut();
  REQUIRE(f.bytesOut == f.message.size());
  return f;
}

TEST_CASE("DataFramer (BDAT chunks): no dot-stuffing, no terminator, CRLF at the end",
          "[proxy][data][bdat]") {
  const std::vector<Case> cases = {
      {"simple", "Subject: hi\r\n\r\nbody\r\n", "Subject: hi\r\n\r\nbody\r\n", 21},
      {"empty message", "", "", 0},
      {"dots are content", ".\r\n..\r\n.x\r\n", ".\r\n..\r\n.x\r\n", 11},
      {"a DATA end is content", "a\r\n.\r\nMAIL FROM:<x@y>\r\n", "a\r\n.\r\nMAIL FROM:<x@y>\r\n",
       23},
      {"last line without CRLF gets one", "a\r\nlast", "a\r\nlast\r\n", 7},
      {"8-bit and NUL are content", std::string("\xC3\xA9\0z\r\n", 6),
       std::string("\xC3\xA9\0z\r\n", 6), 6},
  };
  for (const auto& c : cases) {
    INFO(c.name << ": " << visible(c.input));
    for (DataLimits limits : {DataLimits{}, normalize()}) {
      Framed whole = frameChunks({c.input}, limits);
      CHECK(whole.complete);
      CHECK(whole.error == DataError::None);
      CHECK(visible(whole.message) == visible(c.message));
      CHECK(whole.consumed == c.consumed);
      // However the client cut it into chunks: a CRLF split between two
      // is still a line end.
      std::string_view in(c.input);
      for (std::size_t i = 0; i <= in.size(); ++i) {
        INFO("split at " << i);
        REQUIRE(frameChunks({in.substr(0, i), in.substr(i)}, limits) == whole);
      }
      REQUIRE(frameChunks(test::byteChunks(c.input), limits) == whole);
    }
  }
}

TEST_CASE("DataFramer (BDAT chunks): bare line ends and limits as in DATA", "[proxy][data][bdat]") {
  CHECK(frameChunks({"a\nb\r\n"}).error == DataError::BareLf);
  CHECK(frameChunks({"a\rb\r\n"}).error == DataError::BareCr);
  CHECK(frameChunks({"a\r\nb\r"}).error == DataError::BareCr);  // a CR that ends the message
  CHECK(frameChunks({"a\r\nb\r", "x"}).error == DataError::BareCr);
  Framed normalized = frameChunks({"a\nb\r", "c\r"}, normalize());
  CHECK(normalized.error == DataError::None);
  CHECK(visible(normalized.message) == visible("a\r\nb\r\nc\r\n"));

  DataLimits small;
  small.maxSize = 8;
  Framed big = frameChunks({"12345\r\n", "67\r\n"}, small);
  CHECK(big.error == DataError::TooBig);
  CHECK(big.message == "12345\r\n6");                                 // stops exactly at the limit
  CHECK(frameChunks({"123456"}, small).error == DataError::None);     // 8 with the CRLF added
  CHECK(frameChunks({"1234567"}, small).error == DataError::TooBig);  // 9 with it
  DataLimits shortLines;
  shortLines.maxLine = 4;
  CHECK(frameChunks({"12", "345\r\n"}, shortLines).error == DataError::LineTooLong);
}

TEST_CASE("replyFor(DataError)", "[proxy][data]") {
  CHECK(replyFor(DataError::BareLf).line() == "550 5.5.2 Error: bare <LF> received");
  CHECK(replyFor(DataError::BareCr).line() == "550 5.5.2 Error: bare <CR> received");
  CHECK(replyFor(DataError::TooBig).line() ==
        "552 5.3.4 Message size exceeds fixed maximum message size");
  CHECK(replyFor(DataError::LineTooLong).line() == "554 5.6.0 Error: message line too long");
  CHECK(replyFor(DataError::HeaderTooBig).line() ==
        "552 5.3.4 Error: message header size exceeds limit");
}

}  // namespace
}  // namespace smtpgate::proxy
