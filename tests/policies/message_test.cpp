// Tests of Message: the RFC 5322 / MIME parser behind header.NAME, body,
// rawbody and size. Every table case runs twice, with LF and with CRLF line
// ends; decoded text is the same for both (CRLF becomes LF in body()).

#include <malloc.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "policies/message.h"

namespace smtpgate::policies {
namespace {

using namespace std::string_literals;

std::string withCrlf(std::string_view lf) {
  std::string out;
  for (char c : lf) {
    if (c == '\n') {
      out += '\r';
    }
    out += c;
  }
  return out;
}

// Independent of the implementation's validator: RFC 3629 well-formedness.
bool isValidUtf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    unsigned char c = b(i);
    std::size_t n = c < 0x80 ? 1 : c < 0xC2 ? 0 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF5 ? 4 : 0;
    if (n == 0 || i + n > s.size()) {
      return false;
    }
    for (std::size_t k = 1; k < n; ++k) {
      if ((b(i + k) & 0xC0) != 0x80) {
        return false;
      }
    }
    if ((c == 0xE0 && b(i + 1) < 0xA0) || (c == 0xED && b(i + 1) > 0x9F) ||
        (c == 0xF0 && b(i + 1) < 0x90) || (c == 0xF4 && b(i + 1) > 0x8F)) {
      return false;
    }
    i += n;
  }
  return true;
}

