#pragma once
/// Exit codes of `smtpgate` (sysexits.h where one fits).

namespace smtpgate::cli {

inline constexpr int kExitAccept = 0;    ///< check: accepted; other commands: success
inline constexpr int kExitReject = 1;    ///< check: rejected; lint: errors found
inline constexpr int kExitTempfail = 2;  ///< check: tempfailed
inline constexpr int kExitUsage = 64;    ///< EX_USAGE: bad command line
inline constexpr int kExitNoInput = 66;  ///< EX_NOINPUT: a named input file can't be read
inline constexpr int kExitOsError = 71;  ///< EX_OSERR: a listener or log file can't be opened
inline constexpr int kExitConfig = 78;   ///< EX_CONFIG: config or rules broken

}  // namespace smtpgate::cli
