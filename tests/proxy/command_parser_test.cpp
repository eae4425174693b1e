// parseCommand: every verb, argument rules, MAIL/RCPT paths and ESMTP
// parameters, and the exact reply each syntax error gives.

#include "proxy/command_parser.h"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "test_util.h"

namespace smtpgate::proxy {
namespace {

using test::visible;

struct VerbCase {
  std::string line;
  Verb verb;
  std::string argument;
  SyntaxError error = SyntaxError::None;
};

TEST_CASE("parseCommand recognises every verb, in any case", "[proxy][command]") {
  const std::vector<VerbCase> cases = {
      {"HELO mail.example.org", Verb::Helo, "mail.example.org"},
      {"helo mail.example.org", Verb::Helo, "mail.example.org"},
      {"EHLO [192.0.2.1]", Verb::Ehlo, "[192.0.2.1]"},
      {"eHlO x  ", Verb::Ehlo, "x"},
      {"MAIL FROM:<a@example.org>", Verb::Mail, "FROM:<a@example.org>"},
      {"mail from:<a@example.org>", Verb::Mail, "from:<a@example.org>"},
      {"RCPT TO:<b@example.org>", Verb::Rcpt, "TO:<b@example.org>"},
      {"DATA", Verb::Data, ""},
      {"data", Verb::Data, ""},
      {"BDAT 1000", Verb::Bdat, "1000"},
      {"BDAT 0 LAST", Verb::Bdat, "0 LAST"},
      {"RSET", Verb::Rset, ""},
      {"NOOP", Verb::Noop, ""},
      {"NOOP anything goes", Verb::Noop, "anything goes"},
      {"QUIT", Verb::Quit, ""},
      {"QUIT now", Verb::Quit, "now"},  // Postfix ignores QUIT arguments
      {"HELP", Verb::Help, ""},
      {"HELP MAIL", Verb::Help, "MAIL"},
      {"VRFY postmaster", Verb::Vrfy, "postmaster"},
      {"EXPN staff", Verb::Expn, "staff"},
      {"STARTTLS", Verb::StartTls, ""},
      {"starttls", Verb::StartTls, ""},
      {"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=", Verb::Auth, "PLAIN dGVzdAB0ZXN0AHRlc3Q="},
      {"XCLIENT ADDR=192.0.2.1", Verb::Xclient, "ADDR=192.0.2.1"},
      {"XFORWARD NAME=spike.porcupine.org", Verb::Xforward, "NAME=spike.porcupine.org"},
      {"\tHELO\ttabbed\t", Verb::Helo, "tabbed"},
      // Errors
      {"", Verb::Unknown, "", SyntaxError::EmptyCommand},
      {"   ", Verb::Unknown, "", SyntaxError::EmptyCommand},
      {"GET / HTTP/1.1", Verb::Unknown, "GET / HTTP/1.1", SyntaxError::UnknownCommand},
      {"HELOX a", Verb::Unknown, "HELOX a", SyntaxError::UnknownCommand},
      {"MAILFROM:<a@b>", Verb::Unknown, "MAILFROM:<a@b>", SyntaxError::UnknownCommand},
      {"HELO", Verb::Helo, "", SyntaxError::MissingArgument},
      {"EHLO   ", Verb::Ehlo, "", SyntaxError::MissingArgument},
      {"VRFY", Verb::Vrfy, "", SyntaxError::MissingArgument},
      {"EXPN", Verb::Expn, "", SyntaxError::MissingArgument},
      {"AUTH", Verb::Auth, "", SyntaxError::MissingArgument},
      {"XCLIENT", Verb::Xclient, "", SyntaxError::MissingArgument},
      {"XFORWARD", Verb::Xforward, "", SyntaxError::MissingArgument},
      {"DATA now", Verb::Data, "now", SyntaxError::UnexpectedArgument},
      {"RSET x", Verb::Rset, "x", SyntaxError::UnexpectedArgument},
      {"STARTTLS x", Verb::StartTls, "x", SyntaxError::UnexpectedArgument},
      {"BDAT", Verb::Bdat, "", SyntaxError::BdatSyntax},
      {"BDAT x", Verb::Bdat, "x", SyntaxError::BdatSyntax},
      {"BDAT 10 NOTLAST", Verb::Bdat, "10 NOTLAST", SyntaxError::BdatSyntax},
      {"BDAT 10 LAST x", Verb::Bdat, "10 LAST x", SyntaxError::BdatSyntax},
      {"BDAT 99999999999999999999", Verb::Bdat, "99999999999999999999", SyntaxError::BdatSyntax},
      {std::string("HELO a\0b", 8), Verb::Helo, "", SyntaxError::BadCharacter},
      {"NOOP\rRSET", Verb::Unknown, "", SyntaxError::BadCharacter},
      {"NOOP \x7f", Verb::Noop, "", SyntaxError::BadCharacter},
  };
  for (const auto& c : cases) {
    INFO(visible(c.line));
    ParsedCommand cmd = parseCommand(c.line);
    CHECK(cmd.verb == c.verb);
    CHECK(cmd.error == c.error);
    if (c.error != SyntaxError::BadCharacter) {
      CHECK(cmd.argument == c.argument);
    }
  }
}

TEST_CASE("toString(Verb) gives the wire name", "[proxy][command]") {
  CHECK(toString(Verb::StartTls) == "STARTTLS");
  CHECK(toString(Verb::Mail) == "MAIL");
  CHECK(toString(Verb::Xforward) == "XFORWARD");
  CHECK(toString(Verb::Unknown) == "UNKNOWN");
}

TEST_CASE("parseCommand: BDAT size and LAST", "[proxy][command]") {
  ParsedCommand cmd = parseCommand("BDAT 18446744073709551615 last");
  REQUIRE(cmd.ok());
  CHECK(cmd.chunkSize == 18446744073709551615ULL);
  CHECK(cmd.lastChunk);
  cmd = parseCommand("BDAT 42");
  REQUIRE(cmd.ok());
  CHECK(cmd.chunkSize == 42);
  CHECK_FALSE(cmd.lastChunk);
}

struct MailCase {
  std::string line;
  std::string address;
  bool isNull = false;
  std::optional<std::uint64_t> size = std::nullopt;
  BodyType body = BodyType::Unspecified;
  bool smtputf8 = false;
  std::size_t params = 0;
};

TEST_CASE("parseCommand: good MAIL FROM lines", "[proxy][command]") {
  const std::vector<MailCase> cases = {
      {"MAIL FROM:<a@example.org>", "a@example.org"},
      {"MAIL FROM:<>", "", true},
      {"MAIL FROM: <a@example.org>", "a@example.org"},  // Postfix tolerates the space
      {"MAIL FROM:   <a@example.org>   ", "a@example.org"},
      {"MAIL FROM:<a@example.org> SIZE=123", "a@example.org", false, 123, BodyType::Unspecified,
       false, 1},
      {"MAIL FROM:<a@example.org> SIZE=123 BODY=8BITMIME SMTPUTF8", "a@example.org", false, 123,
       BodyType::EightBitMime, true, 3},
      {"MAIL FROM:<a@example.org> body=7bit", "a@example.org", false, std::nullopt,
       BodyType::SevenBit, false, 1},
      {"MAIL FROM:<a@example.org>  SIZE=0   BODY=8BITMIME", "a@example.org", false, 0,
       BodyType::EightBitMime, false, 2},
      {"MAIL FROM:<> SIZE=18446744073709551615", "", true, 18446744073709551615ULL,
       BodyType::Unspecified, false, 1},
      {"MAIL FROM:<a@example.org> RET=HDRS ENVID=QQ314159", "a@example.org", false, std::nullopt,
       BodyType::Unspecified, false, 2},
      {"MAIL FROM:<a@example.org> AUTH=<>", "a@example.org", false, std::nullopt,
       BodyType::Unspecified, false, 1},
      {"MAIL FROM:<a@example.org> AUTH=e+3Dmc2@example.com", "a@example.org", false, std::nullopt,
       BodyType::Unspecified, false, 1},
      {"MAIL FROM:<@relay.example,@r2.example:a@example.org>", "a@example.org"},
      {"MAIL FROM:<\"john doe\"@example.org>", "\"john doe\"@example.org"},
      {"MAIL FROM:<a@[192.0.2.1]>", "a@[192.0.2.1]"},
      {"MAIL FROM:<j\xC3\xB6rg@b\xC3\xBC"
       "cher.example> SMTPUTF8",
       "j\xC3\xB6rg@b\xC3\xBC"
       "cher.example",
       false, std::nullopt, BodyType::Unspecified, true, 1},
  };
  for (const auto& c : cases) {
    INFO(visible(c.line));
    ParsedCommand cmd = parseCommand(c.line);
    CHECK(cmd.error == SyntaxError::None);
    CHECK(cmd.verb == Verb::Mail);
    CHECK(cmd.path.address == c.address);
    CHECK(cmd.path.isNull == c.isNull);
    CHECK(cmd.size == c.size);
    CHECK(cmd.body == c.body);
    CHECK(cmd.smtputf8 == c.smtputf8);
    CHECK(cmd.params.size() == c.params);
  }
}

TEST_CASE("parseCommand: ESMTP parameters keep order, upper-cased keywords", "[proxy][command]") {
  ParsedCommand cmd = parseCommand("MAIL FROM:<a@b.example> size=10 Body=8BITMIME smtputf8");
  REQUIRE(cmd.ok());
  REQUIRE(cmd.params.size() == 3);
  CHECK(cmd.params[0] == EsmtpParam{"SIZE", "10"});
  CHECK(cmd.params[1] == EsmtpParam{"BODY", "8BITMIME"});
  CHECK(cmd.params[2] == EsmtpParam{"SMTPUTF8", std::nullopt});
}

TEST_CASE("parseCommand: good RCPT TO lines", "[proxy][command]") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"RCPT TO:<b@example.org>", "b@example.org"},
      {"rcpt to:<b@example.org>", "b@example.org"},
      {"RCPT TO: <b@example.org>", "b@example.org"},
      {"RCPT TO:<postmaster>", "postmaster"},
      {"RCPT TO:<PostMaster>", "PostMaster"},
      {"RCPT TO:<postmaster@example.org>", "postmaster@example.org"},
      {"RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.org",
       "b@example.org"},
      {"RCPT TO:<b@example.org> NOTIFY=NEVER", "b@example.org"},
      {"RCPT TO:<@hosta.example,@hostb.example:b@example.org>", "b@example.org"},
      {"RCPT TO:<b@[IPv6:2001:db8::1]>", "b@[IPv6:2001:db8::1]"},
  };
  for (const auto& [line, address] : cases) {
    INFO(line);
    ParsedCommand cmd = parseCommand(line);
    CHECK(cmd.error == SyntaxError::None);
    CHECK(cmd.verb == Verb::Rcpt);
    CHECK(cmd.path.address == address);
  }
  CHECK(parseCommand("RCPT TO:<postmaster>").path.isPostmaster);
  CHECK(parseCommand("RCPT TO:<@a.example:b@example.org>").path.hadSourceRoute);
}

