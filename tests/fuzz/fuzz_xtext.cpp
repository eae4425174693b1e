// Fuzz target: xtextEncode / xtextDecode and xclientCommands. Invariants:
// decode(encode(x)) == x; encoded text is printable ASCII without "=" or
// blanks; decoding is the inverse of encoding on what it accepts; XCLIENT
// commands fit the 512-byte line and hold no CR or LF.

#include <string>

#include "fuzz_check.h"
#include "proxy/xtext.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace smtpgate::proxy;
  std::string_view input(reinterpret_cast<const char*>(data), size);

  std::string encoded = xtextEncode(input);
  for (char c : encoded) {
    FUZZ_CHECK(c >= 33 && c <= 126 && c != '=');
  }
  FUZZ_CHECK(xtextDecode(encoded) == std::string(input));
  if (auto decoded = xtextDecode(input)) {
    FUZZ_CHECK(xtextDecode(xtextEncode(*decoded)) == *decoded);
  }

  // Use the input as every field at once.
  std::size_t third = input.size() / 3;
  XclientFields f;
  f.addr = std::string(input.substr(0, third));
  f.port = static_cast<std::uint16_t>(size * 257);
  f.name = std::string(input.substr(third, third));
  f.nameStatus = static_cast<LookupStatus>(size % 3);
  f.reverseName = f.addr;
  f.reverseNameStatus = LookupStatus::Ok;
  f.helo = std::string(input.substr(2 * third));
  f.proto = size % 2 != 0 ? SmtpProtocol::Esmtp : SmtpProtocol::Smtp;
  f.login = std::string(input);
  f.destAddr = f.name;
  std::set<std::string> caps = {
      "XCLIENT ADDR PORT NAME REVERSE_NAME HELO PROTO LOGIN DESTADDR DESTPORT"};
  for (const std::string& cmd : xclientCommands(f, caps)) {
    FUZZ_CHECK(cmd.size() + 2 <= 512);
    FUZZ_CHECK(cmd.rfind("XCLIENT ", 0) == 0);
    FUZZ_CHECK(cmd.find_first_of("\r\n") == std::string::npos);
    FUZZ_CHECK(cmd.find('\0') == std::string::npos);
  }
  return 0;
}