std::size_t countOf(std::string_view haystack, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t pos = haystack.find(needle); pos != std::string_view::npos;
       pos = haystack.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

// ---------------------------------------------------------------------------

struct BodyCase {
  const char* name;
  std::string message;  // LF line ends
  std::string body;     // expected body()
};

const std::vector<BodyCase>& bodyCases() {
  static const std::vector<BodyCase> cases = {
      {"plain ASCII", "From: a@example.com\nSubject: Hi\n\nHello world.\nSecond line.\n",
       "Hello world.\nSecond line.\n"},
      {"quoted-printable ISO-8859-1",
       "Content-Type: text/plain; charset=ISO-8859-1\n"
       "Content-Transfer-Encoding: quoted-printable\n\n"
       "caf=E9 cr=E8me br=FBl=\n"
       "=E9e\n",
       "caf\xC3\xA9 cr\xC3\xA8me br\xC3\xBBl\xC3\xA9\x65\n"},
      {"base64 UTF-8",
       "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
       "R3LDvMOfZSBhdXMgS8O2bG4NCnp3ZWl0ZSBaZWlsZQ0K\n",
       "Gr\xC3\xBC\xC3\x9F\x65 aus K\xC3\xB6ln\nzweite Zeile\n"},
      {"base64 without charset is read as UTF-8",
       "Content-Type: text/plain\nContent-Transfer-Encoding: BASE64\n\n0J/RgNC40LLQtdGC\n",
       "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82"},
      {"windows-1252 smart quotes",
       "Content-Type: text/plain; charset=windows-1252\n\n\x93hi\x94\n",
       "\xE2\x80\x9Chi\xE2\x80\x9D\n"},
      {"KOI8-R", "Content-Type: text/plain; charset=koi8-r\n\n\xF0\xD2\xC9\xD7\xC5\xD4\n",
       "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82\n"},
      {"HTML kept as markup", "Content-Type: text/html; charset=utf-8\n\n<p>Buy <b>now</b></p>\n",
       "<p>Buy <b>now</b></p>\n"},
      {"multipart/alternative: text and html",
       "Content-Type: multipart/alternative; boundary=\"alt\"\n\n"
       "preamble is not text\n"
       "--alt\nContent-Type: text/plain; charset=us-ascii\n\nplain version\n"
       "--alt\nContent-Type: text/html; charset=us-ascii\n\n<p>html version</p>\n"
       "--alt--\nepilogue is not text\n",
       "plain version\n<p>html version</p>"},
      {"multipart/mixed: a PDF attachment is not text",
       "Content-Type: multipart/mixed; boundary=mix\n\n"
       "--mix\nContent-Type: text/plain\n\nsee attached\n"
       "--mix\nContent-Type: application/pdf; name=\"a.pdf\"\n"
       "Content-Disposition: attachment; filename=\"a.pdf\"\n"
       "Content-Transfer-Encoding: base64\n\n"
       "JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCg==\n"
       "--mix--\n",
       "see attached"},
      {"nested multipart, text attachment, attached message",
       "Content-Type: multipart/mixed; boundary=outer\n\n"
       "--outer\nContent-Type: multipart/alternative; boundary=inner\n\n"
       "--inner\nContent-Type: text/plain\n\none\n"
       "--inner\nContent-Type: text/html\n\n<i>two</i>\n"
       "--inner--\n"
       "--outer\nContent-Type: text/plain; name=notes.txt\n"
       "Content-Disposition: attachment; filename=notes.txt\n\nattached notes\n"
       "--outer\nContent-Type: message/rfc822\n\n"
       "Subject: forwarded\nContent-Type: text/plain\n\nthree\n"
       "--outer--\n",
       "one\n<i>two</i>\nthree"},
      {"quoted-printable HTML",
       "Content-Type: text/html; charset=UTF-8\nContent-Transfer-Encoding: quoted-printable\n\n"
       "<a href=3D\"http://x.example/\">caf=C3=A9</a>\n",
       "<a href=\"http://x.example/\">caf\xC3\xA9</a>\n"},
      {"message without body", "Subject: nothing\n\n", ""},
      {"message without separator", "Subject: headers only\nFrom: a@example.com", ""},
      {"no headers at all", "\nJust a body.\n", "Just a body.\n"},
  };
  return cases;
}

TEST_CASE("Message decodes body text", "[message]") {
  for (const BodyCase& c : bodyCases()) {
    for (bool crlf : {false, true}) {
      std::string raw = crlf ? withCrlf(c.message) : c.message;
      INFO(c.name << (crlf ? " (CRLF)" : " (LF)"));
      Message m = Message::parse(raw);
      CHECK(m.body() == c.body);
      CHECK(isValidUtf8(m.body()));
      CHECK_FALSE(m.truncated());
      CHECK(m.size() == raw.size());
    }
  }
}

struct SubjectCase {
  const char* name;
  std::string field;  // the Subject field as written, LF line ends
  std::string subject;
};

TEST_CASE("Message decodes and unfolds header values", "[message]") {
  const std::vector<SubjectCase> cases = {
      {"plain", "Subject: Hello there", "Hello there"},
      {"folded", "Subject: a long\n subject line\n\tcontinued", "a long subject line\tcontinued"},
      {"RFC 2047 UTF-8 B", "Subject: =?UTF-8?B?SGVsbG8gV8O2cmxk?=", "Hello W\xC3\xB6rld"},
      {"RFC 2047 ISO-8859-1 Q",
       "Subject: =?ISO-8859-1?Q?Caf=E9_cr=E8me?=", "Caf\xC3\xA9 cr\xC3\xA8me"},
      {"RFC 2047 mixed with text", "Subject: Re: =?utf-8?q?caf=C3=A9?= ok", "Re: caf\xC3\xA9 ok"},
      {"RFC 2047 split over a fold", "Subject: =?utf-8?q?ab?=\n =?utf-8?q?cd?=", "abcd"},
      {"RFC 2047 with language", "Subject: =?utf-8*en?q?hello?=", "hello"},
      {"unknown charset", "Subject: =?x-no-such-charset?Q?plain?=", "plain"},
      {"raw 8-bit Latin-1", "Subject: Caf\xE9", "Caf\xC3\xA9"},
      {"raw 8-bit UTF-8", "Subject: Caf\xC3\xA9", "Caf\xC3\xA9"},
      {"NUL does not hide the rest", "Subject: via\0gra"s, "viagra"},
      {"blanks trimmed", "Subject:   spaced   ", "spaced"},
  };
  for (const SubjectCase& c : cases) {
    for (bool crlf : {false, true}) {
      std::string raw = c.field + "\nFrom: a@example.com\n\nbody\n";
      raw = crlf ? withCrlf(raw) : raw;
      INFO(c.name << (crlf ? " (CRLF)" : " (LF)"));
      Message m = Message::parse(raw);
      CHECK(m.subject() == c.subject);
      REQUIRE(m.header("subject").size() == 1);
      CHECK(m.header("subject")[0] == c.subject);
      CHECK(isValidUtf8(m.subject()));
      CHECK(m.body() == "body\n");
    }
  }
}

TEST_CASE("Message keeps header order, names and raw values", "[message]") {
  std::string raw = withCrlf(
      "From foo@example.com Mon Jan  1 00:00:00 2024\n"  // mbox line: skipped
      "Received: from a.example by b.example;\n\tMon, 1 Jan 2024 00:00:00 +0000\n"
      "Received: from c.example by a.example\n"
      "SUBJECT: =?UTF-8?B?SGVsbG8gV8O2cmxk?=\n"
      "this line is not a field\n"
      "X-Empty:\n"
      "From: a@example.com\n"
      "From: b@example.com\n\n"
      "body\n");
  Message m = Message::parse(raw);
  REQUIRE(m.headers().size() == 6);
  CHECK(m.headers()[0].name == "Received");
  CHECK(m.headers()[0].raw == "from a.example by b.example;\tMon, 1 Jan 2024 00:00:00 +0000");
  CHECK(m.headers()[2].name == "SUBJECT");
  CHECK(m.headers()[2].lowerName == "subject");
  CHECK(m.headers()[2].raw == "=?UTF-8?B?SGVsbG8gV8O2cmxk?=");
  CHECK(m.headers()[2].value == "Hello W\xC3\xB6rld");
  CHECK(m.headers()[3].value.empty());
  CHECK(m.header("received") ==
        std::vector<std::string>{"from a.example by b.example;\tMon, 1 Jan 2024 00:00:00 +0000",
                                 "from c.example by a.example"});
  CHECK(m.header("Received").size() == 2);  // names compare case-insensitively
  CHECK(m.header("x-missing").empty());
  CHECK(m.fromHeaderCount() == 2);
  CHECK_FALSE(m.headersTruncated());
}

TEST_CASE("Message-ID extraction", "[message]") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"Message-ID: <abc.123@example.com>\n", "abc.123@example.com"},
      {"Message-Id:\n  <folded@example.com>  (comment)\n", "folded@example.com"},
      {"message-id: bare@example.com\n", "bare@example.com"},
      {"Message-ID: <unclosed@example.com\n", "unclosed@example.com"},
      {"Message-ID: <first@x>\nMessage-ID: <second@x>\n", "first@x"},
      {"Subject: none\n", ""},
  };
  for (const auto& [fields, id] : cases) {
    INFO(fields);
    CHECK(Message::parse(fields + "\nbody\n").messageId() == id);
  }
}

