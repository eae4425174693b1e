#include "policies/spf.h"

// libspf2's headers have no extern "C" guard and need these first (DESIGN.md).
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
extern "C" {
#include <spf2/spf.h>
}

#include <strings.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>

namespace smtpgate::policies {

namespace {

/// Thrown by the replacement SPF_error_handler back to checkSpf().
struct SpfLibraryError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void throwingErrorHandler(const char* file, int line, const char* message) {
  throw SpfLibraryError(std::string(message != nullptr ? message : "?") + " (" +
                        (file != nullptr ? file : "?") + ":" + std::to_string(line) + ")");
}

void quietHandler(const char* /*file*/, int /*line*/, const char* /*message*/) {}

void installHandlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    SPF_error_handler = throwingErrorHandler;
    SPF_warning_handler = quietHandler;
    SPF_info_handler = quietHandler;
    SPF_debug_handler = quietHandler;
  });
}

/// The per-check state behind our SPF_dns_server_t layer (its `hook`).
struct DnsLayerState {
  DnsResolver* resolver = nullptr;
  DnsResolver::Clock::time_point deadline;
  int lookups = 0;
  std::string firstError;     ///< the first temporary failure, for the report
  bool sawSpfRecord = false;  ///< some TXT answer held a "v=spf1" record
};

bool isSpfRecord(const std::string& text) {
  return text.size() >= 6 && strncasecmp(text.c_str(), "v=spf1", 6) == 0 &&
         (text.size() == 6 || text[6] == ' ');
}

/// An explanation TXT as a macro-string libspf2 expands correctly.
std::string spacesAsMacro(const std::string& text) {
  std::string out;
  for (char c : text) {
    out += c == ' ' ? std::string("%_") : std::string(1, c);
  }
  return out;
}

std::optional<DnsType> dnsTypeFor(ns_type type) {
  switch (type) {
    case ns_t_a:
      return DnsType::A;
    case ns_t_aaaa:
      return DnsType::Aaaa;
    case ns_t_ptr:
      return DnsType::Ptr;
    case ns_t_mx:
      return DnsType::Mx;
    case ns_t_txt:
      return DnsType::Txt;
    default:
      return std::nullopt;
  }
}

SPF_dns_rr_t* emptyAnswer(SPF_dns_server_t* server, const char* domain, ns_type type,
                          SPF_dns_stat_t herrno) {
  return SPF_dns_rr_new_init(server, domain, type, 0, herrno);
}

/// Appends one record's data to `rr`; false if it does not parse (skipped).
bool addRecord(SPF_dns_rr_t* rr, ns_type type, const std::string& rdata, DnsLayerState& state) {
  const int i = rr->num_rr;
  switch (type) {
    case ns_t_a:
    case ns_t_aaaa: {
      const std::size_t want = type == ns_t_a ? 4 : 16;
      if (rdata.size() != want || SPF_dns_rr_buf_realloc(rr, i, want) != SPF_E_SUCCESS) {
        return false;
      }
      std::memcpy(
          type == ns_t_a ? static_cast<void*>(&rr->rr[i]->a) : static_cast<void*>(&rr->rr[i]->aaaa),
          rdata.data(), want);
      break;
    }
    case ns_t_ptr:
    case ns_t_mx:
    case ns_t_txt: {
      std::optional<std::string> text = type == ns_t_ptr  ? parseNameRdata(rdata)
                                        : type == ns_t_mx ? parseMxRdata(rdata)
                                                          : parseTxtRdata(rdata);
      if (text && type == ns_t_txt) {
        if (isSpfRecord(*text)) {
          state.sawSpfRecord = true;
        } else {
          text = spacesAsMacro(*text);
        }
      }
      if (!text || SPF_dns_rr_buf_realloc(rr, i, text->size() + 1) != SPF_E_SUCCESS) {
        return false;
      }
      // txt, ptr and mx share the union's storage.
      std::memcpy(rr->rr[i]->txt, text->c_str(), text->size() + 1);
      break;
    }
    default:
      return false;
  }
  rr->num_rr = i + 1;
  return true;
}

