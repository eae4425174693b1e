#include "proxy/dot_stuffer.h"

#include <cstring>

namespace smtpgate::proxy {

namespace {

/// The first CR or LF at or after `pos`, or the size. Two vectorised memchr
/// scans per line: libstdc++'s find_first_of("\r\n") calls memchr once per
/// byte, which was 18 % of the proxy's CPU on 100 KB messages.
std::size_t lineEndFrom(std::string_view text, std::size_t pos) {
  const char* begin = text.data() + pos;
  const std::size_t left = text.size() - pos;
  const void* lf = std::memchr(begin, '\n', left);
  const std::size_t span =
      lf ? static_cast<std::size_t>(static_cast<const char*>(lf) - begin) : left;
  const void* cr = std::memchr(begin, '\r', span);
  return pos + (cr ? static_cast<std::size_t>(static_cast<const char*>(cr) - begin) : span);
}

}  // namespace

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
    const std::size_t end = lineEndFrom(message, pos);
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
