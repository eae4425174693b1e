#include "milter/milter_conversation.h"

#include <libmilter/mfapi.h>
#include <sys/socket.h>

#include <fmt/core.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace smtpgate::milter {

namespace {

using protocol::Packet;
using protocol::ProtocolError;

/// The macros the engine reads, asked for per stage when the MTA lets a
/// milter choose (SMFIF_SETSYMLIST): the queue id, the local port and the
/// TLS facts. The MTA then sends these instead of its default lists (which
/// name a dozen others nothing here reads), and the admin need not add
/// {daemon_port} to milter_connect_macros.
const std::vector<std::pair<std::uint32_t, std::string>> kMacrosWanted = {
    {SMFIM_CONNECT, "{daemon_port}"},
    {SMFIM_HELO, "{tls_version} {cipher}"},
    {SMFIM_ENVFROM, "i"},
    {SMFIM_ENVRCPT, "i"},
    {SMFIM_DATA, "i"},
    {SMFIM_EOH, "i"},
    {SMFIM_EOM, "i"}};

/// Stages in the order they happen: macros are looked up from the newest.
constexpr std::string_view kStagesNewestFirst = "ENTRLMHC";

/// "{i}" and "i" name the same macro (libmilter's smfi_getsymval).
std::string_view bare(std::string_view name) {
  if (name.size() >= 2 && name.front() == '{' && name.back() == '}') {
    return name.substr(1, name.size() - 2);
  }
  return name;
}

std::uint16_t parsePort(std::string_view text, std::uint16_t fallback) {
  std::uint16_t port = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  return ec == std::errc{} && end == text.data() + text.size() && port != 0 ? port : fallback;
}

/// The client address as the MTA wrote it: Postfix may prefix IPv6 with
/// "IPv6:", and a v4-mapped IPv6 address is the IPv4 client.
std::optional<rules::IpAddress> clientAddress(const protocol::ConnectInfo& info) {
  if (info.family != SMFIA_INET && info.family != SMFIA_INET6) {
    return std::nullopt;
  }
  std::string_view text = info.address;
  if (text.size() > 5 && (text.substr(0, 5) == "IPv6:" || text.substr(0, 5) == "ipv6:")) {
    text.remove_prefix(5);
  }
  if (text.starts_with("::ffff:") && text.find('.') != std::string_view::npos) {
    text.remove_prefix(7);
  }
  return rules::IpAddress::parse(text);
}

/// A Policy exception must not lose mail or end the process: fail closed.
template <typename F>
Response guarded(const char* step, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    fmt::print(stderr, "smtpgate milter: {}: {}\n", step, e.what());
  } catch (...) {
    fmt::print(stderr, "smtpgate milter: {}: unknown exception\n", step);
  }
  return Response{SMFIS_TEMPFAIL, std::nullopt};
}

void appendContinue(std::string& out) {
  protocol::appendPacket(out, SMFIR_CONTINUE);
}

void warnAboutActions(unsigned long granted) {
  static std::atomic<bool> warned{false};
  if (granted == (SMFIF_ADDHDRS | SMFIF_CHGHDRS) || warned.exchange(true)) {
    return;
  }
  const bool add = (granted & SMFIF_ADDHDRS) != 0;
  const bool del = (granted & SMFIF_CHGHDRS) != 0;
  fmt::print(stderr, "smtpgate milter: warning: the MTA does not let milters {}{}{}\n",
             add ? "" : "add header fields (no Authentication-Results is added)",
             add || del ? "" : ", nor ",
             del ? "" : "delete header fields (forged Authentication-Results stay)");
}

/// A refusal: the rule's reply when its code is of the refusal's class
/// (`replyClass` 5 or 4, as libmilter requires), else the bare `plainCode`
/// and the MTA's own text.
void appendRefusal(std::string& out, const policies::Reply* reply, int replyClass, char plainCode) {
  if (reply != nullptr && reply->code / 100 == replyClass) {
    protocol::appendReplyCode(out, reply->code, reply->esc.toString(),
                              escapeReplyText(reply->text));
  } else {
    protocol::appendPacket(out, plainCode);
  }
}

}  // namespace

