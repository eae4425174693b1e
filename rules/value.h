#pragma once
/// Values — what a fact holds, and the three-valued truth rules compute with.
///
/// A fact is either known (bool, number, string, IP address, or several
/// strings, e.g. every `Received` header) or `Unavailable` with a reason ("no
/// DNS resolver in this build", "DNS timeout"). Unavailable facts are never
/// faked: any comparison with one is `Tri::Unknown`, `not Unknown` is Unknown,
/// and a rule fires only when its condition is definitely True (Kleene logic),
/// so `not client.ptr` does not fire just because rDNS could not be asked.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace smtpgate::rules {

enum class Tri { False, True, Unknown };

constexpr Tri toTri(bool b) {
  return b ? Tri::True : Tri::False;
}
constexpr Tri triNot(Tri t) {
  return t == Tri::Unknown ? Tri::Unknown : (t == Tri::True ? Tri::False : Tri::True);
}
constexpr Tri triAnd(Tri a, Tri b) {
  if (a == Tri::False || b == Tri::False) {
    return Tri::False;
  }
  return (a == Tri::True && b == Tri::True) ? Tri::True : Tri::Unknown;
}
constexpr Tri triOr(Tri a, Tri b) {
  if (a == Tri::True || b == Tri::True) {
    return Tri::True;
  }
  return (a == Tri::False && b == Tri::False) ? Tri::False : Tri::Unknown;
}
std::string_view toString(Tri t);

/// An IPv4 or IPv6 address. IPv4 is stored v4-mapped (::ffff:a.b.c.d) so one
/// 128-bit space serves both families; `isV4()` remembers how it was written.
/// An IPv6 address written as ::ffff:a.b.c.d is treated as the IPv4 address.
class IpAddress {
 public:
  IpAddress() = default;
  static std::optional<IpAddress> parse(std::string_view text);
  static IpAddress fromV4(std::uint32_t hostOrder);
  static IpAddress fromBytes16(const std::array<std::uint8_t, 16>& bytes);

  [[nodiscard]] bool isV4() const;
  [[nodiscard]] const std::array<std::uint8_t, 16>& bytes() const { return bytes_; }
  /// Bit `i` (0 = most significant) of the 128-bit form.
  [[nodiscard]] bool bit(unsigned i) const { return (bytes_[i / 8] >> (7 - i % 8)) & 1U; }
  [[nodiscard]] std::string toString() const;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;

 private:
  std::array<std::uint8_t, 16> bytes_{};
};

/// A fact that could not be computed; `reason` is shown to the admin.
struct Unavailable {
  std::string reason;
  friend bool operator==(const Unavailable&, const Unavailable&) = default;
};

using Strings = std::vector<std::string>;

/// Numbers are doubles: ports, sizes and counts fit exactly, scores may be fractional.
using FactValue = std::variant<Unavailable, bool, double, std::string, IpAddress, Strings>;

/// Human-readable form for `smtpgate check` and the log ("unavailable (reason)").
std::string describe(const FactValue& v);

}  // namespace smtpgate::rules