TEST_CASE("Message rawBody is the bytes after the separator, as sent", "[message]") {
  std::string raw = "Subject: x\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n\r\nmore\r\n";
  Message m = Message::parse(raw);
  CHECK(m.rawBody() == "aGk=\r\n\r\nmore\r\n");
  CHECK(m.raw() == raw);
  CHECK(Message::parse("Subject: x\n\n").rawBody().empty());
  CHECK(Message::parse("Subject: x\nFrom: y").rawBody().empty());
  CHECK(Message::parse("Subject: x\nFrom: y").headers().size() == 2);
}

TEST_CASE("Message owns its bytes: views survive the input and moves", "[message]") {
  std::vector<Message> messages;
  for (int i = 0; i < 50; ++i) {
    std::string input = "S: " + std::to_string(i) + "\n\nb" + std::to_string(i);  // fits SSO
    messages.push_back(Message::parse(input));
    input.assign(input.size(), 'X');  // the caller's buffer changes
  }
  for (int i = 0; i < 50; ++i) {
    CHECK(messages[i].rawBody() == "b" + std::to_string(i));
    CHECK(messages[i].header("s") == std::vector<std::string>{std::to_string(i)});
  }
}

TEST_CASE("Message body is valid UTF-8 whatever the bytes", "[message]") {
  const std::vector<std::string> messages = {
      "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
      "bad \xFF\xFE bytes \xC3\x28 overlong \xC0\xAF surrogate \xED\xA0\x80 cut \xE2\x82",
      "Content-Type: text/plain\n\nundeclared Latin-1: caf\xE9\n",
      "Content-Type: text/plain; charset=\"x-made-up\"\n\n\x80\x81\xFF\n",
      "Content-Type: text/plain; charset=shift_jis\n\n\x82\xA0\x82\n",
      "Content-Type: text/plain; charset=utf-16le\n\nA\0\x00\xD8\n"s,
      "Content-Type: text/plain; charset=iso-2022-jp\n\n\x1B$B$\"\x1B(B\xFF\n",
  };
  for (const std::string& raw : messages) {
    INFO(raw);
    Message m = Message::parse(raw);
    CHECK(isValidUtf8(m.body()));
    CHECK_FALSE(m.body().empty());
  }
  Message m = Message::parse(messages[0]);
  CHECK(m.body().starts_with("bad \xEF\xBF\xBD"));
  CHECK(m.body().find(" bytes ") != std::string::npos);
  CHECK(m.body().ends_with("cut \xEF\xBF\xBD"));
}

// ---------------------------------------------------------------------------
// Limits and hostile input