struct BadCase {
  std::string line;
  SyntaxError error;
  std::string reply;
};

TEST_CASE("parseCommand: bad MAIL and RCPT lines and their replies", "[proxy][command]") {
  const std::string badSender = "501 5.1.7 Bad sender address syntax";
  const std::string badRcpt = "501 5.1.3 Bad recipient address syntax";
  const std::string params = "501 5.5.4 Syntax error in parameters";
  const std::string unsupported = "555 5.5.4 Unsupported parameter";
  const std::string mailSyntax = "501 5.5.4 Syntax: MAIL FROM:<address>";
  const std::string rcptSyntax = "501 5.5.4 Syntax: RCPT TO:<address>";
  const std::string longLocal(65, 'l');
  const std::string longDomain = std::string(63, 'd') + "." + std::string(63, 'd') + "." +
                                 std::string(63, 'd') + "." + std::string(63, 'd') + ".example";
  const std::vector<BadCase> cases = {
      {"MAIL", SyntaxError::MailSyntax, mailSyntax},
      {"MAIL TO:<a@b.example>", SyntaxError::MailSyntax, mailSyntax},
      {"MAIL FROM:a@b.example", SyntaxError::MailSyntax, mailSyntax},  // no <>
      {"MAIL FROM: a@b.example", SyntaxError::MailSyntax, mailSyntax},
      {"MAIL FROM:", SyntaxError::MailSyntax, mailSyntax},
      {"MAIL FROM:<a@b.example>SIZE=1", SyntaxError::MailSyntax, mailSyntax},
      {"MAIL FROM <a@b.example>", SyntaxError::MailSyntax, mailSyntax},
      {"MAIL FROM:<a@b.example", SyntaxError::BadSenderAddress, badSender},
      {"MAIL FROM:<a b@c.example>", SyntaxError::BadSenderAddress, badSender},
      {"MAIL FROM:<a@b@c.example>", SyntaxError::BadSenderAddress, badSender},
      {"MAIL FROM:<a>", SyntaxError::BadSenderAddress, badSender},
      {"MAIL FROM:<postmaster>", SyntaxError::BadSenderAddress, badSender},
      {"MAIL FROM:<@b.example>", SyntaxError::BadSenderAddress, badSender},
      {"MAIL FROM:<a@>", SyntaxError::BadSenderAddress, badSender},
      {"MAIL FROM:<a@-b.example>", SyntaxError::BadSenderAddress, badSender},
      {"MAIL FROM:<a@b..example>", SyntaxError::BadSenderAddress, badSender},
      {"MAIL FROM:<a@b.example.>", SyntaxError::BadSenderAddress, badSender},
      {"MAIL FROM:<a@[300.1.1.1]>", SyntaxError::BadSenderAddress, badSender},
      {"MAIL FROM:<\"unterminated@b.example>", SyntaxError::BadSenderAddress, badSender},
      {"MAIL FROM:<a@b\xC3.example> SMTPUTF8", SyntaxError::BadSenderAddress, badSender},
      {"MAIL FROM:<" + longLocal + "@b.example>", SyntaxError::SenderTooLong,
       "501 5.1.7 Sender address too long"},
      {"MAIL FROM:<a@" + longDomain + ">", SyntaxError::SenderTooLong,
       "501 5.1.7 Sender address too long"},
      {"MAIL FROM:<j\xC3\xB6rg@b.example>", SyntaxError::SenderNeedsSmtputf8,
       "553 5.6.7 Non-ASCII sender address requires SMTPUTF8"},
      {"MAIL FROM:<a@b.example> SIZE=abc", SyntaxError::BadSizeValue,
       "501 5.5.4 Bad message size syntax"},
      {"MAIL FROM:<a@b.example> SIZE=-1", SyntaxError::BadSizeValue,
       "501 5.5.4 Bad message size syntax"},
      {"MAIL FROM:<a@b.example> SIZE", SyntaxError::BadSizeValue,
       "501 5.5.4 Bad message size syntax"},
      {"MAIL FROM:<a@b.example> SIZE=18446744073709551616", SyntaxError::BadSizeValue,
       "501 5.5.4 Bad message size syntax"},
      {"MAIL FROM:<a@b.example> SIZE=", SyntaxError::ParameterSyntax, params},
      {"MAIL FROM:<a@b.example> BODY=9BIT", SyntaxError::BadBodyValue,
       "501 5.5.4 Bad BODY parameter"},
      {"MAIL FROM:<a@b.example> BODY=BINARYMIME", SyntaxError::BinaryMimeUnsupported,
       "555 5.5.4 Unsupported parameter BODY=BINARYMIME"},
      {"MAIL FROM:<a@b.example> SIZE=1 SIZE=2", SyntaxError::DuplicateParameter,
       "501 5.5.4 Duplicate parameter"},
      {"MAIL FROM:<a@b.example> SIZE=1 size=1", SyntaxError::DuplicateParameter,
       "501 5.5.4 Duplicate parameter"},
      {"MAIL FROM:<a@b.example> SMTPUTF8=yes", SyntaxError::ParameterSyntax, params},
      {"MAIL FROM:<a@b.example> =1", SyntaxError::ParameterSyntax, params},
      {"MAIL FROM:<a@b.example> -X=1", SyntaxError::ParameterSyntax, params},
      {"MAIL FROM:<a@b.example> SIZE==1", SyntaxError::ParameterSyntax, params},
      {"MAIL FROM:<a@b.example> RET=ALL", SyntaxError::ParameterSyntax, params},
      {"MAIL FROM:<a@b.example> ENVID=a+zz", SyntaxError::ParameterSyntax, params},
      {"MAIL FROM:<a@b.example> XYZZY=1", SyntaxError::UnsupportedParameter, unsupported},
      {"MAIL FROM:<a@b.example> NOTIFY=NEVER", SyntaxError::UnsupportedParameter, unsupported},
      {"RCPT", SyntaxError::RcptSyntax, rcptSyntax},
      {"RCPT FROM:<a@b.example>", SyntaxError::RcptSyntax, rcptSyntax},
      {"RCPT TO:b@c.example", SyntaxError::RcptSyntax, rcptSyntax},
      {"RCPT TO:<>", SyntaxError::BadRecipientAddress, badRcpt},
      {"RCPT TO:<postmaster", SyntaxError::BadRecipientAddress, badRcpt},
      {"RCPT TO:<\"postmaster\">", SyntaxError::BadRecipientAddress, badRcpt},
      {"RCPT TO:<b@c.example\">", SyntaxError::BadRecipientAddress, badRcpt},
      {"RCPT TO:<@c.example,b@d.example>", SyntaxError::BadRecipientAddress, badRcpt},
      {"RCPT TO:<" + longLocal + "@c.example>", SyntaxError::RecipientTooLong,
       "501 5.1.3 Recipient address too long"},
      {"RCPT TO:<b@c.example> SIZE=1", SyntaxError::UnsupportedParameter, unsupported},
      {"RCPT TO:<b@c.example> NOTIFY=SOMETIMES", SyntaxError::ParameterSyntax, params},
      {"RCPT TO:<b@c.example> NOTIFY=NEVER,SUCCESS", SyntaxError::ParameterSyntax, params},
      {"RCPT TO:<b@c.example> ORCPT=b@c.example", SyntaxError::ParameterSyntax, params},
  };
  for (const auto& c : cases) {
    INFO(visible(c.line));
    ParsedCommand cmd = parseCommand(c.line);
    CHECK(cmd.error == c.error);
    CHECK(replyFor(cmd.error).line() == c.reply);
  }
}

