#include "proxy/data_framer.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace smtpgate::proxy {

namespace {

/// Output is handed to the sink at least this often within one feed.
constexpr std::size_t kFlushBytes = 64 * 1024;

struct ReplySpec {
  DataError error;
  int code;
  rules::EnhancedStatus esc;
  std::string_view text;
};

// In DataError order. Bare line ends use Postfix 3.9's wording and default
// code (smtpd_forbid_bare_newline_reject_code = 550) so admins recognise it.
constexpr std::array kReplies = {
    ReplySpec{DataError::None, 250, {2, 0, 0}, "Ok"},
    ReplySpec{DataError::BareLf, 550, {5, 5, 2}, "Error: bare <LF> received"},
    ReplySpec{DataError::BareCr, 550, {5, 5, 2}, "Error: bare <CR> received"},
    ReplySpec{DataError::TooBig, 552, {5, 3, 4}, "Message size exceeds fixed maximum message size"},
    ReplySpec{DataError::LineTooLong, 554, {5, 6, 0}, "Error: message line too long"},
    ReplySpec{DataError::HeaderTooBig, 552, {5, 3, 4}, "Error: message header size exceeds limit"},
};
static_assert(kReplies.size() == static_cast<std::size_t>(DataError::HeaderTooBig) + 1);

/// The position of the first CR or LF at or after `from` (bytes.size() if
/// none), by memchr(), which scans many bytes per step where a loop over the
/// bytes was most of the framer's time on big messages. A window at a time,
/// so that text with only LFs (or only CRs) is not searched to its end for
/// the other kind at every line: each byte is looked at twice at most.
std::size_t lineEndFrom(std::string_view bytes, std::size_t from) {
  constexpr std::size_t kWindow = 512;
  while (from < bytes.size()) {
    const char* begin = bytes.data() + from;
    const std::size_t length = std::min(kWindow, bytes.size() - from);
    std::size_t found = length;
    if (const void* cr = std::memchr(begin, '\r', length)) {
      found = static_cast<std::size_t>(static_cast<const char*>(cr) - begin);
    }
    if (const void* lf = std::memchr(begin, '\n', found)) {
      found = static_cast<std::size_t>(static_cast<const char*>(lf) - begin);
    }
    if (found < length) {
      return from + found;
    }
    from += length;
  }
  return bytes.size();
}

}  // namespace

DataFramer::DataFramer(DataLimits limits, Framing framing) : limits_(limits), framing_(framing) {}

void DataFramer::reset() {
  state_ = State::LineStart;
  afterCrlf_ = true;
  complete_ = false;
  error_ = DataError::None;
  bytesIn_ = 0;
  bytesOut_ = 0;
  lineLength_ = 0;
  inHeader_ = true;
  headerBytes_ = 0;
  out_.clear();
}

ParseResult DataFramer::feed(std::string_view bytes, MessageSink& sink) {
  if (complete_) {
    return {ParseStatus::Complete, 0};
  }
  std::size_t pos = 0;
  while (pos < bytes.size() && !complete_) {
    if (state_ == State::MidLine) {
      // Fast path: the run up to the next CR or LF goes out at once.
      const std::size_t end = lineEndFrom(bytes, pos);
      emit(bytes.substr(pos, end - pos));
      pos = end;
      if (pos == bytes.size()) {
        break;
      }
    }
    step(bytes[pos++]);
    if (out_.size() >= kFlushBytes) {
      flush(sink);
    }
  }
  flush(sink);
  bytesIn_ += pos;
  return {complete_ ? ParseStatus::Complete : ParseStatus::NeedMore, pos};
}

void DataFramer::finish(MessageSink& sink) {
  if (complete_) {
    return;
  }
  if (state_ == State::Cr) {
    bareLineEnd(DataError::BareCr);
  } else if (state_ != State::LineStart) {
    lineEnd();
  }
  flush(sink);
  complete_ = true;
}

