#include "milter/milter_protocol.h"

#include <libmilter/mfapi.h>

#include <fmt/core.h>

namespace smtpgate::milter::protocol {

namespace {

constexpr std::size_t kLengthBytes = 4;

std::uint32_t readUint32(std::string_view data, std::size_t at) {
  if (data.size() < at + kLengthBytes) {
    throw ProtocolError("packet too short");
  }
  std::uint32_t value = 0;
  for (std::size_t i = 0; i < kLengthBytes; ++i) {
    value = (value << 8) | static_cast<unsigned char>(data[at + i]);
  }
  return value;
}

void appendUint32(std::string& out, std::uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((value >> shift) & 0xFF));
  }
}

/// The NUL-terminated string at `at`; `at` moves past its NUL.
std::string_view takeString(std::string_view data, std::size_t& at) {
  const std::size_t nul = data.find('\0', at);
  if (nul == std::string_view::npos) {
    throw ProtocolError("string without its terminating NUL");
  }
  std::string_view out = data.substr(at, nul - at);
  at = nul + 1;
  return out;
}

void appendString(std::string& out, std::string_view text) {
  out.append(text);
  out.push_back('\0');
}

}  // namespace

void PacketReader::feed(std::string_view bytes) {
  if (consumed_ > 0 && consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  }
  buffer_.append(bytes);
}

std::optional<Packet> PacketReader::next() {
  const std::string_view pending = std::string_view(buffer_).substr(consumed_);
  if (pending.size() < kLengthBytes) {
    return std::nullopt;
  }
  const std::uint32_t length = readUint32(pending, 0);
  if (length == 0 || length > kMaxPacket) {
    throw ProtocolError(fmt::format("bad packet length {}", length));
  }
  if (pending.size() < kLengthBytes + length) {
    return std::nullopt;
  }
  Packet packet;
  packet.command = pending[kLengthBytes];
  packet.data.assign(pending.substr(kLengthBytes + 1, length - 1));
  consumed_ += kLengthBytes + length;
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  } else if (consumed_ > kMaxPacket) {
    buffer_.erase(0, consumed_);  // keep the buffer from growing with pipelined packets
    consumed_ = 0;
  }
  return packet;
}

Negotiation parseNegotiation(std::string_view data) {
  if (data.size() < 3 * kLengthBytes) {
    throw ProtocolError("option negotiation too short");
  }
  return {readUint32(data, 0), readUint32(data, 4), readUint32(data, 8)};
}

ConnectInfo parseConnect(std::string_view data) {
  ConnectInfo info;
  std::size_t at = 0;
  info.hostname = std::string(takeString(data, at));
  if (at >= data.size()) {
    throw ProtocolError("connect without an address family");
  }
  info.family = data[at++];
  if (info.family == SMFIA_UNKNOWN) {
    return info;
  }
  if (info.family != SMFIA_INET && info.family != SMFIA_INET6 && info.family != SMFIA_UNIX) {
    throw ProtocolError(
        fmt::format("unknown address family {:#04x}", static_cast<unsigned char>(info.family)));
  }
  if (data.size() < at + 2) {
    throw ProtocolError("connect without a port");
  }
  info.port = static_cast<std::uint16_t>((static_cast<unsigned char>(data[at]) << 8) |
                                         static_cast<unsigned char>(data[at + 1]));
  at += 2;
  info.address = std::string(takeString(data, at));
  return info;
}

std::vector<std::string_view> parseStrings(std::string_view data) {
  std::vector<std::string_view> out;
  for (std::size_t at = 0; at < data.size();) {
    out.push_back(takeString(data, at));
  }
  return out;
}

Macros parseMacros(std::string_view data) {
  if (data.empty()) {
    throw ProtocolError("macro definition without a stage");
  }
  Macros macros;
  macros.stage = data[0];
  const std::vector<std::string_view> strings = parseStrings(data.substr(1));
  if (strings.size() % 2 != 0) {
    throw ProtocolError("macro name without a value");
  }
  for (std::size_t i = 0; i < strings.size(); i += 2) {
    macros.values.emplace_back(strings[i], strings[i + 1]);
  }
  return macros;
}

std::pair<std::string_view, std::string_view> parseHeader(std::string_view data) {
  std::size_t at = 0;
  const std::string_view name = takeString(data, at);
  const std::string_view value = takeString(data, at);
  if (at != data.size()) {
    throw ProtocolError("bytes after a header value");
  }
  return {name, value};
}

void appendPacket(std::string& out, char command, std::string_view data) {
  appendUint32(out, static_cast<std::uint32_t>(data.size() + 1));
  out.push_back(command);
  out.append(data);
}

void appendNegotiation(std::string& out, const Negotiation& answer) {
  std::string data;
  appendUint32(data, answer.version);
  appendUint32(data, answer.actions);
  appendUint32(data, answer.protocol);
  for (const auto& [stage, names] : answer.macroLists) {
    appendUint32(data, stage);
    appendString(data, names);
  }
  appendPacket(out, SMFIC_OPTNEG, data);
}

void appendReplyCode(std::string& out, int code, std::string_view esc, std::string_view text) {
  std::string data =
      esc.empty() ? fmt::format("{} {}", code, text) : fmt::format("{} {} {}", code, esc, text);
  data.push_back('\0');
  appendPacket(out, SMFIR_REPLYCODE, data);
}

void appendInsertHeader(std::string& out, std::uint32_t index, std::string_view name,
                        std::string_view value) {
  std::string data;
  appendUint32(data, index);
  appendString(data, name);
  appendString(data, value);
  appendPacket(out, SMFIR_INSHEADER, data);
}

void appendDeleteHeader(std::string& out, std::uint32_t index, std::string_view name) {
  std::string data;
  appendUint32(data, index);
  appendString(data, name);
  appendString(data, "");
  appendPacket(out, SMFIR_CHGHEADER, data);
}

}  // namespace smtpgate::milter::protocol
