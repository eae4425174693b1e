#pragma once
/// ReplyTemplate — an SMTP reply as written in a rule: "550 5.7.1 text $sender".
///
/// Parsed and checked at load time: a three-digit code, an RFC 3463 enhanced
/// status code whose class matches the code's (5.x.x with 5xx), and text.
/// `$client_ip $sender $rcpt $rule $score $session` expand at reply time.
/// SECURITY: expanded values come from the network; expansion drops control
/// characters (a CR/LF in a sender must never end the reply line early).

#include <optional>
#include <string>
#include <string_view>

namespace smtpgate::rules {

/// RFC 3463 class.subject.detail, e.g. 5.7.1.
struct EnhancedStatus {
  int klass = 0;
  int subject = 0;
  int detail = 0;
  [[nodiscard]] std::string toString() const;
  static std::optional<EnhancedStatus> parse(std::string_view text);
  friend bool operator==(const EnhancedStatus&, const EnhancedStatus&) = default;
};

/// Values for the `$name` variables of a reply.
struct ReplyVariables {
  std::string clientIp;
  std::string sender;
  std::string rcpt;
  std::string rule;
  std::string score;
  std::string session;
};

class ReplyTemplate {
 public:
  /// Parses "CODE X.Y.Z text". On failure returns nullopt and sets `error`
  /// and `errorOffset` (byte offset into `text` of the problem).
  static std::optional<ReplyTemplate> parse(std::string_view text, std::string& error,
                                            std::size_t& errorOffset);
  static ReplyTemplate make(int code, EnhancedStatus esc, std::string text);

  [[nodiscard]] int code() const { return code_; }
  [[nodiscard]] const EnhancedStatus& enhanced() const { return esc_; }
  [[nodiscard]] const std::string& text() const { return text_; }
  /// The text with variables expanded; unknown `$words` stay as written.
  [[nodiscard]] std::string expandText(const ReplyVariables& vars) const;
  /// "550 5.7.1 expanded text" (one line, no CRLF).
  [[nodiscard]] std::string render(const ReplyVariables& vars) const;

 private:
  int code_ = 0;
  EnhancedStatus esc_;
  std::string text_;
};

/// The names `$...` may use in reply text.
bool isReplyVariable(std::string_view name);

}  // namespace smtpgate::rules
