#pragma once
/// Extensions — what the proxy advertises in its EHLO reply.
///
/// The proxy never offers what the backend can't do: SMTPUTF8 and 8BITMIME
/// only when the backend's EHLO had them, SIZE as the smaller of our limit and
/// the backend's. Without a successful probe of the backend yet, only the
/// extensions the proxy implements itself are offered (safe: a client then
/// sends 7-bit mail, which every backend takes). CHUNKING always: the proxy
/// takes BDAT itself and hands every message on by BDAT or DATA, whichever
/// the backend offers; but not BINARYMIME, which needs a backend's support
/// the DATA path can't give. STARTTLS only with a certificate configured.

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace smtpgate::proxy {

struct ExtensionOptions {
  std::uint64_t maxMessageSize = 0;  ///< 0: no limit advertised
  bool tls = false;                  ///< a certificate is configured and TLS not yet active
};

/// The EHLO keywords (with parameters), in order, e.g. {"PIPELINING", "SIZE 10240000", ...}.
/// `backend` is the backend's capability set, nullopt if not known.
std::vector<std::string> advertisedExtensions(const std::optional<std::set<std::string>>& backend,
                                              const ExtensionOptions& options);

/// The size limit to enforce: ours, lowered to the backend's SIZE if smaller.
std::uint64_t effectiveSizeLimit(const std::optional<std::set<std::string>>& backend,
                                 std::uint64_t ours);

/// True if `keyword` is in the advertised list (SMTPUTF8, 8BITMIME, ...).
bool advertises(const std::vector<std::string>& extensions, std::string_view keyword);

}  // namespace smtpgate::proxy