SPF_dns_rr_t* lookupThrough(SPF_dns_server_t* server, const char* domain, ns_type type) {
  auto* state = static_cast<DnsLayerState*>(server->hook);
  const auto dnsType = dnsTypeFor(type);
  if (!dnsType) {
    // Type SPF (99) is obsolete (RFC 7208 3.1): answer "no data", so
    // libspf2 goes on to TXT; any other type is never asked by SPF.
    return emptyAnswer(server, domain, type, NO_DATA);
  }
  if (DnsResolver::Clock::now() >= state->deadline) {
    if (state->firstError.empty()) {
      state->firstError = "SPF check ran out of time";
    }
    return emptyAnswer(server, domain, type, TRY_AGAIN);
  }
  ++state->lookups;
  DnsAnswer answer = state->resolver->query(domain, *dnsType, state->deadline);
  switch (answer.status) {
    case DnsStatus::NxDomain:
      return emptyAnswer(server, domain, type, HOST_NOT_FOUND);
    case DnsStatus::NoData:
      return emptyAnswer(server, domain, type, NO_DATA);
    case DnsStatus::TempFail:
      if (state->firstError.empty()) {
        state->firstError = std::string(domain) + "/" + std::to_string(type) + ": " + answer.error;
      }
      return emptyAnswer(server, domain, type, TRY_AGAIN);
    case DnsStatus::Answer:
      break;
  }
  SPF_dns_rr_t* rr = emptyAnswer(server, domain, type, NETDB_SUCCESS);
  if (rr == nullptr) {
    return nullptr;
  }
  for (const auto& rdata : answer.rdata) {
    addRecord(rr, type, rdata, *state);
  }
  if (rr->num_rr == 0) {
    rr->herrno = NO_DATA;
  }
  return rr;
}

/// libspf2 calls this for every lookup. It must return an SPF_dns_rr_t and
/// never unwind through libspf2 with a C++ exception of ours.
SPF_dns_rr_t* lookupHook(SPF_dns_server_t* server, const char* domain, ns_type type,
                         int /*shouldCache*/) {
  try {
    return lookupThrough(server, domain, type);
  } catch (const std::exception& e) {
    auto* state = static_cast<DnsLayerState*>(server->hook);
    if (state->firstError.empty()) {
      state->firstError = e.what();
    }
    return emptyAnswer(server, domain, type, TRY_AGAIN);
  }
}

SpfStatus statusFrom(SPF_result_t result) {
  switch (result) {
    case SPF_RESULT_NEUTRAL:
      return SpfStatus::Neutral;
    case SPF_RESULT_PASS:
      return SpfStatus::Pass;
    case SPF_RESULT_FAIL:
      return SpfStatus::Fail;
    case SPF_RESULT_SOFTFAIL:
      return SpfStatus::SoftFail;
    case SPF_RESULT_NONE:
      return SpfStatus::None;
    case SPF_RESULT_TEMPERROR:
      return SpfStatus::TempError;
    case SPF_RESULT_PERMERROR:
      return SpfStatus::PermError;
    default:
      return SpfStatus::PermError;
  }
}

struct ServerDeleter {
  void operator()(SPF_server_t* s) const { SPF_server_free(s); }
};
struct RequestDeleter {
  void operator()(SPF_request_t* r) const { SPF_request_free(r); }
};
struct ResponseDeleter {
  void operator()(SPF_response_t* r) const { SPF_response_free(r); }
};

std::string orEmpty(const char* s) {
  return s != nullptr ? std::string(s) : std::string();
}

