// Fuzz target: DataFramer and DotStuffer. The first byte picks the limits
// (size, line, header), the bare-line policy and the framing (DATA or BDAT
// chunks); the rest is the client's bytes. Invariants: the same result however the input is
// chunked; output bounded by maxSize; nothing consumed after the terminator (DATA), everything
// consumed (BDAT); and a message framed without error, dot-stuffed and framed again as DATA comes
// back identical, as exactly one message.

#include <string>

#include "fuzz_check.h"
#include "proxy/data_framer.h"
#include "proxy/dot_stuffer.h"

namespace {

using namespace smtpgate::proxy;

struct Result {
  bool complete = false;
  std::size_t consumed = 0;
  std::string message;
  DataError error = DataError::None;
  bool operator==(const Result&) const = default;
};

Result frame(const std::vector<std::string_view>& chunks, const DataLimits& limits,
             Framing framing = Framing::DotTerminated) {
  DataFramer framer(limits, framing);
  StringSink sink;
  Result r;
  for (std::string_view chunk : chunks) {
    ParseResult p = framer.feed(chunk, sink);
    FUZZ_CHECK(p.status != ParseStatus::Error);
    FUZZ_CHECK(p.consumed <= chunk.size());
    r.consumed += p.consumed;
    if (p.status == ParseStatus::Complete) {
      r.complete = true;
      break;
    }
    FUZZ_CHECK(p.consumed == chunk.size());
  }
  if (framing == Framing::Chunks) {
    FUZZ_CHECK(!r.complete);
    framer.finish(sink);
    r.complete = framer.complete();
  }
  r.message = sink.data();
  r.error = framer.error();
  FUZZ_CHECK(r.message.size() <= limits.maxSize);
  FUZZ_CHECK(framer.bytesOut() == r.message.size());
  FUZZ_CHECK(framer.bytesIn() == r.consumed);
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  std::uint8_t knobs = data[0];
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  DataLimits limits;
  limits.bareLines = (knobs & 1) != 0 ? BareLinePolicy::Normalize : BareLinePolicy::Reject;
  limits.maxSize = (knobs & 2) != 0 ? 64 : 1 << 20;
  limits.maxLine = (knobs & 4) != 0 ? 16 : 1 << 20;
  const Framing framing = (knobs & 8) != 0 ? Framing::Chunks : Framing::DotTerminated;
  limits.maxHeader = (knobs & 16) != 0 ? 32 : 1 << 20;

  Result whole = frame({input}, limits, framing);
  FUZZ_CHECK(frame(smtpgate::fuzz::chunked(input, knobs), limits, framing) == whole);
  if (framing == Framing::Chunks) {
    FUZZ_CHECK(whole.complete && whole.consumed == input.size());
    FUZZ_CHECK(whole.error != DataError::None || whole.message.empty() ||
               whole.message.ends_with("\r\n"));
  } else if (whole.complete) {
    std::string_view end = input.substr(0, whole.consumed);
    FUZZ_CHECK(end.size() >= 3 && end.substr(end.size() - 3) == ".\r\n");
    FUZZ_CHECK(end.size() == 3 || (end.size() >= 5 && end.substr(end.size() - 5) == "\r\n.\r\n"));
  } else {
    FUZZ_CHECK(whole.consumed == input.size());
  }
  if (!whole.complete || whole.error != DataError::None) {
    return 0;
  }
  // What the proxy sends the backend frames back to the same single message.
  std::string stuffed = dotStuff(whole.message);
  DataLimits strict;
  strict.maxSize = UINT64_MAX;
  strict.maxHeader = UINT64_MAX;
  Result again = frame({stuffed}, strict);
  FUZZ_CHECK(again.complete);
  FUZZ_CHECK(again.consumed == stuffed.size());
  FUZZ_CHECK(again.error == DataError::None);
  FUZZ_CHECK(again.message == whole.message);
  return 0;
}
