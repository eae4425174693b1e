#pragma once
/// SPF macro-strings (RFC 7208 section 7): parsing, then expansion.
///
/// A macro-string is parsed once, with the record it belongs to (a syntax
/// error anywhere in a record is a permerror before any term is evaluated,
/// 4.6), into literal text and macro tokens. `expand` substitutes the values
/// of one check_host() call later. Three grammars use macro-strings
/// (`SpfMacroSyntax`):
///  - a domain-spec (targets of include/a/mx/ptr/exists, redirect=, exp=):
///    non-empty, ending in a macro-expand or in "." toplabel ["."] (7.1);
///    the letters c, r and t are refused, they belong to explanations (7.3);
///  - an unknown modifier's value: any macro-string (it is never expanded,
///    so c/r/t are let through: a future modifier may use them);
///  - an explanation (the TXT record that exp= names): spaces are literal and
///    every letter is allowed.
/// Letters, the "r" transformer and literal text outside macros are ASCII;
/// a macro letter is case-insensitive.
///
/// Expansion (7.3): a value is split at the macro's delimiters (default
/// "."), reversed if asked, cut to its rightmost N parts, and joined with
/// "."; an uppercase letter then URL-escapes it (RFC 3986 unreserved
/// characters stay, every other byte becomes %XX in uppercase hex). "%%",
/// "%_" and "%-" are "%", " " and "%20". An IPv6 %{i} is the 32 nibbles in
/// uppercase hex, dot-separated, as in the examples of 7.4; %{c} is the
/// usual colon form. %{p} is asked from `SpfMacroValues::validatedName`
/// only when a string uses it (it costs DNS lookups).
///
/// Limits: an expansion longer than `kMaxSpfExpansion` fails instead of
/// growing. Nothing legitimate comes near it (a domain name keeps its
/// rightmost 253 bytes, an explanation is one reply line), while a record
/// full of %{s} and a long sender could otherwise cost megabytes. A DIGIT
/// transformer is clamped at `kMaxSpfMacroParts` (more parts than any value
/// can have).
///
/// SECURITY: records come from DNS, the values from SMTP (sender, HELO):
/// both untrusted. Parsing is one linear pass without recursion; expansion
/// is bounded as above. An expansion can hold any byte a value held (CR, LF,
/// NUL, 8-bit): whoever puts it into a DNS query or a reply line must treat
/// it as untrusted text.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/value.h"

namespace smtpgate::policies {

inline constexpr std::size_t kMaxSpfExpansion = 64 * 1024;
inline constexpr int kMaxSpfMacroParts = 255;

enum class SpfMacroSyntax { DomainSpec, UnknownModifier, Explanation };

/// What the macro letters stand for in one check_host() call (7.3).
struct SpfMacroValues {
  std::string sender;          ///< s: local-part@domain (local-part "postmaster" if empty)
  std::string localPart;       ///< l
  std::string senderDomain;    ///< o
  std::string domain;          ///< d: the domain being checked now
  rules::IpAddress ip;         ///< i, c and v
  std::string helo;            ///< h
  std::string receiver;        ///< r ("unknown" when empty)
  std::int64_t timestamp = 0;  ///< t: seconds since the epoch
  /// p: the client's validated host name, preferring `domain` or a name
  /// below it; empty function or empty answer: "unknown".
  std::function<std::string(const std::string& domain)> validatedName = {};
};

class SpfMacroString {
 public:
  /// The parsed string, or nullopt with `error` saying what is wrong.
  static std::optional<SpfMacroString> parse(std::string_view text, SpfMacroSyntax syntax,
                                             std::string& error);

  /// The expansion, or nullopt with `error` when it passes kMaxSpfExpansion.
  [[nodiscard]] std::optional<std::string> expand(const SpfMacroValues& values,
                                                  std::string& error) const;

  /// The text as written in the record.
  [[nodiscard]] const std::string& text() const { return text_; }

 private:
  /// Literal text (letter 0), or one %{...} macro.
  struct Token {
    std::string literal;
    char letter = 0;  ///< lowercase macro letter; 0 for literal text
    bool urlEscape = false;
    bool reverse = false;
    int keep = 0;            ///< rightmost parts to keep; 0: all
    std::string delimiters;  ///< empty: "."
  };

  /// The macro after "%{" at `pos`; on success `pos` is past its "}".
  static bool parseMacro(std::string_view text, std::size_t& pos, SpfMacroSyntax syntax,
                         Token& token, std::string& error);
  void addLiteral(std::string_view text);
  [[nodiscard]] std::string expandMacro(const Token& token, const SpfMacroValues& values) const;

  std::string text_;
  std::vector<Token> tokens_;
};

/// RFC 7208 7.1 toplabel: letters and digits with at least one letter, or
/// letters, digits and "-" neither first nor last ("xn--zckzah").
bool isSpfTopLabel(std::string_view label);

/// The name an expanded domain-spec queries (7.3): without its final dot,
/// and cut from the left, label by label, to at most 253 bytes.
std::string truncateSpfDomain(std::string name);

}  // namespace smtpgate::policies