SpfResult evaluate(DnsResolver& resolver, const SpfRequest& request, const SpfOptions& options,
                   DnsLayerState& state) {
  SpfResult out;
  out.identity = request.sender.empty() ? "helo" : "mailfrom";
  state.resolver = &resolver;
  state.deadline = DnsResolver::Clock::now() + options.totalTimeout;

  SPF_dns_server_t layer{};
  layer.destroy = nullptr;  // ours, on the stack: SPF_server_free must not free it
  layer.lookup = lookupHook;
  layer.name = "smtpgate";
  layer.hook = &state;

  std::unique_ptr<SPF_server_t, ServerDeleter> server(SPF_server_new_dns(&layer, 0));
  if (!server) {
    throw std::bad_alloc();
  }
  if (!request.receiver.empty()) {
    SPF_server_set_rec_dom(server.get(), request.receiver.c_str());
  }
  // libspf2's default explanation points at the defunct openspf.org: by
  // default a fail explains itself only with the domain's own exp= text.
  SPF_response_t* expErrors = nullptr;
  SPF_server_set_explanation(server.get(), options.defaultExplanation.c_str(), &expErrors);
  if (expErrors != nullptr) {
    SPF_response_free(expErrors);
  }

  std::unique_ptr<SPF_request_t, RequestDeleter> req(SPF_request_new(server.get()));
  if (!req) {
    throw std::bad_alloc();
  }
  const std::string ip = request.ip.toString();
  const SPF_errcode_t ipErr = request.ip.isV4() ? SPF_request_set_ipv4_str(req.get(), ip.c_str())
                                                : SPF_request_set_ipv6_str(req.get(), ip.c_str());
  if (ipErr != SPF_E_SUCCESS) {
    out.status = SpfStatus::PermError;
    out.comment = "bad client address " + ip;
    return out;
  }
  if (!request.helo.empty()) {
    SPF_request_set_helo_dom(req.get(), request.helo.c_str());
  }
  if (request.sender.empty() && request.helo.empty()) {
    out.status = SpfStatus::None;
    out.comment = "no identity to check (empty MAIL FROM and HELO)";
    return out;
  }
  SPF_request_set_env_from(req.get(), request.sender.c_str());

  SPF_response_t* rawResponse = nullptr;
  const SPF_errcode_t err = SPF_request_query_mailfrom(req.get(), &rawResponse);
  std::unique_ptr<SPF_response_t, ResponseDeleter> response(rawResponse);
  out.dnsLookups = state.lookups;
  out.dnsError = state.firstError;
  out.domain = orEmpty(req->env_from_dp);
  if (!response) {
    out.status = SpfStatus::TempError;
    out.comment = "libspf2 returned no response (" + orEmpty(SPF_strerror(err)) + ")";
    return out;
  }
  const SPF_result_t result = SPF_response_result(response.get());
  if (result == SPF_RESULT_INVALID) {
    // libspf2 returned early without a verdict: decide from its error.
    out.status = !state.firstError.empty() || err == SPF_E_DNS_ERROR ? SpfStatus::TempError
                 : err == SPF_E_NOT_SPF && !state.sawSpfRecord       ? SpfStatus::None
                                                                     : SpfStatus::PermError;
  } else {
    out.status = statusFrom(result);
  }
  if (out.status == SpfStatus::Fail) {
    out.explanation = orEmpty(SPF_response_get_explanation(response.get()));
  }
  out.comment = orEmpty(SPF_response_get_smtp_comment(response.get()));
  if (out.comment.empty()) {
    out.comment = orEmpty(SPF_response_get_header_comment(response.get()));
  }
  if (out.comment.empty() && err != SPF_E_SUCCESS) {
    out.comment = orEmpty(SPF_strerror(err));
  }
  // libspf2's own messages (record syntax errors) say why a permerror.
  for (int i = 0; i < SPF_response_messages(response.get()) && i < 3; ++i) {
    if (SPF_error_t* e = SPF_response_message(response.get(), i)) {
      out.comment += std::string("; ") + orEmpty(SPF_error_message(e));
    }
  }
  out.receivedSpf = orEmpty(SPF_response_get_received_spf(response.get()));
  return out;
}

}  // namespace

std::string_view toString(SpfStatus status) {
  switch (status) {
    case SpfStatus::None:
      return "none";
    case SpfStatus::Neutral:
      return "neutral";
    case SpfStatus::Pass:
      return "pass";
    case SpfStatus::Fail:
      return "fail";
    case SpfStatus::SoftFail:
      return "softfail";
    case SpfStatus::TempError:
      return "temperror";
    case SpfStatus::PermError:
      return "permerror";
  }
  return "permerror";
}

SpfResult checkSpf(DnsResolver& resolver, const SpfRequest& request, const SpfOptions& options) {
  installHandlers();
  DnsLayerState state;
  try {
    return evaluate(resolver, request, options, state);
  } catch (const std::exception& e) {
    SpfResult out;
    out.identity = request.sender.empty() ? "helo" : "mailfrom";
    out.status = SpfStatus::TempError;
    out.comment = std::string("libspf2 internal error: ") + e.what();
    out.dnsLookups = state.lookups;
    out.dnsError = state.firstError;
    return out;
  }
}

}  // namespace smtpgate::policies