void DataFramer::step(char c) {
  switch (state_) {
    case State::LineStart:
      if (c == '.' && framing_ == Framing::DotTerminated) {
        state_ = State::Dot;
        return;
      }
      midLine(c);
      return;
    case State::MidLine:
      midLine(c);
      return;
    case State::Cr:
      if (c == '\n') {
        lineEnd();
        afterCrlf_ = true;
        return;
      }
      bareLineEnd(DataError::BareCr);
      step(c);  // now at LineStart: recursion depth is at most one
      return;
    case State::Dot:
      if (c == '\r') {
        state_ = State::DotCr;
      } else if (c == '\n') {
        emit(".");  // a lone "." that does not end anything stays
        bareLineEnd(DataError::BareLf);
      } else {
        midLine(c);  // RFC 5321 4.5.2: the leading "." is deleted
      }
      return;
    case State::DotCr:
      if (c == '\n') {
        if (afterCrlf_) {
          complete_ = true;  // CRLF "." CRLF, the only end of DATA
          return;
        }
        // "\n.\r\n" or "\r.\r\n": the line before ended bare, so this "."
        // line is content. Its own CRLF is real: the next line may end DATA.
        emit(".");
        lineEnd();
        afterCrlf_ = true;
        return;
      }
      emit(".");
      bareLineEnd(DataError::BareCr);
      step(c);
      return;
  }
}

void DataFramer::midLine(char c) {
  if (c == '\r') {
    state_ = State::Cr;
  } else if (c == '\n') {
    bareLineEnd(DataError::BareLf);
  } else {
    emit(std::string_view(&c, 1));
    state_ = State::MidLine;
  }
}

void DataFramer::bareLineEnd(DataError kind) {
  if (limits_.bareLines == BareLinePolicy::Reject) {
    fail(kind);
  }
  lineEnd();
  afterCrlf_ = false;  // a bare line end never starts a terminator
}

void DataFramer::lineEnd() {
  if (error_ == DataError::None) {
    if (limits_.maxSize - bytesOut_ < 2) {
      fail(DataError::TooBig);
    } else {
      out_.append("\r\n");
      bytesOut_ += 2;
    }
  }
  if (inHeader_) {
    countHeaderLine();
  }
  lineLength_ = 0;
  state_ = State::LineStart;
}

void DataFramer::countHeaderLine() {
  if (lineLength_ == 0) {
    inHeader_ = false;  // the empty line: the body follows
    return;
  }
  headerBytes_ += lineLength_ + 2;
  if (headerBytes_ > limits_.maxHeader) {
    fail(DataError::HeaderTooBig);
  }
}

void DataFramer::emit(std::string_view bytes) {
  if (error_ != DataError::None || bytes.empty()) {
    return;
  }
  // Write what fits, then fail: the sink then holds the same prefix however
  // the input was split (checked byte by byte, size before line length).
  std::uint64_t sizeRoom = limits_.maxSize - bytesOut_;
  std::size_t lineRoom = limits_.maxLine - lineLength_;
  std::size_t n =
      static_cast<std::size_t>(std::min<std::uint64_t>({bytes.size(), sizeRoom, lineRoom}));
  out_.append(bytes.substr(0, n));
  bytesOut_ += n;
  lineLength_ += n;
  if (n < bytes.size()) {
    fail(sizeRoom <= lineRoom ? DataError::TooBig : DataError::LineTooLong);
  }
}

void DataFramer::fail(DataError error) {
  if (error_ == DataError::None) {
    error_ = error;
  }
}

void DataFramer::flush(MessageSink& sink) {
  if (!out_.empty()) {
    sink.append(out_);
    out_.clear();
  }
}

policies::Reply replyFor(DataError error) {
  const ReplySpec& spec = kReplies[static_cast<std::size_t>(error)];
  return {spec.code, spec.esc, std::string(spec.text)};
}

}  // namespace smtpgate::proxy
