// Fuzz target: the milter protocol engine (milter/milter_protocol,
// milter/milter_conversation), fed what an MTA, or anything that reached the
// milter socket, could send. Invariants: nothing crashes; a bad packet ends
// the conversation with ProtocolError and nothing else; feeding the bytes in
// pieces gives the same replies as all at once; the replies are well-formed
// packets.

#include <memory>
#include <string>

#include "fuzz_check.h"
#include "milter/milter_conversation.h"
#include "policies/list_builder.h"

namespace {

using namespace smtpgate;

rules::RuleSetPtr fuzzRules() {
  static const rules::RuleSetPtr rules = [] {
    policies::StandardListBuilder lists;
    rules::Diagnostics diags;
    return rules::RuleSet::loadText(
        "rule nox on rcpt when rcpt ~ /^x@/ then reject \"550 5.7.1 no x\"\n"
        "rule words on data when body ~ /cheap watches/ then reject\n",
        "fuzz.rules", lists, diags);
  }();
  return rules;
}

/// The replies to `chunks`, fed one after another; stops at a protocol error.
std::string converse(const std::vector<std::string_view>& chunks) {
  milter::MilterConversation conversation([] {
    policies::PolicyOptions o;
    o.dryRun = false;
    o.authservId = "mx.fuzz.example";
    return std::make_unique<milter::MilterSession>(fuzzRules(), o, nullptr);
  });
  milter::protocol::PacketReader reader;
  std::string out;
  try {
    for (std::string_view chunk : chunks) {
      reader.feed(chunk);
      while (auto packet = reader.next()) {
        if (!conversation.handle(*packet, out)) {
          return out;
        }
      }
    }
  } catch (const milter::protocol::ProtocolError&) {
  }
  return out;
}

/// The command codes of the reply packets in `bytes`, which must be whole
/// packets. (Not the bytes: a default reply text names the session id.)
std::string replyCommands(const std::string& bytes) {
  milter::protocol::PacketReader reader;
  reader.feed(bytes);
  std::string commands;
  while (auto reply = reader.next()) {
    commands += reply->command;
  }
  FUZZ_CHECK(reader.buffered() == 0);
  return commands;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string whole = replyCommands(converse({input}));
  const std::string pieces = replyCommands(converse(fuzz::chunked(input, size > 0 ? data[0] : 0)));
  FUZZ_CHECK(whole == pieces);
  return 0;
}
