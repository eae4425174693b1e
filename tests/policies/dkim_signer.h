#pragma once
// Test-only DKIM signing: keys made with OpenSSL, signatures made with
// libopendkim's signing API, key records ready for UnboundServer.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "policies/opendkim.h"
#include "tests/support/unbound_server.h"

namespace smtpgate::testing {

/// A DKIM signing key and its DNS record.
struct DkimKey {
  std::string privatePem;  ///< PKCS#8 PEM, what dkim_sign() takes
  std::string publicB64;   ///< p= value
  std::string keyType;     ///< "rsa" or "ed25519"

  /// "v=DKIM1; k=rsa; p=..."
  std::string record() const { return "v=DKIM1; k=" + keyType + "; p=" + publicB64; }

  static DkimKey rsa(int bits = 2048) {
    return make(EVP_RSA_gen(static_cast<unsigned>(bits)), "rsa");
  }

  static DkimKey ed25519() {
    EVP_PKEY* key = nullptr;
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr);
    REQUIRE(ctx != nullptr);
    REQUIRE(EVP_PKEY_keygen_init(ctx) == 1);
    REQUIRE(EVP_PKEY_keygen(ctx, &key) == 1);
    EVP_PKEY_CTX_free(ctx);
    return make(key, "ed25519");
  }

 private:
  static std::string base64(const unsigned char* data, std::size_t len) {
    std::string out(4 * ((len + 2) / 3) + 1, '\0');
    const int n =
        EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(len));
    out.resize(static_cast<std::size_t>(n));
    return out;
  }

  static DkimKey make(EVP_PKEY* key, const char* type) {
    REQUIRE(key != nullptr);
    DkimKey k;
    k.keyType = type;
    BIO* bio = BIO_new(BIO_s_mem());
    REQUIRE(PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
    char* pem = nullptr;
    const long pemLen = BIO_get_mem_data(bio, &pem);
    k.privatePem.assign(pem, static_cast<std::size_t>(pemLen));
    BIO_free(bio);
    if (k.keyType == "ed25519") {
      unsigned char raw[32];
      std::size_t len = sizeof raw;
      REQUIRE(EVP_PKEY_get_raw_public_key(key, raw, &len) == 1);
      k.publicB64 = base64(raw, len);
    } else {
      unsigned char* der = nullptr;
      const int len = i2d_PUBKEY(key, &der);
      REQUIRE(len > 0);
      k.publicB64 = base64(der, static_cast<std::size_t>(len));
      OPENSSL_free(der);
    }
    EVP_PKEY_free(key);
    return k;
  }
};

/// A TXT record for UnboundServer::addRecord, split into <= 250-byte strings.
inline std::string txtRecord(const std::string& name, const std::string& value) {
  std::string out = name + ". TXT";
  for (std::size_t i = 0; i < value.size(); i += 250) {
    out += " " + UnboundServer::quoteCharacterString(value.substr(i, 250));
  }
  return out;
}

struct SignOptions {
  dkim_canon_t header = DKIM_CANON_RELAXED;
  dkim_canon_t body = DKIM_CANON_RELAXED;
  bool bodyLengthTag = false;  ///< sign with l=
};

/// `message` (CRLF) with a DKIM-Signature by `key` for d=`domain` s=`selector`
/// prepended.
inline std::string dkimSign(const std::string& message, const DkimKey& key,
                            const std::string& domain, const std::string& selector,
                            const SignOptions& options = {}) {
  DKIM_LIB* lib = dkim_init(nullptr, nullptr);
  REQUIRE(lib != nullptr);
  if (options.bodyLengthTag) {
    unsigned int flags = DKIM_LIBFLAGS_SIGNLEN;
    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof flags);
  }
  DKIM_STAT status = DKIM_STAT_OK;
  const dkim_alg_t alg = key.keyType == "ed25519" ? DKIM_SIGN_ED25519SHA256 : DKIM_SIGN_RSASHA256;
  std::string pem = key.privatePem;
  DKIM* dkim = dkim_sign(lib, reinterpret_cast<const unsigned char*>("test"), nullptr,
                         reinterpret_cast<unsigned char*>(pem.data()),
                         reinterpret_cast<const unsigned char*>(selector.c_str()),
                         reinterpret_cast<const unsigned char*>(domain.c_str()), options.header,
                         options.body, alg, -1, &status);
  INFO("dkim_sign: " << dkim_getresultstr(status));
  REQUIRE(dkim != nullptr);
  std::string copy = message;
  REQUIRE(dkim_chunk(dkim, reinterpret_cast<unsigned char*>(copy.data()), copy.size()) ==
          DKIM_STAT_OK);
  REQUIRE(dkim_chunk(dkim, nullptr, 0) == DKIM_STAT_OK);
  status = dkim_eom(dkim, nullptr);
  INFO("dkim_eom: " << dkim_getresultstr(status) << " " << dkim_geterror(dkim));
  REQUIRE(status == DKIM_STAT_OK);
  unsigned char* header = nullptr;
  std::size_t len = 0;
  const std::string name = "DKIM-Signature";
  REQUIRE(dkim_getsighdr_d(dkim, name.size() + 2, &header, &len) == DKIM_STAT_OK);
  std::string value(reinterpret_cast<char*>(header), len);
  dkim_free(dkim);
  dkim_close(lib);
  // dkim_getsighdr_d folds with CRLF already; make sure no bare LF remains.
  std::string folded;
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '\n' && (i == 0 || value[i - 1] != '\r')) {
      folded += '\r';
    }
    folded += value[i];
  }
  return name + ": " + folded + "\r\n" + message;
}

}  // namespace smtpgate::testing
