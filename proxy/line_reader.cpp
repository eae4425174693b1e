#include "proxy/line_reader.h"

namespace smtpgate::proxy {

LineReader::LineReader(std::size_t maxLine) : maxLine_(maxLine) {}

void LineReader::reset() {
  partial_.clear();
  line_ = {};
  error_ = LineError::None;
  discarding_ = false;
}

bool LineReader::exceedsLimit(std::string_view chunk) const {
  std::size_t total = partial_.size() + chunk.size();
  // A final CR is (or may yet turn out to be) the first half of CRLF, so it
  // does not count as text.
  char last = !chunk.empty() ? chunk.back() : (!partial_.empty() ? partial_.back() : '\0');
  if (last == '\r' && total > 0) {
    --total;
  }
  return total > maxLine_;
}

ParseResult LineReader::feed(std::string_view bytes) {
  error_ = LineError::None;
  std::size_t pos = 0;
  if (discarding_) {
    std::size_t lf = bytes.find('\n');
    if (lf == std::string_view::npos) {
      return {ParseStatus::NeedMore, bytes.size()};
    }
    discarding_ = false;
    pos = lf + 1;
  }
  std::size_t lf = bytes.find('\n', pos);
  bool lineEnded = lf != std::string_view::npos;
  std::string_view chunk = bytes.substr(pos, (lineEnded ? lf : bytes.size()) - pos);
  if (exceedsLimit(chunk)) {
    // Refuse now, throw the rest of the line away (here or in later calls).
    partial_.clear();
    error_ = LineError::LineTooLong;
    discarding_ = !lineEnded;
    return {ParseStatus::Error, lineEnded ? lf + 1 : bytes.size()};
  }
  partial_.append(chunk);
  if (!lineEnded) {
    return {ParseStatus::NeedMore, bytes.size()};
  }
  return finishLine(lf + 1);
}

ParseResult LineReader::finishLine(std::size_t consumed) {
  line_ = {};
  line_.bareLf = partial_.empty() || partial_.back() != '\r';
  if (!line_.bareLf) {
    partial_.pop_back();
  }
  for (char c : partial_) {
    line_.hasNul = line_.hasNul || c == '\0';
    line_.hasBareCr = line_.hasBareCr || c == '\r';
  }
  line_.text = std::move(partial_);
  partial_.clear();
  return {ParseStatus::Complete, consumed};
}

policies::Reply replyFor(LineError error) {
  // RFC 5321 4.5.3.1.10 suggests "500 Line too long". X.5.2 (syntax error)
  // rather than X.5.6: the IANA registry reserves X.5.6 for an over-long AUTH
  // exchange line (RFC 4954).
  if (error == LineError::LineTooLong) {
    return {500, {5, 5, 2}, "Error: line too long"};
  }
  return {250, {2, 0, 0}, "Ok"};
}

}  // namespace smtpgate::proxy
