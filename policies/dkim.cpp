#include "policies/dkim.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <future>
#include <map>
#include <memory>
#include <set>

#include "policies/opendkim.h"
#include "rules/ascii.h"

namespace smtpgate::policies {

namespace {

using Clock = DnsResolver::Clock;

std::string text(const unsigned char* s) {
  return s != nullptr ? std::string(reinterpret_cast<const char*>(s)) : std::string();
}

/// The key record's DNS name for a signature ("sel._domainkey.example.com").
std::string keyName(DKIM_SIGINFO* sig) {
  return rules::asciiLower(text(dkim_sig_getselector(sig))) + "._domainkey." +
         rules::asciiLower(text(dkim_sig_getdomain(sig)));
}

struct KeyAnswer {
  DnsStatus status = DnsStatus::TempFail;
  std::string record;  ///< the first TXT record, for Answer
  std::string error;
};

/// One verification's state, reached from libopendkim's callbacks through
/// dkim_get_user_context().
struct VerifyContext {
  DnsResolver* resolver = nullptr;
  std::string_view body;  ///< the message body as sent, for l= checks
  Clock::time_point deadline;
  std::size_t maxSignatures = 5;
  std::map<std::string, KeyAnswer> keys;  ///< by keyName()
  std::set<DKIM_SIGINFO*> skipped;        ///< beyond maxSignatures
  std::map<DKIM_SIGINFO*, std::string> tempFailed;
  int lookups = 0;
  std::string dnsError;
};

KeyAnswer keyAnswerFrom(DnsAnswer answer) {
  KeyAnswer key;
  key.status = answer.status;
  key.error = std::move(answer.error);
  if (answer.status == DnsStatus::Answer) {
    for (const auto& rdata : answer.rdata) {
      if (auto txt = parseTxtRdata(rdata)) {
        key.record = std::move(*txt);
        return key;
      }
    }
    key.status = DnsStatus::NoData;
    key.error = "malformed TXT record";
  }
  return key;
}

/// Looks up every key the signatures to check need, all at once.
void prefetchKeys(VerifyContext& ctx, DKIM_SIGINFO** sigs, int nsigs) {
  std::map<std::string, std::future<DnsAnswer>> waiting;
  for (int i = 0; i < nsigs; ++i) {
    DKIM_SIGINFO* sig = sigs[i];
    if (static_cast<std::size_t>(i) >= ctx.maxSignatures) {
      dkim_sig_ignore(sig);
      ctx.skipped.insert(sig);
      continue;
    }
    if (dkim_sig_geterror(sig) != DKIM_SIGERROR_UNKNOWN || dkim_sig_getdomain(sig) == nullptr ||
        dkim_sig_getselector(sig) == nullptr) {
      continue;  // a syntax error already decided this one
    }
    const std::string name = keyName(sig);
    if (ctx.keys.count(name) != 0 || waiting.count(name) != 0) {
      continue;
    }
    auto promise = std::make_shared<std::promise<DnsAnswer>>();
    waiting.emplace(name, promise->get_future());
    ++ctx.lookups;
    ctx.resolver->queryAsync(name, DnsType::Txt, ctx.deadline, [promise](DnsAnswer answer) {
      promise->set_value(std::move(answer));
    });
  }
  for (auto& [name, future] : waiting) {
    ctx.keys[name] = keyAnswerFrom(future.get());
  }
  // A key that could not be fetched now may exist: that signature is
  // temperror, and libopendkim never sees it.
  for (int i = 0; i < nsigs; ++i) {
    DKIM_SIGINFO* sig = sigs[i];
    if (ctx.skipped.count(sig) != 0 || dkim_sig_getdomain(sig) == nullptr ||
        dkim_sig_getselector(sig) == nullptr) {
      continue;
    }
    auto it = ctx.keys.find(keyName(sig));
    if (it != ctx.keys.end() && it->second.status == DnsStatus::TempFail) {
      std::string why = it->first + ": " + it->second.error;
      if (ctx.dnsError.empty()) {
        ctx.dnsError = why;
      }
      ctx.tempFailed.emplace(sig, std::move(why));
      dkim_sig_ignore(sig);
    }
  }
}

// libopendkim's callbacks: C calling convention, no exception may cross them.

DKIM_CBSTAT prescreen(DKIM* dkim, DKIM_SIGINFO** sigs, int nsigs) {
  auto* ctx = static_cast<VerifyContext*>(dkim_get_user_context(dkim));
  if (ctx == nullptr) {
    return DKIM_CBSTAT_CONTINUE;
  }
  try {
    prefetchKeys(*ctx, sigs, nsigs);
  } catch (const std::exception& e) {
    ctx->dnsError = e.what();
    return DKIM_CBSTAT_TRYAGAIN;
  }
  return DKIM_CBSTAT_CONTINUE;
}

DKIM_CBSTAT keyLookup(DKIM* dkim, DKIM_SIGINFO* sig, unsigned char* buf, size_t buflen) {
  auto* ctx = static_cast<VerifyContext*>(dkim_get_user_context(dkim));
  if (ctx == nullptr || buf == nullptr || buflen == 0) {
    return DKIM_CBSTAT_ERROR;
  }
  try {
    const std::string name = keyName(sig);
    auto it = ctx->keys.find(name);
    if (it == ctx->keys.end()) {  // not prefetched (should not happen): ask now
      ++ctx->lookups;
      it =
          ctx->keys
              .emplace(name, keyAnswerFrom(ctx->resolver->query(name, DnsType::Txt, ctx->deadline)))
              .first;
    }
    const KeyAnswer& key = it->second;
    switch (key.status) {
      case DnsStatus::Answer:
        break;
      case DnsStatus::NxDomain:
      case DnsStatus::NoData:
        return DKIM_CBSTAT_NOTFOUND;
      case DnsStatus::TempFail:
        return DKIM_CBSTAT_TRYAGAIN;
    }
    if (key.record.size() >= buflen) {
      return DKIM_CBSTAT_ERROR;
    }
    std::memcpy(buf, key.record.c_str(), key.record.size() + 1);
    return DKIM_CBSTAT_CONTINUE;
  } catch (const std::exception&) {
    return DKIM_CBSTAT_ERROR;
  }
}

struct LibraryCloser {
  void operator()(DKIM_LIB* lib) const { dkim_close(lib); }
};
using LibraryPtr = std::unique_ptr<DKIM_LIB, LibraryCloser>;

LibraryPtr makeLibrary() {
  LibraryPtr lib(dkim_init(nullptr, nullptr));
  if (!lib) {
    return lib;
  }
  // FIXCRLF: a saved .eml with LF line ends verifies too. BADSIGHANDLES:
  // signatures with syntax errors are reported (neutral), not dropped.
  unsigned int flags = DKIM_LIBFLAGS_FIXCRLF | DKIM_LIBFLAGS_BADSIGHANDLES;
  dkim_options(lib.get(), DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof flags);
  dkim_set_prescreen(lib.get(), prescreen);
  dkim_set_key_lookup(lib.get(), keyLookup);
  return lib;
}

/// This thread's library handle (see the header: one per thread).
DKIM_LIB* threadLibrary() {
  thread_local LibraryPtr lib = makeLibrary();
  return lib.get();
}

struct HandleFree {
  void operator()(DKIM* dkim) const { dkim_free(dkim); }
};

/// Counts of the top-level fields DKIM cares about.
struct HeaderCounts {
  std::size_t from = 0;
  std::size_t signatures = 0;
};

HeaderCounts countHeaders(std::string_view raw) {
  HeaderCounts counts;
  std::size_t pos = 0;
  while (pos < raw.size()) {
    std::size_t end = raw.find('\n', pos);
    std::string_view line = raw.substr(pos, end == std::string_view::npos ? raw.npos : end - pos);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (line.empty()) {
      break;  // end of the header block
    }
    if (line[0] != ' ' && line[0] != '\t') {
      const std::size_t colon = line.find(':');
      if (colon != std::string_view::npos) {
        std::string_view name = line.substr(0, colon);
        while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) {
          name.remove_suffix(1);
        }
        const std::string n = rules::asciiLower(name);
        counts.from += n == "from" ? 1 : 0;
        counts.signatures += n == "dkim-signature" ? 1 : 0;
      }
    }
    if (end == std::string_view::npos) {
      break;
    }
    pos = end + 1;
  }
  return counts;
}

std::string algorithmName(DKIM_SIGINFO* sig) {
  dkim_alg_t alg = DKIM_SIGN_UNKNOWN;
  dkim_sig_getsignalg(sig, &alg);
  switch (alg) {
    case DKIM_SIGN_RSASHA1:
      return "rsa-sha1";
    case DKIM_SIGN_RSASHA256:
      return "rsa-sha256";
    case DKIM_SIGN_ED25519SHA256:
      return "ed25519-sha256";
    default: {
      std::string a =
          text(dkim_sig_gettagvalue(sig, false, reinterpret_cast<u_char*>(const_cast<char*>("a"))));
      return a.empty() ? "unknown" : a;
    }
  }
}

std::string_view canonName(dkim_canon_t c) {
  return c == DKIM_CANON_RELAXED ? "relaxed" : c == DKIM_CANON_SIMPLE ? "simple" : "unknown";
}

/// The body after the first empty line (CRLF or LF line ends); empty if none.
std::string_view bodyOf(std::string_view raw) {
  std::size_t pos = 0;
  while (pos < raw.size()) {
    std::size_t end = raw.find('\n', pos);
    if (end == std::string_view::npos) {
      return {};
    }
    std::string_view line = raw.substr(pos, end - pos);
    if (line.empty() || line == "\r") {
      return raw.substr(end + 1);
    }
    pos = end + 1;
  }
  return {};
}

/// The length of the canonical body (RFC 6376 3.4.3, 3.4.4), which an l=
/// tag is compared with. libopendkim reports only how much it hashed.
std::size_t canonicalBodyLength(std::string_view body, bool relaxed) {
  std::size_t total = 0;
  std::size_t pendingEmpty = 0;  // empty lines not yet known to be non-trailing
  std::size_t pos = 0;
  while (pos < body.size()) {
    std::size_t end = body.find('\n', pos);
    std::string_view line = body.substr(pos, end == std::string_view::npos ? body.npos : end - pos);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    std::size_t length = line.size();
    if (relaxed) {
      length = 0;
      bool inSpace = false;
      std::size_t pendingSpace = 0;
      for (char c : line) {
        if (c == ' ' || c == '\t') {
          inSpace = true;
          continue;
        }
        if (inSpace) {
          pendingSpace = 1;
          inSpace = false;
        }
        length += pendingSpace + 1;
        pendingSpace = 0;
      }
    }
    if (length == 0) {
      ++pendingEmpty;
    } else {
      total += pendingEmpty * 2 + length + 2;
      pendingEmpty = 0;
    }
    if (end == std::string_view::npos) {
      break;
    }
    pos = end + 1;
  }
  // An empty body is CRLF in simple canonicalization, nothing in relaxed.
  return total == 0 && !relaxed ? 2 : total;
}

/// Syntax errors in the signature field itself: neutral (RFC 8601 2.7.1).
bool isSyntaxError(int error) {
  switch (error) {
    case DKIM_SIGERROR_VERSION:
    case DKIM_SIGERROR_INVALID_HC:
    case DKIM_SIGERROR_INVALID_BC:
    case DKIM_SIGERROR_MISSING_A:
    case DKIM_SIGERROR_INVALID_A:
    case DKIM_SIGERROR_MISSING_H:
    case DKIM_SIGERROR_INVALID_L:
    case DKIM_SIGERROR_INVALID_Q:
    case DKIM_SIGERROR_INVALID_QO:
    case DKIM_SIGERROR_MISSING_D:
    case DKIM_SIGERROR_EMPTY_D:
    case DKIM_SIGERROR_MISSING_S:
    case DKIM_SIGERROR_EMPTY_S:
    case DKIM_SIGERROR_MISSING_B:
    case DKIM_SIGERROR_EMPTY_B:
    case DKIM_SIGERROR_CORRUPT_B:
    case DKIM_SIGERROR_MISSING_BH:
    case DKIM_SIGERROR_EMPTY_BH:
    case DKIM_SIGERROR_CORRUPT_BH:
    case DKIM_SIGERROR_EMPTY_H:
    case DKIM_SIGERROR_MISSING_V:
    case DKIM_SIGERROR_EMPTY_V:
    case DKIM_SIGERROR_TIMESTAMPS:
      return true;
    default:
      return false;
  }
}

DkimSignature describe(DKIM* dkim, DKIM_SIGINFO* sig, const VerifyContext& ctx) {
  DkimSignature s;
  s.domain = rules::asciiLower(text(dkim_sig_getdomain(sig)));
  s.selector = text(dkim_sig_getselector(sig));
  s.algorithm = algorithmName(sig);
  dkim_canon_t hc = DKIM_CANON_UNKNOWN;
  dkim_canon_t bc = DKIM_CANON_UNKNOWN;
  if (dkim_sig_getcanons(sig, &hc, &bc) == DKIM_STAT_OK) {
    s.canonicalization = std::string(canonName(hc)) + "/" + std::string(canonName(bc));
  }
  unsigned char identity[512] = {};
  if (dkim_sig_getidentity(dkim, sig, identity, sizeof identity - 1) == DKIM_STAT_OK) {
    s.identity = text(identity);
  }
  unsigned int bits = 0;
  if (dkim_sig_getkeysize(sig, &bits) == DKIM_STAT_OK) {
    s.keyBits = bits;
  }
  std::string b =
      text(dkim_sig_gettagvalue(sig, false, reinterpret_cast<u_char*>(const_cast<char*>("b"))));
  b.erase(std::remove_if(b.begin(), b.end(), [](unsigned char c) { return std::isspace(c); }),
          b.end());
  s.headerB = b.substr(0, 12);

  const unsigned int flags = dkim_sig_getflags(sig);
  const int error = dkim_sig_geterror(sig);
  if (auto it = ctx.tempFailed.find(sig); it != ctx.tempFailed.end()) {
    s.status = DkimStatus::TempError;
    s.reason = "key lookup failed: " + it->second;
    return s;
  }
  ssize_t msglen = 0;
  ssize_t canonlen = 0;
  ssize_t signlen = -1;
  if (dkim_sig_getcanonlen(dkim, sig, &msglen, &canonlen, &signlen) == DKIM_STAT_OK) {
    s.bodyLength = signlen;
    s.partialBody = signlen >= 0 && static_cast<std::size_t>(signlen) <
                                        canonicalBodyLength(ctx.body, bc == DKIM_CANON_RELAXED);
  }
  if (DKIM_SIG_CHECK(sig)) {
    s.status = DkimStatus::Pass;
    return s;
  }
  if ((flags & DKIM_SIGFLAG_PASSED) != 0 && dkim_sig_getbh(sig) == DKIM_SIGBH_MISMATCH) {
    s.status = DkimStatus::Fail;
    s.reason = "body hash did not verify";
    return s;
  }
  const char* why = dkim_sig_geterrorstr(error);
  s.reason = why != nullptr ? why : "signature not verified";
  if (error == DKIM_SIGERROR_BADSIG) {
    s.status = DkimStatus::Fail;
  } else if (error == DKIM_SIGERROR_KEYFAIL) {
    s.status = DkimStatus::TempError;
  } else if (isSyntaxError(error)) {
    s.status = DkimStatus::Neutral;
  } else if (error == DKIM_SIGERROR_UNKNOWN || error == DKIM_SIGERROR_OK) {
    s.status = (flags & DKIM_SIGFLAG_PROCESSED) != 0 ? DkimStatus::Fail : DkimStatus::Neutral;
    s.reason = (flags & DKIM_SIGFLAG_PROCESSED) != 0 ? "signature did not verify"
                                                     : "signature not processed";
  } else {
    s.status = DkimStatus::PermError;
  }
  return s;
}

/// pass > temperror > fail > permerror > neutral > none (see the header).
int rank(DkimStatus status) {
  switch (status) {
    case DkimStatus::Pass:
      return 5;
    case DkimStatus::TempError:
      return 4;
    case DkimStatus::Fail:
      return 3;
    case DkimStatus::PermError:
      return 2;
    case DkimStatus::Neutral:
      return 1;
    case DkimStatus::None:
      return 0;
  }
  return 0;
}

}  // namespace

