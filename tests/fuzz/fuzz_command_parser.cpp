// Fuzz target: parseCommand and the address parser. Each input line is parsed;
// invariants: no crash, every error has a 5xx reply, a parsed MAIL/RCPT path
// can be written back into a command without control characters or blanks
// outside quotes and parses again to the same address, and parsePath /
// parseMailbox stay inside their input.

#include <string>

#include "fuzz_check.h"
#include "proxy/address.h"
#include "proxy/command_parser.h"

namespace {

using namespace smtpgate::proxy;

/// No control character anywhere, no blank or angle bracket outside quotes:
/// the address cannot end the command or add a parameter.
bool safeInCommand(const std::string& address) {
  bool quoted = false;
  auto control = [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c < 0x20 || c == 0x7f;
  };
  for (std::size_t i = 0; i < address.size(); ++i) {
    char c = address[i];
    if (control(c)) {
      return false;
    }
    if (quoted && c == '\\') {
      if (++i < address.size() && control(address[i])) {
        return false;
      }
    } else if (c == '"') {
      quoted = !quoted;
    } else if (!quoted && (c == ' ' || c == '<' || c == '>')) {
      return false;
    }
  }
  return !quoted;
}

void checkLine(std::string_view line, const CommandOptions& options) {
  ParsedCommand cmd = parseCommand(line, options);
  auto reply = replyFor(cmd.error);
  FUZZ_CHECK(cmd.ok() ? reply.code == 250 : (reply.code >= 500 && reply.code <= 555));
  if (!cmd.ok() || (cmd.verb != Verb::Mail && cmd.verb != Verb::Rcpt)) {
    return;
  }
  FUZZ_CHECK(safeInCommand(cmd.path.address));
  if (cmd.path.isNull || cmd.path.isPostmaster) {
    return;
  }
  // Rebuild the command the way the proxy will for the backend.
  bool mail = cmd.verb == Verb::Mail;
  std::string rebuilt = std::string(mail ? "MAIL FROM:<" : "RCPT TO:<") + cmd.path.address + ">" +
                        (mail && cmd.path.needsSmtputf8 ? " SMTPUTF8" : "");
  ParsedCommand again = parseCommand(rebuilt, options);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again.path.address == cmd.path.address);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  CommandOptions strict;
  CommandOptions relaxed;
  relaxed.chunking = true;
  relaxed.addressLimits = {1024, 1024, 2048};
  std::string_view rest = input;
  while (true) {
    std::size_t lf = rest.find('\n');
    std::string_view line = rest.substr(0, lf);
    checkLine(line, strict);
    checkLine(line, relaxed);
    if (lf == std::string_view::npos) {
      break;
    }
    rest.remove_prefix(lf + 1);
  }
  for (bool null : {false, true}) {
    PathOptions options;
    options.allowNull = null;
    options.allowPostmaster = !null;
    PathParse p = parsePath(input, options);
    FUZZ_CHECK(p.consumed <= input.size());
    FUZZ_CHECK(!p.ok() || (p.consumed >= 2 && input[p.consumed - 1] == '>'));
  }
  PathParse m = parseMailbox(input);
  FUZZ_CHECK(!m.ok() || m.consumed == input.size());
  return 0;
}
