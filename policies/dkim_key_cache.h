#pragma once
/// A cache of decoded DKIM public keys, underneath libopendkim.
///
/// Why: libopendkim decodes the key record's p= value with
/// `d2i_PUBKEY_bio()` for every signature it verifies. On OpenSSL 3.0 (what
/// Debian 12 ships) that call goes through the provider decoder framework
/// and costs about a million instructions, several times the RSA
/// verification itself; with a warm DNS cache it was the largest single cost
/// of a DKIM check in the proxy (BENCHMARKS.md, "SPF and DKIM cost in the
/// proxy"). libopendkim has no hook to hand it an already decoded key.
///
/// How: dkim_key_cache.cpp defines `d2i_PUBKEY_bio` itself. The linker
/// exports it from the executable, and the dynamic linker binds
/// libopendkim's call to it (ELF symbol interposition, the mechanism
/// LD_PRELOAD uses). For a memory BIO — the only kind libopendkim passes —
/// the DER bytes are the cache key: a hit returns the cached EVP_PKEY with
/// one more reference (the caller frees it as usual), a miss calls
/// OpenSSL's own function (found with dlsym(RTLD_NEXT)) and keeps the
/// result. Any other BIO, a caller asking to reuse an EVP_PKEY (`a` not
/// null) or a decode failure goes straight to OpenSSL and is not cached.
///
/// Sharing one EVP_PKEY between threads is what OpenSSL 3 supports for keys
/// that are not modified: libopendkim only verifies with it (its
/// EVP_PKEY_get1_RSA() fills OpenSSL's internal legacy copy under the key's
/// own lock). Equal bytes decode to an equal key, so the cache changes no
/// result; the same verification vectors pass and fail as before
/// (tests/policies/dkim_key_cache_test.cpp). The cache holds at most
/// `kDkimKeyCacheEntries` keys and is emptied when full (a key is a few
/// hundred bytes; keys in use come back on the next message).

#include <cstddef>
#include <cstdint>

namespace smtpgate::policies {

inline constexpr std::size_t kDkimKeyCacheEntries = 4096;

struct DkimKeyCacheCounts {
  std::uint64_t hits = 0;     ///< keys answered from the cache
  std::uint64_t decoded = 0;  ///< keys OpenSSL decoded (misses, including failures)
};

/// Totals since the process started (thread-safe).
DkimKeyCacheCounts dkimKeyCacheCounts();

}  // namespace smtpgate::policies
