#pragma once
/// Session and Transaction — the state a Policy decides over.
///
/// Lifetimes, in Haraka's words: a Session is valid from connect until the
/// client disconnects; a Transaction is valid between an accepted `MAIL FROM`
/// and the end of DATA or `RSET` (or until `MAIL FROM` is rejected). A new
/// MAIL after a finished transaction starts a new Transaction in the same
/// Session. Neither holds sockets or knows SMTP syntax: frontends fill them
/// through Policy's on* calls.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "policies/message.h"
#include "rules/value.h"

namespace smtpgate::policies {

struct ConnectInfo {
  rules::IpAddress ip;
  std::uint16_t port = 0;
  std::uint16_t localPort = 25;
  bool pregreet = false;  ///< the client spoke before the banner
};

struct TlsInfo {
  bool active = false;
  std::string version;  ///< e.g. "TLSv1.3"
  std::string cipher;
};

struct Session {
  std::string id;  ///< short id the sender can quote to the admin ($session)
  ConnectInfo client;
  bool connected = false;
  std::string helo;
  bool heloSeen = false;
  TlsInfo tls;
  /// A rule accepted at connect or helo: no more rules for this session.
  bool acceptedByRule = false;
  /// Score from connect and helo rules; every transaction starts from it.
  double score = 0;
  std::vector<std::string> scoreRules;
};

struct Transaction {
  std::string sender;  ///< empty for the null sender <>
  double mailSize = 0;
  std::vector<std::string> rcpts;  ///< recipients accepted so far
  std::string currentRcpt;         ///< the recipient being decided at rcpt
  std::size_t rcptsAcceptedByRule = 0;
  double score = 0;
  std::vector<std::string> scoreRules;  ///< ids of the score rules that added
  /// A rule accepted at mail: no more rules for this transaction.
  bool acceptedByRule = false;
  std::unique_ptr<Message> message;  ///< parsed at end of DATA, only if a rule reads it
};

}  // namespace smtpgate::policies