TEST_CASE("parseCommand: UTF-8 recipient only flags needsSmtputf8", "[proxy][command]") {
  ParsedCommand cmd = parseCommand("RCPT TO:<\xE7\x94\xA8\xE6\x88\xB7@example.org>");
  CHECK(cmd.ok());
  CHECK(cmd.path.needsSmtputf8);
  CHECK(replyFor(SyntaxError::RecipientNeedsSmtputf8).line() ==
        "553 5.6.7 Non-ASCII recipient address requires SMTPUTF8");
}

TEST_CASE("parseCommand: BINARYMIME is accepted when CHUNKING is offered", "[proxy][command]") {
  CommandOptions options;
  options.chunking = true;
  ParsedCommand cmd = parseCommand("MAIL FROM:<a@b.example> BODY=BINARYMIME", options);
  CHECK(cmd.ok());
  CHECK(cmd.body == BodyType::BinaryMime);
}

TEST_CASE("parseCommand: relaxed address limits", "[proxy][command]") {
  // A VERP/SRS local part over 64 bytes: refused by default (RFC 5321), taken
  // when the session relaxes the limit.
  std::string line = "MAIL FROM:<SRS0=abcd=EF=" + std::string(60, 'x') + "@fwd.example>";
  CHECK(parseCommand(line).error == SyntaxError::SenderTooLong);
  CommandOptions relaxed;
  relaxed.addressLimits.localPart = 512;
  relaxed.addressLimits.path = 1024;
  CHECK(parseCommand(line, relaxed).ok());
}

TEST_CASE("replyFor(SyntaxError): class and enhanced code agree", "[proxy][command]") {
  for (int i = 1; i <= static_cast<int>(SyntaxError::BdatSyntax); ++i) {
    policies::Reply reply = replyFor(static_cast<SyntaxError>(i));
    INFO(reply.line());
    CHECK(reply.code / 100 == 5);
    CHECK(reply.esc.klass == 5);
    CHECK_FALSE(reply.text.empty());
  }
  CHECK(replyFor(SyntaxError::UnknownCommand).line() == "500 5.5.2 Error: command not recognized");
  CHECK(replyFor(SyntaxError::UnsupportedParameter).line() == "555 5.5.4 Unsupported parameter");
}

}  // namespace
}  // namespace smtpgate::proxy
