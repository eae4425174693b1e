// ReplyParser: single and multi-line replies, pipelined replies, strictness
// (codes, separators, control characters, limits), render(), EHLO
// capabilities and Postfix queue ids.

#include "proxy/reply_parser.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "test_util.h"

namespace smtpgate::proxy {
namespace {

using test::visible;

struct Parsed {
  ParseStatus status = ParseStatus::NeedMore;
  std::size_t consumed = 0;
  BackendReply reply;
  ReplyError error = ReplyError::None;
};

Parsed parse(const std::vector<std::string_view>& chunks, std::size_t maxLines = 100,
             std::size_t maxLine = 4096) {
  ReplyParser parser(maxLines, maxLine);
  Parsed p;
  for (std::string_view chunk : chunks) {
    ParseResult r = parser.feed(chunk);
    p.consumed += r.consumed;
    p.status = r.status;
    if (r.status != ParseStatus::NeedMore) {
      break;
    }
  }
  p.reply = parser.reply();
  p.error = parser.error();
  return p;
}

Parsed parse(std::string_view input) {
  return parse(std::vector<std::string_view>{input});
}

struct Good {
  std::string input;
  int code;
  std::vector<std::string> lines;
  std::string esc;  ///< "" if none
};

TEST_CASE("ReplyParser parses single and multi-line replies", "[proxy][reply]") {
  const std::vector<Good> cases = {
      {"220 mx.example.org ESMTP Postfix\r\n", 220, {"mx.example.org ESMTP Postfix"}, ""},
      {"250 2.1.0 Ok\r\n", 250, {"2.1.0 Ok"}, "2.1.0"},
      {"250\r\n", 250, {""}, ""},
      {"250 \r\n", 250, {""}, ""},
      {"354 End data with <CR><LF>.<CR><LF>\r\n", 354, {"End data with <CR><LF>.<CR><LF>"}, ""},
      {"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n",
       250,
       {"mx.example.org", "PIPELINING", "SIZE 10240000", "8BITMIME"},
       ""},
      {"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n",
       550,
       {"5.7.1 first", "5.7.1 second", "5.7.1 third"},
       "5.7.1"},
      {"250-\r\n250 last\r\n", 250, {"", "last"}, ""},
      {"250 2.0.0 Ok\n", 250, {"2.0.0 Ok"}, "2.0.0"},  // LF accepted
      {"451 4.3.0 Error\tdetail\r\n", 451, {"4.3.0 Error\tdetail"}, "4.3.0"},
      {"250 5.0.0 odd\r\n", 250, {"5.0.0 odd"}, ""},  // class mismatch: text, not an esc
      {"250 2.0.0\r\n", 250, {"2.0.0"}, "2.0.0"},
      {"554 5.7.1 \xC3\xA9\r\n", 554, {"5.7.1 \xC3\xA9"}, "5.7.1"},  // UTF-8 text passes
  };
  for (const auto& c : cases) {
    INFO(visible(c.input));
    for (const auto& chunks : {std::vector<std::string_view>{c.input}, test::byteChunks(c.input)}) {
      Parsed p = parse(chunks);
      CHECK(p.status == ParseStatus::Complete);
      CHECK(p.consumed == c.input.size());
      CHECK(p.reply.code == c.code);
      CHECK(p.reply.lines == c.lines);
      CHECK((p.reply.esc ? p.reply.esc->toString() : "") == c.esc);
    }
  }
}

struct Bad {
  std::string input;
  ReplyError error;
};

TEST_CASE("ReplyParser refuses malformed replies", "[proxy][reply]") {
  const std::vector<Bad> cases = {
      {"25\r\n", ReplyError::BadCode},
      {"\r\n", ReplyError::BadCode},
      {"abc ok\r\n", ReplyError::BadCode},
      {"150 preliminary\r\n", ReplyError::BadCode},
      {"650 out of range\r\n", ReplyError::BadCode},
      {"260 second digit\r\n", ReplyError::BadCode},
      {" 250 leading space\r\n", ReplyError::BadCode},
      {"250-a\r\n251 b\r\n", ReplyError::CodeMismatch},
      {"250-a\r\n550 b\r\n", ReplyError::CodeMismatch},
      {"250_ok\r\n", ReplyError::BadSeparator},
      {"2500 ok\r\n", ReplyError::BadSeparator},
      {"250-a\r\n250:b\r\n", ReplyError::BadSeparator},
      {"250-a\r\n250\tb\r\n", ReplyError::BadSeparator},
      {std::string("250 a\0b\r\n", 9), ReplyError::BadCharacter},
      {"250 a\rb\r\n", ReplyError::BadCharacter},
      {"250 a\x1b[31m\r\n", ReplyError::BadCharacter},
      {"250 a\x7f\r\n", ReplyError::BadCharacter},
  };
  for (const auto& c : cases) {
    INFO(visible(c.input));
    Parsed p = parse(c.input);
    CHECK(p.status == ParseStatus::Error);
    CHECK(p.error == c.error);
  }
}

TEST_CASE("ReplyParser: limits on lines and line length", "[proxy][reply]") {
  std::string three = "250-a\r\n250-b\r\n250 c\r\n";
  CHECK(parse({three}, 3).status == ParseStatus::Complete);
  Parsed p = parse({three}, 2);
  CHECK(p.status == ParseStatus::Error);
  CHECK(p.error == ReplyError::TooManyLines);

  std::string endless;
  for (int i = 0; i < 1000; ++i) {
    endless += "250-more\r\n";
  }
  CHECK(parse(endless).error == ReplyError::TooManyLines);

  CHECK(parse({"250 " + std::string(16, 'x') + "\r\n"}, 100, 20).status == ParseStatus::Complete);
  p = parse({"250 " + std::string(17, 'x') + "\r\n"}, 100, 20);
  CHECK(p.status == ParseStatus::Error);
  CHECK(p.error == ReplyError::LineTooLong);
  p = parse({"250 " + std::string(100000, 'x')}, 100, 20);  // no line end needed to refuse
  CHECK(p.error == ReplyError::LineTooLong);
}

TEST_CASE("ReplyParser: pipelined replies come one at a time", "[proxy][reply]") {
  std::string input = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data\r\n";
  ReplyParser parser;
  std::vector<int> codes;
  std::string_view rest(input);
  while (!rest.empty()) {
    ParseResult r = parser.feed(rest);
    REQUIRE(r.status == ParseStatus::Complete);
    codes.push_back(parser.reply().code);
    CHECK(parser.reply().lines.size() == 1);
    rest.remove_prefix(r.consumed);
  }
  CHECK(codes == std::vector<int>{250, 250, 354});
  CHECK(parser.feed("") == ParseResult{ParseStatus::NeedMore, 0});
}

TEST_CASE("ReplyParser: an error is final until reset", "[proxy][reply]") {
  ReplyParser parser;
  CHECK(parser.feed("xyz\r\n").status == ParseStatus::Error);
  CHECK(parser.feed("250 ok\r\n") == ParseResult{ParseStatus::Error, 0});
  parser.reset();
  CHECK(parser.feed("250 ok\r\n").status == ParseStatus::Complete);
  CHECK(replyFor(ReplyError::BadCode).line() ==
        "451 4.4.2 Error: malformed reply from the mail server");
}

TEST_CASE("BackendReply::render gives the reply back with CRLFs", "[proxy][reply]") {
  for (std::string input : {"250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n", "250 2.0.0 Ok\r\n",
                            "250\r\n", "250-\r\n250 x\r\n"}) {
    INFO(visible(input));
    CHECK(parse(input).reply.render() == input);
  }
  CHECK(parse("250 ok\n").reply.render() == "250 ok\r\n");
  CHECK(parse("250-a\r\n250 b\r\n").reply.text() == "a\nb");
}

TEST_CASE("capabilitiesFromEhlo", "[proxy][reply]") {
  Parsed p = parse(
      "250-mx.example.org Hello\r\n250-pipelining\r\n250-SIZE   10240000\r\n250-VRFY\r\n"
      "250-ETRN\r\n250-STARTTLS\r\n250-XCLIENT NAME ADDR PORT PROTO HELO\r\n250-8BITMIME\r\n"
      "250-SMTPUTF8\r\n250-\r\n250 CHUNKING\r\n");
  REQUIRE(p.status == ParseStatus::Complete);
  std::set<std::string> caps = capabilitiesFromEhlo(p.reply);
  CHECK(caps == std::set<std::string>{"PIPELINING", "SIZE 10240000", "VRFY", "ETRN", "STARTTLS",
                                      "XCLIENT NAME ADDR PORT PROTO HELO", "8BITMIME", "SMTPUTF8",
                                      "CHUNKING"});
  CHECK(capabilityParams(caps, "size") == "10240000");
  CHECK(capabilityParams(caps, "PIPELINING") == "");
  CHECK(capabilityParams(caps, "XCLIENT") == "NAME ADDR PORT PROTO HELO");
  CHECK(capabilityParams(caps, "DSN") == std::nullopt);
  CHECK(capabilityParams(caps, "SIZ") == std::nullopt);
  CHECK(capabilitiesFromEhlo(parse("502 5.5.2 Error: command not recognized\r\n").reply).empty());
  CHECK(capabilitiesFromEhlo(parse("250 mx.example.org\r\n").reply).empty());
}

TEST_CASE("queueIdFromReply", "[proxy][reply]") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"250 2.0.0 Ok: queued as 4Xyz123\r\n", "4Xyz123"},
      {"250 2.0.0 Ok: queued as 763402AAE6\r\n", "763402AAE6"},
      {"250 2.0.0 Ok: queued as 4T0h2X6kS1z9tpQ\r\n", "4T0h2X6kS1z9tpQ"},
      {"250 2.0.0 Ok: Queued As ABC123 (extra)\r\n", "ABC123"},
      {"250-2.0.0 Ok\r\n250 2.0.0 queued as DEF456\r\n", "DEF456"},
      {"250 2.0.0 Ok\r\n", ""},
      {"250 2.0.0 Ok: queued as \r\n", ""},
      {"250 2.0.0 OK id=1r2s3t-000abc-Xy\r\n", ""},
      {"451 4.3.0 queued as ABC123 but not really\r\n", ""},
  };
  for (const auto& [input, id] : cases) {
    INFO(visible(input));
    Parsed p = parse(input);
    REQUIRE(p.status == ParseStatus::Complete);
    CHECK(queueIdFromReply(p.reply) == id);
  }
}

}  // namespace
}  // namespace smtpgate::proxy
