#include "policies/dkim_key_cache.h"

#include <dlfcn.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>

namespace smtpgate::policies {
namespace {

using DecodeFunction = EVP_PKEY* (*)(BIO*, EVP_PKEY**);

struct FreeKey {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};

std::atomic<std::uint64_t> cacheHits{0};
std::atomic<std::uint64_t> keysDecoded{0};

/// OpenSSL's own d2i_PUBKEY_bio, the next definition after ours.
DecodeFunction opensslDecode() {
  static const auto function = reinterpret_cast<DecodeFunction>(
      dlsym(RTLD_NEXT, "d2i_PUBKEY_bio"));  // NOLINT(cppcoreguidelines-pro-type-reinterpret-cast)
  return function;
}

class KeyCache {
 public:
  /// The cached key for `der` with one more reference, or null.
  EVP_PKEY* find(const std::string& der) {
    std::shared_lock lock(mutex_);
    const auto found = keys_.find(der);
    if (found == keys_.end() || EVP_PKEY_up_ref(found->second.get()) != 1) {
      return nullptr;
    }
    return found->second.get();
  }

  /// Keeps its own reference to `key`.
  void keep(std::string der, EVP_PKEY* key) {
    if (EVP_PKEY_up_ref(key) != 1) {
      return;
    }
    std::unique_ptr<EVP_PKEY, FreeKey> owned(key);
    std::unique_lock lock(mutex_);
    if (keys_.size() >= kDkimKeyCacheEntries) {
      keys_.clear();
    }
    keys_.try_emplace(std::move(der), std::move(owned));
  }

 private:
  std::shared_mutex mutex_;
  std::unordered_map<std::string, std::unique_ptr<EVP_PKEY, FreeKey>> keys_;
};

KeyCache& keyCache() {
  // Never destroyed: libopendkim may still verify on a worker thread while
  // the process exits.
  static auto* cache = new KeyCache;
  return *cache;
}

/// The unread bytes of a memory BIO, or false for any other kind of BIO.
bool memoryContents(BIO* bio, std::string& out) {
  if (bio == nullptr || BIO_method_type(bio) != BIO_TYPE_MEM) {
    return false;
  }
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio, &data);
  if (length <= 0 || data == nullptr) {
    return false;
  }
  out.assign(data, static_cast<std::size_t>(length));
  return true;
}

EVP_PKEY* decodeAndCount(BIO* bio, EVP_PKEY** reuse) {
  keysDecoded.fetch_add(1, std::memory_order_relaxed);
  const DecodeFunction decode = opensslDecode();
  return decode != nullptr ? decode(bio, reuse) : nullptr;
}

}  // namespace

DkimKeyCacheCounts dkimKeyCacheCounts() {
  return {cacheHits.load(std::memory_order_relaxed), keysDecoded.load(std::memory_order_relaxed)};
}

}  // namespace smtpgate::policies

// The interposed definition (see dkim_key_cache.h). Same signature as
// <openssl/x509.h> declares; C linkage comes from that declaration.
EVP_PKEY* d2i_PUBKEY_bio(BIO* bio, EVP_PKEY** a) {
  using namespace smtpgate::policies;
  std::string der;
  if (a != nullptr || !memoryContents(bio, der)) {
    return decodeAndCount(bio, a);
  }
  if (EVP_PKEY* cached = keyCache().find(der)) {
    // Consume the bytes, as a decode would have.
    (void)BIO_read(bio, der.data(), static_cast<int>(der.size()));
    cacheHits.fetch_add(1, std::memory_order_relaxed);
    return cached;
  }
  EVP_PKEY* key = decodeAndCount(bio, nullptr);
  if (key != nullptr) {
    keyCache().keep(std::move(der), key);
  }
  return key;
}