void appendResponse(std::string& out, const Response& response) {
  for (const HeaderChange& change : response.headerChanges) {
    const auto index = static_cast<std::uint32_t>(change.index);
    if (change.kind == HeaderChange::Kind::Delete) {
      protocol::appendDeleteHeader(out, index, change.name);
    } else {
      protocol::appendInsertHeader(out, index, change.name, change.value);
    }
  }
  const policies::Reply* reply = response.reply ? &*response.reply : nullptr;
  switch (response.status) {
    case SMFIS_NOREPLY:
      return;
    case SMFIS_ACCEPT:
      protocol::appendPacket(out, SMFIR_ACCEPT);
      return;
    case SMFIS_DISCARD:
      protocol::appendPacket(out, SMFIR_DISCARD);
      return;
    case SMFIS_SKIP:
      protocol::appendPacket(out, SMFIR_SKIP);
      return;
    case SMFIS_REJECT:
      appendRefusal(out, reply, 5, SMFIR_REJECT);
      return;
    case SMFIS_TEMPFAIL:
      appendRefusal(out, reply, 4, SMFIR_TEMPFAIL);
      return;
    default:
      appendContinue(out);
  }
}

MilterConversation::MilterConversation(SessionFactory newSession)
    : newSession_(std::move(newSession)) {}

MilterSession& MilterConversation::sessionFor() {
  if (!session_) {
    session_ = newSession_();
    session_->setProtocolFlags(protocol_);
    session_->setActionFlags(actions_);
  }
  return *session_;
}

std::string_view MilterConversation::macro(std::string_view name) const {
  const std::string_view wanted = bare(name);
  const auto find = [&](char stage) -> const std::string* {
    const auto it = macros_.find(stage);
    if (it == macros_.end()) {
      return nullptr;
    }
    for (const auto& [macroName, value] : it->second) {
      if (bare(macroName) == wanted) {
        return &value;
      }
    }
    return nullptr;
  };
  for (char stage : kStagesNewestFirst) {
    if (const std::string* value = find(stage)) {
      return *value;
    }
  }
  for (const auto& [stage, values] : macros_) {
    if (kStagesNewestFirst.find(stage) == std::string_view::npos) {
      if (const std::string* value = find(stage)) {
        return *value;
      }
    }
  }
  return {};
}

void MilterConversation::takeQueueId() {
  const std::string_view id = macro("i");
  if (!id.empty()) {
    sessionFor().setQueueId(id);
  }
}

void MilterConversation::forgetTransactionMacros() {
  for (char stage : std::string_view("MRTLNBE")) {
    macros_.erase(stage);
  }
}

void MilterConversation::negotiate(const protocol::Negotiation& offered, std::string& out) {
  if (offered.version < 2) {
    throw ProtocolError(fmt::format("MTA speaks milter protocol version {}", offered.version));
  }
  // A new SMTP session's filter state: the rules in force now.
  session_ = newSession_();
  const bool edits = session_->policy().editsHeaders();
  protocol_ = protocolFlags(offered.protocol, session_->needsMessage(), edits);
  actions_ = actionFlags(offered.actions, edits);
  session_->setProtocolFlags(protocol_);
  session_->setActionFlags(actions_);
  if (edits) {
    warnAboutActions(actions_);
  }
  protocol::Negotiation answer;
  answer.version = std::min(offered.version, protocol::kVersion);
  answer.actions = static_cast<std::uint32_t>(actions_);
  answer.protocol = static_cast<std::uint32_t>(protocol_);
  if ((offered.actions & SMFIF_SETSYMLIST) != 0) {
    answer.actions |= SMFIF_SETSYMLIST;
    answer.macroLists = kMacrosWanted;
  }
  protocol::appendNegotiation(out, answer);
}

void MilterConversation::connect(const protocol::ConnectInfo& info, std::string& out) {
  MilterSession& s = sessionFor();
  // Postfix sends {daemon_port} when milter_connect_macros lists it.
  const std::uint16_t localPort = parsePort(macro("{daemon_port}"), 25);
  appendResponse(out, guarded("connect", [&] {
                   return s.connect(clientAddress(info), info.port, localPort);
                 }));
}

void MilterConversation::endOfMessage(std::string_view lastChunk, std::string& out) {
  MilterSession& s = sessionFor();
  takeQueueId();
  appendResponse(out, guarded("eom", [&] {
                   if (!lastChunk.empty()) {
                     s.body(lastChunk);
                   }
                   // The header changes come first in the Response, in the
                   // order to make them (deletions last index first).
                   return s.endOfMessage();
                 }));
}

Response MilterConversation::failClosedWithoutReply(const Response& response,
                                                    unsigned long noReplyFlag) const {
  // A command the MTA expects no reply to cannot be tempfailed: a reply
  // would be read as the answer to the next command. Ending the connection
  // makes the MTA apply milter_default_action instead.
  if (response.status == SMFIS_TEMPFAIL && negotiated(noReplyFlag)) {
    throw ProtocolError("a command without reply failed; ending the connection");
  }
  return response;
}

