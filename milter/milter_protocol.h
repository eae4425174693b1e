#pragma once
/// The milter wire protocol (version 6, what Postfix speaks with
/// `milter_protocol = 6`): packet framing, the command payloads an MTA sends,
/// and the reply packets a filter answers with. Pure functions over bytes, no
/// I/O: milter_connection.cpp does the reading and writing.
///
/// Framing: every packet, either way, is a 32-bit length in network byte
/// order, then one command byte, then length - 1 bytes of data. The command
/// and reply codes and the SMFIP_/SMFIF_ flags are libmilter's own, from
/// <libmilter/mfdef.h> (Debian's libmilter-dev); only the header is used.
///
/// Why our own engine rather than libmilter's: Debian builds libmilter with
/// its worker pool (_FFR_WORKERS_POOL). There every command of every
/// connection goes through one controller thread that rebuilds and poll()s
/// the set of all open connections, then wakes a worker through a condition
/// variable, and the worker hands the connection back through a pipe. The
/// work per command grows with the number of open connections; at 20
/// concurrent Postfix sessions, poll() and its per-descriptor bookkeeping
/// were over half of smtpgate's CPU (BENCHMARKS.md, "Postfix milter").
///
/// SECURITY: the bytes come from the MTA over a socket. Every parser here
/// checks lengths before reading, refuses a packet longer than kMaxPacket
/// before buffering it, and throws ProtocolError for anything malformed; the
/// connection is then closed (the MTA applies milter_default_action).
/// Nothing is trusted to be NUL-terminated.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace smtpgate::milter::protocol {

/// The longest packet accepted: Postfix sends at most 64 KiB of body per
/// packet (MILTER_CHUNK_SIZE) and far less of anything else; libmilter's
/// largest negotiable size is 1 MiB.
inline constexpr std::size_t kMaxPacket = 1024 * 1024;

/// The protocol version we speak (libmilter's SMFI_PROT_VERSION).
inline constexpr std::uint32_t kVersion = 6;

struct ProtocolError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Packet {
  char command = 0;
  std::string data;
};

/// Cuts a byte stream into packets.
class PacketReader {
 public:
  /// Appends bytes read from the connection.
  void feed(std::string_view bytes);
  /// The next complete packet, or nullopt until more bytes arrive. Throws
  /// ProtocolError for a length of 0 or over kMaxPacket.
  std::optional<Packet> next();
  /// Bytes received but not yet returned as a packet.
  [[nodiscard]] std::size_t buffered() const { return buffer_.size() - consumed_; }

 private:
  std::string buffer_;
  std::size_t consumed_ = 0;
};

/// SMFIC_OPTNEG: what the MTA offers, or our answer.
struct Negotiation {
  std::uint32_t version = 0;
  std::uint32_t actions = 0;   ///< SMFIF_* the MTA allows
  std::uint32_t protocol = 0;  ///< SMFIP_* the MTA can do
  /// Answer only, with SMFIF_SETSYMLIST: the macros wanted per stage
  /// (SMFIM_*), names separated by spaces.
  std::vector<std::pair<std::uint32_t, std::string>> macroLists = {};
};
Negotiation parseNegotiation(std::string_view data);

/// SMFIC_CONNECT: the client as the MTA saw it.
struct ConnectInfo {
  std::string hostname;
  char family = 'U';  ///< SMFIA_INET '4', SMFIA_INET6 '6', SMFIA_UNIX 'L', SMFIA_UNKNOWN 'U'
  std::uint16_t port = 0;
  std::string address;  ///< as sent ("192.0.2.1", "2001:db8::1" or "IPv6:2001:db8::1")
};
ConnectInfo parseConnect(std::string_view data);

/// A run of NUL-terminated strings (HELO, MAIL and RCPT arguments). Throws
/// ProtocolError if the data does not end with a NUL.
std::vector<std::string_view> parseStrings(std::string_view data);

/// SMFIC_MACRO: the stage (the command code the macros go with) and the
/// name/value pairs. An odd number of strings is malformed.
struct Macros {
  char stage = 0;
  std::vector<std::pair<std::string, std::string>> values;
};
Macros parseMacros(std::string_view data);

/// SMFIC_HEADER: name and value.
std::pair<std::string_view, std::string_view> parseHeader(std::string_view data);

/// Appends one packet to `out`.
void appendPacket(std::string& out, char command, std::string_view data = {});
/// SMFIC_OPTNEG's answer.
void appendNegotiation(std::string& out, const Negotiation& answer);
/// SMFIR_REPLYCODE: "CODE ESC TEXT" (ESC may be empty), NUL-terminated.
void appendReplyCode(std::string& out, int code, std::string_view esc, std::string_view text);
/// SMFIR_INSHEADER: insert `name: value` at `index` (0 = the top).
void appendInsertHeader(std::string& out, std::uint32_t index, std::string_view name,
                        std::string_view value);
/// SMFIR_CHGHEADER with an empty value: delete the `index`th (1-based) field
/// called `name`.
void appendDeleteHeader(std::string& out, std::uint32_t index, std::string_view name);

}  // namespace smtpgate::milter::protocol
