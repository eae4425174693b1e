#include "proxy/extensions.h"

#include <charconv>

#include "proxy/reply_parser.h"

namespace smtpgate::proxy {

std::uint64_t effectiveSizeLimit(const std::optional<std::set<std::string>>& backend,
                                 std::uint64_t ours) {
  if (!backend) {
    return ours;
  }
  auto params = capabilityParams(*backend, "SIZE");
  std::uint64_t theirs = 0;
  if (params && !params->empty()) {
    std::from_chars(params->data(), params->data() + params->size(), theirs);
  }
  if (theirs == 0) {
    return ours;  // SIZE without a number, or 0: the backend sets no limit
  }
  return ours == 0 ? theirs : std::min(ours, theirs);
}

std::vector<std::string> advertisedExtensions(const std::optional<std::set<std::string>>& backend,
                                              const ExtensionOptions& options) {
  std::vector<std::string> out{"PIPELINING"};
  std::uint64_t size = effectiveSizeLimit(backend, options.maxMessageSize);
  out.push_back(size ? "SIZE " + std::to_string(size) : "SIZE");
  if (options.tls) {
    out.emplace_back("STARTTLS");
  }
  out.emplace_back("ENHANCEDSTATUSCODES");
  out.emplace_back("CHUNKING");
  for (const char* passThrough : {"8BITMIME", "SMTPUTF8"}) {
    if (backend && capabilityParams(*backend, passThrough)) {
      out.emplace_back(passThrough);
    }
  }
  return out;
}

bool advertises(const std::vector<std::string>& extensions, std::string_view keyword) {
  for (const auto& e : extensions) {
    if (e.compare(0, keyword.size(), keyword) == 0 &&
        (e.size() == keyword.size() || e[keyword.size()] == ' ')) {
      return true;
    }
  }
  return false;
}

}  // namespace smtpgate::proxy