std::string manyParts(std::size_t n) {
  std::string raw = "Content-Type: multipart/mixed; boundary=b\n\n";
  for (std::size_t i = 0; i < n; ++i) {
    raw += "--b\nContent-Type: text/plain\n\npart-" + std::to_string(i) + "\n";
  }
  return raw + "--b--\n";
}

TEST_CASE("Message limits: decoded body", "[message]") {
  MessageLimits limits;
  limits.maxDecodedBody = 1000;
  SECTION("ASCII text is cut at the limit") {
    Message m = Message::parse("Subject: big\n\n" + std::string(5000, 'a'), limits);
    CHECK(m.truncated());
    CHECK(m.body() == std::string(1000, 'a'));
  }
  SECTION("multi-byte text is cut at a character boundary") {
    std::string text;
    for (int i = 0; i < 2000; ++i) {
      text += "\xE2\x82\xAC";  // U+20AC, 3 bytes
    }
    Message m = Message::parse("Content-Type: text/plain; charset=utf-8\n\n" + text, limits);
    CHECK(m.truncated());
    CHECK(m.body().size() <= 1000);
    CHECK(m.body().size() >= 997);
    CHECK(isValidUtf8(m.body()));
  }
  SECTION("exactly at the limit is not truncated") {
    Message m = Message::parse("Subject: x\n\n" + std::string(1000, 'b'), limits);
    CHECK_FALSE(m.truncated());
    CHECK(m.body().size() == 1000);
  }
  SECTION("a large base64 part is decoded only up to the limit") {
    limits.maxDecodedBody = 64 * 1024;
    std::string line(76, 'Q');  // "QQQQ" decodes to "A\x04\x10" repeatedly: valid base64
    std::string raw = "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n";
    for (int i = 0; i < 100000; ++i) {  // 7.7 MB of base64
      raw += line + "\n";
    }
    Message m = Message::parse(raw, limits);
    CHECK(m.truncated());
    CHECK(m.body().size() <= limits.maxDecodedBody);
    CHECK(isValidUtf8(m.body()));
  }
  SECTION("the budget is shared by all parts") {
    limits.maxDecodedBody = 10;
    Message m = Message::parse(manyParts(5), limits);
    CHECK(m.truncated());
    CHECK(m.body().size() <= 10);
    CHECK(m.body().starts_with("part-0\n"));
  }
}

TEST_CASE("Message limits: part bombs", "[message]") {
  SECTION("10,000 parts: the first maxParts are read") {
    Message m = Message::parse(manyParts(10000));
    CHECK(m.truncated());
    CHECK(m.body().starts_with("part-0\npart-1\n"));
    CHECK(countOf(m.body(), "part-") < 100);
    CHECK(m.body().find("part-5000") == std::string::npos);
  }
  SECTION("exactly maxParts entities is not truncated") {
    MessageLimits limits;
    limits.maxParts = 6;  // the multipart and its 5 leaves
    Message m = Message::parse(manyParts(5), limits);
    CHECK_FALSE(m.truncated());
    CHECK(countOf(m.body(), "part-") == 5);
  }
  SECTION("deep nesting") {
    std::string raw = "Subject: deep\n";
    for (int i = 0; i < 5000; ++i) {
      raw += "Content-Type: multipart/mixed; boundary=b" + std::to_string(i) + "\n\n--b" +
             std::to_string(i) + "\n";
    }
    raw += "Content-Type: text/plain\n\ninnermost\n";
    Message m = Message::parse(raw);
    CHECK(m.truncated());
    CHECK(isValidUtf8(m.body()));
  }
  SECTION("attached messages nested 10,000 deep") {
    std::string raw;
    for (int i = 0; i < 10000; ++i) {
      raw += "Content-Type: message/rfc822\n\n";
    }
    raw += "Subject: inner\n\ntext\n";
    Message m = Message::parse(raw);
    CHECK(isValidUtf8(m.body()));
  }
}

