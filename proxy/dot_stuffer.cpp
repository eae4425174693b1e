#include "proxy/dot_stuffer.h"

namespace smtpgate::proxy {

void DotStuffer::reset() {
  atLineStart_ = true;
  pendingCr_ = false;
}

void DotStuffer::feed(std::string_view message, std::string& out) {
  out.reserve(out.size() + message.size() + message.size() / 64 + 8);
  std::size_t pos = 0;
  while (pos < message.size()) {
    char c = message[pos];
    if (pendingCr_) {
      // CR LF, or a bare CR: either way one CRLF line end.
      out += "\r\n";
      pendingCr_ = false;
      atLineStart_ = true;
      if (c == '\n') {
        ++pos;
        continue;
      }
    }
    if (c == '\r') {
      pendingCr_ = true;
      ++pos;
      continue;
    }
    if (c == '\n') {  // bare LF
      out += "\r\n";
      atLineStart_ = true;
      ++pos;
      continue;
    }
    if (atLineStart_ && c == '.') {
      out += '.';  // RFC 5321 4.5.2 transparency
    }
    atLineStart_ = false;
    // Copy the run up to the next line end at once.
    std::size_t end = message.find_first_of("\r\n", pos);
    end = end == std::string_view::npos ? message.size() : end;
    out.append(message.substr(pos, end - pos));
    pos = end;
  }
}

void DotStuffer::finish(std::string& out) {
  if (pendingCr_ || !atLineStart_) {
    out += "\r\n";
  }
  out += ".\r\n";
  pendingCr_ = false;
  atLineStart_ = true;
}

std::string dotStuff(std::string_view message) {
  std::string out;
  DotStuffer stuffer;
  stuffer.feed(message, out);
  stuffer.finish(out);
  return out;
}

}  // namespace smtpgate::proxy
