#pragma once
/// Text from the decision log for a terminal: `smtpgate log` and `smtpgate
/// replay` print values a client chose (HELO, addresses), so a control
/// character, a C1 control, a line separator or a bidi override must not
/// move the cursor or reorder what the admin reads; each becomes '?'.
/// Values are valid UTF-8 (the log parser checked); lengths are counted in
/// code points, which is right for everything but East Asian wide characters.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace smtpgate::cli {

/// Code points in `text`.
std::size_t countChars(std::string_view text);

/// Appends `text` cut to `maxChars` (ending in "…" when cut), unsafe
/// characters as '?'. Returns the characters appended.
std::size_t appendClean(std::string& out, std::string_view text, std::size_t maxChars);

/// `text` as appendClean writes it.
std::string clean(std::string_view text, std::size_t maxChars = 200);

/// 1234567 → "1,234,567".
std::string grouped(std::uint64_t n);

}  // namespace smtpgate::cli