TEST_CASE("Message limits: header bombs", "[message]") {
  SECTION("top-level fields past maxHeaders are dropped, the body is kept") {
    std::string raw = "Subject: first\n";
    for (int i = 0; i < 1500; ++i) {
      raw += "X-Junk-" + std::to_string(i) + ": " + std::to_string(i) + "\n";
    }
    raw += "Content-Type: text/plain; charset=iso-8859-1\n\ncaf\xE9\n";
    Message m = Message::parse(raw);
    CHECK(m.headers().size() == 1000);
    CHECK(m.headersTruncated());
    CHECK(m.headers().back().name == "X-Junk-998");
    // GMime no longer sees the late Content-Type: the undeclared byte is not UTF-8.
    CHECK(m.body() == "caf\xEF\xBF\xBD\n");
    CHECK_FALSE(m.truncated());
  }
  SECTION("part header fields past the budget are dropped, structure is kept") {
    std::string raw = "Content-Type: multipart/mixed; boundary=b\n\n--b\n";
    for (int i = 0; i < 200000; ++i) {
      raw += "X-A: b\n";
    }
    raw +=
        "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\naGVsbG8=\n"
        "--b\nX-B: c\nContent-Type: text/html\n\n<p>second</p>\n--b--\n";
    Message m = Message::parse(raw);
    CHECK(m.truncated());
    CHECK(m.body() == "hello\n<p>second</p>");
  }
}

TEST_CASE("Message: unknown charset names never reach GMime's cache", "[message]") {
#if defined(__SANITIZE_ADDRESS__)
  SUCCEED("mallinfo2 does not see ASan's allocator");
#else
  // GMime 3.2 caches every charset name it meets, forever (~64 bytes each).
  // 3 x 5000 distinct names would grow the heap by about 1 MB without the
  // rewrite to "unknown-8bit".
  auto parseBatch = [](int from, int to) {
    for (int i = from; i < to; ++i) {
      std::string n = std::to_string(i);
      Message m =
          Message::parse("From: =?x-evil-" + n + "?Q?a?= <a@example.com>\nSubject: =?x-subj-" + n +
                         "?Q?b?=\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
                         "Content-Type: text/plain; name*=x-par-" +
                         n + "''c; charset=x-body-" + n + "\n\nbody\n--b--\n");
      REQUIRE(m.subject() == "b");
    }
  };
  parseBatch(0, 200);  // warm up GMime's own tables
  std::size_t before = mallinfo2().uordblks;
  parseBatch(200, 5200);
  std::size_t after = mallinfo2().uordblks;
  CHECK(after < before + 128 * 1024);
#endif
}

TEST_CASE("Message parses on several threads at once", "[message]") {
  const std::string raw = withCrlf(
      // Blanks between adjacent encoded-words are not text (RFC 2047 section 6.2).
      "Subject: =?ISO-8859-1?Q?caf=E9?= =?koi8-r?B?8NLJ18XU?=\n"
      "Content-Type: multipart/alternative; boundary=x\n\n"
      "--x\nContent-Type: text/plain; charset=windows-1251\n"
      "Content-Transfer-Encoding: quoted-printable\n\n=CF=F0=E8=E2=E5=F2\n"
      "--x\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
      "PHA+0J/RgNC40LLQtdGCPC9wPg==\n--x--\n");
  const Message reference = Message::parse(raw);
  REQUIRE(reference.subject() == "caf\xC3\xA9\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82");
  REQUIRE(reference.body() ==
          "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82\n"
          "<p>\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82</p>");
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < mismatches.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        Message m = Message::parse(raw);
        mismatches[t] += (m.subject() != reference.subject() || m.body() != reference.body());
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  CHECK(mismatches == std::vector<int>(4, 0));
}

// ---------------------------------------------------------------------------
// Real messages, when the shared conformance data or SpamAssassin's samples
// are installed; the invariants hold for any input.

