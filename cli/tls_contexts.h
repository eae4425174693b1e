#pragma once
/// The OpenSSL contexts the `[proxy]` TLS settings describe, made the same
/// way for `smtpgate proxy` (at start and on every reload) and for
/// `smtpgate lint`, so a certificate that would not load is found before a
/// restart or a reload depends on it.

#include <memory>
#include <string>

#include <boost/asio/ssl/context.hpp>

#include "policies/config.h"

namespace smtpgate::cli {

/// STARTTLS to clients: TLS 1.2 and later, the certificate chain and key of
/// `proxy.tls_certificate`/`tls_key`. nullptr with `error` set on failure.
std::shared_ptr<boost::asio::ssl::context> makeServerTlsContext(const policies::ProxyConfig& proxy,
                                                                std::string& error);

/// STARTTLS to the backend: TLS 1.2 and later; for "verify" the CAs of
/// `backend_tls_ca_file`, or the system's. nullptr with `error` set on failure.
std::shared_ptr<boost::asio::ssl::context> makeBackendTlsContext(const policies::ProxyConfig& proxy,
                                                                 std::string& error);

}  // namespace smtpgate::cli