std::string_view toString(DkimStatus status) {
  switch (status) {
    case DkimStatus::None:
      return "none";
    case DkimStatus::Pass:
      return "pass";
    case DkimStatus::Fail:
      return "fail";
    case DkimStatus::Neutral:
      return "neutral";
    case DkimStatus::TempError:
      return "temperror";
    case DkimStatus::PermError:
      return "permerror";
  }
  return "none";
}

std::vector<std::string> DkimResult::passingDomains() const {
  std::vector<std::string> out;
  for (const auto& s : signatures) {
    if (s.status == DkimStatus::Pass && std::find(out.begin(), out.end(), s.domain) == out.end()) {
      out.push_back(s.domain);
    }
  }
  return out;
}

DkimResult verifyDkim(DnsResolver& resolver, std::string_view rawMessage,
                      const DkimOptions& options) {
  DkimResult result;
  const HeaderCounts counts = countHeaders(rawMessage);
  result.fromHeaders = counts.from;
  if (counts.signatures == 0) {
    return result;  // none
  }
  DKIM_LIB* lib = threadLibrary();
  if (lib == nullptr) {
    result.status = DkimStatus::TempError;
    result.error = "libopendkim could not be initialised";
    return result;
  }

  VerifyContext ctx;
  ctx.resolver = &resolver;
  ctx.deadline = Clock::now() + options.totalTimeout;
  ctx.maxSignatures = options.maxSignatures;
  ctx.body = bodyOf(rawMessage);

  DKIM_STAT status = DKIM_STAT_OK;
  std::unique_ptr<DKIM, HandleFree> dkim(
      dkim_verify(lib, reinterpret_cast<const unsigned char*>("smtpgate"), nullptr, &status));
  if (!dkim) {
    result.status = DkimStatus::TempError;
    result.error = std::string("dkim_verify: ") + dkim_getresultstr(status);
    return result;
  }
  dkim_set_user_context(dkim.get(), &ctx);
  // libopendkim does not modify the buffer; its API is just not const.
  auto* data = reinterpret_cast<unsigned char*>(const_cast<char*>(rawMessage.data()));
  DKIM_STAT fed = dkim_chunk(dkim.get(), data, rawMessage.size());
  if (fed == DKIM_STAT_OK || fed == DKIM_STAT_NOSIG) {
    fed = dkim_chunk(dkim.get(), nullptr, 0);
  }
  DKIM_STAT eom = DKIM_STAT_INVALID;
  if (fed == DKIM_STAT_OK || fed == DKIM_STAT_NOSIG) {
    bool testKey = false;
    eom = dkim_eom(dkim.get(), &testKey);
  }
  result.dnsLookups = ctx.lookups;
  result.dnsError = ctx.dnsError;

  DKIM_SIGINFO** sigs = nullptr;
  int nsigs = 0;
  if (dkim_getsiglist(dkim.get(), &sigs, &nsigs) != DKIM_STAT_OK) {
    nsigs = 0;
  }
  for (int i = 0; i < nsigs; ++i) {
    if (ctx.skipped.count(sigs[i]) != 0) {
      ++result.signaturesSkipped;
      continue;
    }
    result.signatures.push_back(describe(dkim.get(), sigs[i], ctx));
  }
  if (result.signatures.empty() && result.signaturesSkipped == 0) {
    // libopendkim gave up before looking at signatures (no From, a header
    // it could not parse): the signatures cannot be verified.
    const char* why = dkim_geterror(dkim.get());
    result.status = DkimStatus::PermError;
    result.error = why != nullptr && *why != '\0'
                       ? why
                       : std::string(dkim_getresultstr(fed != DKIM_STAT_OK ? fed : eom));
    return result;
  }
  if (counts.from > 1) {
    for (auto& s : result.signatures) {
      if (s.status == DkimStatus::Pass) {
        s.status = DkimStatus::Fail;
        s.reason = "more than one From header field";
      }
    }
    result.error = "more than one From header field";
  }
  for (const auto& s : result.signatures) {
    if (rank(s.status) > rank(result.status)) {
      result.status = s.status;
    }
  }
  return result;
}

}  // namespace smtpgate::policies