TEST_CASE("Message plain-text shortcut: the same body as GMime's", "[message]") {
  const std::vector<std::string> headerVariants = {
      "",
      "Content-Type: text/plain\n",
      "Content-Type: text/plain; charset=utf-8\n",
      "Content-Type: TEXT/HTML; charset=\"US-ASCII\"; format=flowed\n",
      "Content-Type: text/plain;\n charset=\"UTF-8\"\nContent-Transfer-Encoding: 8bit\n",
      "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 7bit\n",
      "Content-Type: text/plain; charset=windows-1251\n",
      "Content-Type: text/plain; charset=koi8-r\n",
      "Content-Type: text/plain; charset=utf-16\n",
      "Content-Type: text/plain; charset=x-made-up\n",
      "Content-Type: text/plain; charset=utf-8; charset=us-ascii\n",
      "Content-Type: text/plain; charset*=utf-8''x\n",
      "Content-Type: text/plain (comment); charset=utf-8\n",
      "Content-Type: text/plain; charset=\"utf-8\n",
      "Content-Type: text/plain; charset=\n",
      "Content-Type: text/plain;\n",
      "Content-Type: text/\n",
      "Content-Type:\n",
      "Content-Type: text/plain\nContent-Type: text/html\n",
      "Content-Type: multipart/mixed; boundary=b\n",
      "Content-Type: application/octet-stream\n",
      "Content-Type: message/rfc822\n",
      "Content-Transfer-Encoding: base64\n",
      "Content-Transfer-Encoding: quoted-printable\n",
      "Content-Transfer-Encoding: BINARY\n",
      "Content-Transfer-Encoding: x-unknown\n",
      "Content-Transfer-Encoding: 7bit\nContent-Transfer-Encoding: base64\n",
      "Content-Disposition: attachment\n",
      "Content-Disposition: inline\n",
      "Subject : obsolete spacing\nX-Odd@Name!: v\n",
      "X-Latin: caf\xE9\n",
      "not a field line\n",
      " orphan continuation\n",
      "X-CR: a\rb\n",
      std::string("X-NUL: a\0b\n", 12),
      "From mbox-style line\n",
      "X-Long: " + std::string(2000, 'h') + "\n",
  };
  const std::vector<std::string> bodies = {
      "",
      "Hello\n",
      "Hello\r\nworld\r\n",
      "no final newline",
      "bare\rCR and\r\nCRLF and\nLF\n",
      "From the mbox line\n>From quoted\n.\n..\n",
      "-- \nsignature\n--b\n--b--\n",
      std::string("NUL\0inside\n", 11),
      "Gr\xC3\xBC\xC3\x9F"
      "e \xF0\x9F\x98\x80 emoji\n",
      "invalid \xFF\xFE bytes\n",
      "caf\xE9 latin-1\n",
      "surrogate \xED\xA0\x80 and overlong \xC0\xAF\n",
      "truncated \xE2\x82\n",
      "SGVsbG8gV29ybGQ=\n",
      "soft=\nbreak =E9=3D\n",
      "=?utf-8?q?encoded?= word\n",
      "begin 644 file\nM86)C\nend\n",
      std::string(300, 'x') + "\xE2\x82\xAC" + std::string(300, 'y') + "\n",
  };
  MessageLimits small;
  small.maxDecodedBody = 301;  // cuts inside the euro sign of the last body
  MessageLimits tiny;
  tiny.maxDecodedBody = 3;
  const std::vector<MessageLimits> limitVariants = {MessageLimits{}, small, tiny};
  int compared = 0;
  for (const std::string& headers : headerVariants) {
    for (const std::string& body : bodies) {
      for (bool crlf : {false, true}) {
        const std::string lf = "From: a@example.com\nSubject: s\n" + headers + "\n" + body;
        const std::string raw = crlf ? withCrlf(lf) : lf;
        for (const MessageLimits& limits : limitVariants) {
          INFO("headers: " << headers << "body: " << body << (crlf ? " (CRLF)" : " (LF)")
                           << " limit " << limits.maxDecodedBody);
          bool gmimeTruncated = false;
          const std::string expected = detail::bodyThroughGmime(raw, limits, gmimeTruncated);
          const Message m = Message::parse(raw, limits);
          CHECK(m.body() == expected);
          CHECK(m.truncated() == gmimeTruncated);
          ++compared;
        }
      }
    }
  }
  CHECK(compared == static_cast<int>(headerVariants.size() * bodies.size() * 2 * 3));
}

TEST_CASE("Message invariants on real messages", "[message]") {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  for (const fs::path& dir : {fs::path(SMTPGATE_SOURCE_DIR) / "../shared/conformance/dkim",
                              fs::path("/usr/share/doc/spamassassin/examples")}) {
    std::error_code ec;
    for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      std::string ext = it->path().extension().string();
      if (it->is_regular_file() && (ext == ".msg" || ext == ".txt" || ext == ".eml")) {
        files.push_back(it->path());
      }
    }
  }
  if (files.empty()) {
    WARN("no real messages found; skipped");
    return;
  }
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    std::string raw = bytes.str();
    INFO(file.string());
    Message m = Message::parse(raw);
    CHECK(m.size() == raw.size());
    CHECK(raw.ends_with(m.rawBody()));
    CHECK(isValidUtf8(m.body()));
    bool gmimeTruncated = false;
    CHECK(m.body() == detail::bodyThroughGmime(raw, {}, gmimeTruncated));
    CHECK(m.truncated() == gmimeTruncated);
    CHECK(isValidUtf8(m.subject()));
    for (const HeaderField& field : m.headers()) {
      CHECK(isValidUtf8(field.value));
    }
  }
}

}  // namespace
}  // namespace smtpgate::policies