bool MilterConversation::handle(const Packet& packet, std::string& out) {
  const std::string_view data = packet.data;
  switch (packet.command) {
    case SMFIC_OPTNEG:
      negotiate(protocol::parseNegotiation(data), out);
      return true;
    case SMFIC_MACRO: {
      protocol::Macros macros = protocol::parseMacros(data);
      macros_[macros.stage] = std::move(macros.values);
      return true;
    }
    case SMFIC_CONNECT:
      connect(protocol::parseConnect(data), out);
      return true;
    case SMFIC_HELO: {
      const auto args = protocol::parseStrings(data);
      policies::TlsInfo tls;
      tls.version = std::string(macro("{tls_version}"));
      tls.cipher = std::string(macro("{cipher}"));
      tls.active = !tls.version.empty();
      const std::string_view name = args.empty() ? std::string_view() : args[0];
      appendResponse(out, guarded("helo", [&] { return sessionFor().helo(name, tls); }));
      return true;
    }
    case SMFIC_MAIL: {
      const auto args = protocol::parseStrings(data);
      takeQueueId();
      appendResponse(out, guarded("envfrom", [&] { return sessionFor().envelopeFrom(args); }));
      return true;
    }
    case SMFIC_RCPT: {
      const auto args = protocol::parseStrings(data);
      takeQueueId();
      appendResponse(out, guarded("envrcpt", [&] { return sessionFor().envelopeRecipient(args); }));
      return true;
    }
    case SMFIC_DATA:
      if (!negotiated(SMFIP_NR_DATA)) {
        appendContinue(out);
      }
      return true;
    case SMFIC_HEADER: {
      const auto [name, value] = protocol::parseHeader(data);
      const Response r = guarded("header", [&] {
        sessionFor().header(name, value);
        return Response{negotiated(SMFIP_NR_HDR) ? SMFIS_NOREPLY : SMFIS_CONTINUE, std::nullopt};
      });
      appendResponse(out, failClosedWithoutReply(r, SMFIP_NR_HDR));
      return true;
    }
    case SMFIC_EOH: {
      const Response r = guarded("eoh", [&] {
        sessionFor().endOfHeaders();
        return Response{negotiated(SMFIP_NR_EOH) ? SMFIS_NOREPLY : SMFIS_CONTINUE, std::nullopt};
      });
      appendResponse(out, failClosedWithoutReply(r, SMFIP_NR_EOH));
      return true;
    }
    case SMFIC_BODY: {
      const Response r = guarded("body", [&] {
        const bool more = sessionFor().body(data);
        if (negotiated(SMFIP_NR_BODY)) {
          return Response{SMFIS_NOREPLY, std::nullopt};
        }
        return Response{!more && negotiated(SMFIP_SKIP) ? SMFIS_SKIP : SMFIS_CONTINUE,
                        std::nullopt};
      });
      appendResponse(out, failClosedWithoutReply(r, SMFIP_NR_BODY));
      return true;
    }
    case SMFIC_BODYEOB:
      endOfMessage(data, out);
      return true;
    case SMFIC_ABORT:
      if (session_) {
        guarded("abort", [&] {
          session_->abort();
          return Response{};
        });
      }
      forgetTransactionMacros();
      return true;
    case SMFIC_UNKNOWN:
      if (!negotiated(SMFIP_NR_UNKN)) {
        appendContinue(out);
      }
      return true;
    case SMFIC_QUIT_NC:
      // The MTA reuses the connection for a new SMTP session: same
      // negotiation, fresh session and macros.
      session_.reset();
      macros_.clear();
      return true;
    case SMFIC_QUIT:
      return false;
    default:
      throw ProtocolError(
          fmt::format("unknown command {:#04x}", static_cast<unsigned char>(packet.command)));
  }
}

namespace {

bool sendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace

void serveConnection(int fd, MilterConversation& conversation) {
  protocol::PacketReader reader;
  std::array<char, 64 * 1024> buffer;  // not zeroed: recv() fills what is read
  std::string out;
  for (;;) {
    // Every complete packet first, then one write for all their replies:
    // what the MTA pipelined is answered in one segment.
    try {
      while (std::optional<Packet> packet = reader.next()) {
        if (!conversation.handle(*packet, out)) {
          sendAll(fd, out);
          return;
        }
      }
    } catch (const protocol::ProtocolError& e) {
      sendAll(fd, out);  // what was answered before the bad packet
      fmt::print(stderr, "smtpgate milter: closing an MTA connection: {}\n", e.what());
      return;
    }
    if (!out.empty()) {
      if (!sendAll(fd, out)) {
        return;
      }
      out.clear();
    }
    const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return;  // the MTA closed the connection, or it timed out
    }
    reader.feed(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
  }
}

}  // namespace smtpgate::milter
