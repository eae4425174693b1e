#include "cli/tls_contexts.h"

namespace smtpgate::cli {

namespace ssl = boost::asio::ssl;

std::shared_ptr<ssl::context> makeServerTlsContext(const policies::ProxyConfig& proxy,
                                                   std::string& error) {
  auto tls = std::make_shared<ssl::context>(ssl::context::tls_server);
  boost::system::error_code ec;
  tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                       ssl::context::single_dh_use,
                   ec);
  if (!ec) {
    tls->use_certificate_chain_file(proxy.tlsCertificate, ec);
  }
  if (!ec) {
    tls->use_private_key_file(proxy.tlsKey, ssl::context::pem, ec);
  }
  if (ec) {
    error =
        "TLS certificate " + proxy.tlsCertificate + " / key " + proxy.tlsKey + ": " + ec.message();
    return nullptr;
  }
  return tls;
}

std::shared_ptr<ssl::context> makeBackendTlsContext(const policies::ProxyConfig& proxy,
                                                    std::string& error) {
  auto tls = std::make_shared<ssl::context>(ssl::context::tls_client);
  boost::system::error_code ec;
  tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                   ec);
  if (!ec && proxy.backendTls == policies::BackendTlsLevel::Verify) {
    if (proxy.backendTlsCaFile.empty()) {
      tls->set_default_verify_paths(ec);
    } else {
      tls->load_verify_file(proxy.backendTlsCaFile, ec);
    }
  }
  if (ec) {
    error =
        "backend TLS: " + (proxy.backendTlsCaFile.empty() ? "" : proxy.backendTlsCaFile + ": ") +
        ec.message();
    return nullptr;
  }
  return tls;
}

}  // namespace smtpgate::cli
