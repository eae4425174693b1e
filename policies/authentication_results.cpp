#include "policies/authentication_results.h"

#include "policies/added_header.h"

#include <algorithm>
#include <cctype>
#include <utility>
#include <vector>

namespace smtpgate::policies {

namespace {

/// A reason as the text of a comment: printable ASCII without ( ) \.
std::string commentText(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (c == '(' || c == ')' || c == '\\' || c < 0x20 || c > 0x7e) {
      out += ' ';
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

/// RFC 2045 token characters (plus '@' and '.' which pvalue allows).
bool isTokenChar(unsigned char c) {
  return c > 0x20 && c < 0x7f &&
         std::string_view("()<>,;:\\\"/[]?=").find(static_cast<char>(c)) == std::string_view::npos;
}

/// A property value: as is when it is token characters, else quoted.
std::string pvalue(std::string_view v) {
  bool plain = !v.empty();
  for (unsigned char c : v) {
    plain = plain && isTokenChar(c);
  }
  if (plain) {
    return std::string(v);
  }
  std::string out = "\"";
  for (unsigned char c : v) {
    if (c == '"' || c == '\\') {
      out += '\\';
    }
    out += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?';
  }
  return out + "\"";
}

std::string_view skipCfws(std::string_view s) {
  for (;;) {
    while (!s.empty() &&
           (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n')) {
      s.remove_prefix(1);
    }
    if (s.empty() || s.front() != '(') {
      return s;
    }
    int depth = 0;
    std::size_t i = 0;
    for (; i < s.size(); ++i) {
      if (s[i] == '\\') {
        ++i;
      } else if (s[i] == '(') {
        ++depth;
      } else if (s[i] == ')' && --depth == 0) {
        break;
      }
    }
    s.remove_prefix(std::min(i + 1, s.size()));
  }
}

std::string normalId(std::string_view id) {
  std::string out;
  for (unsigned char c : id) {
    out += static_cast<char>(std::tolower(c));
  }
  while (!out.empty() && out.back() == '.') {
    out.pop_back();
  }
  return out;
}

}  // namespace

std::string authenticationResultsValue(std::string_view authservId, const AuthResults& results) {
  std::string out = pvalue(authservId);
  bool any = false;
  if (const SpfResult* spf = results.spf) {
    any = true;
    out += "; spf=" + std::string(toString(spf->status));
    if (!spf->comment.empty()) {
      out += " (" + commentText(spf->comment) + ")";
    }
    if (spf->identity == "helo") {
      out += " smtp.helo=" + pvalue(results.helo.empty() ? spf->domain : results.helo);
    } else {
      out +=
          " smtp.mailfrom=" + pvalue(results.spfSender.empty() ? spf->domain : results.spfSender);
    }
  }
  if (const DkimResult* dkim = results.dkim) {
    any = true;
    if (dkim->signatures.empty()) {
      out += "; dkim=" + std::string(toString(dkim->status));
      if (!dkim->error.empty()) {
        out += " (" + commentText(dkim->error) + ")";
      }
    }
    for (const auto& s : dkim->signatures) {
      out += "; dkim=" + std::string(toString(s.status));
      std::string comment;
      if (s.keyBits != 0) {
        comment = std::to_string(s.keyBits) + "-bit key";
      }
      if (s.partialBody) {
        comment += std::string(comment.empty() ? "" : "; ") + "l= covers part of the body";
      }
      if (s.status != DkimStatus::Pass && !s.reason.empty()) {
        comment += std::string(comment.empty() ? "" : "; ") + s.reason;
      }
      if (!comment.empty()) {
        out += " (" + commentText(comment) + ")";
      }
      if (!s.domain.empty()) {
        out += " header.d=" + pvalue(s.domain);
      }
      if (!s.selector.empty()) {
        out += " header.s=" + pvalue(s.selector);
      }
      out += " header.a=" + pvalue(s.algorithm);
      if (!s.headerB.empty()) {
        out += " header.b=" + pvalue(s.headerB);
      }
    }
  }
  if (const DmarcResult* dmarc = results.dmarc) {
    any = true;
    out += "; dmarc=" + std::string(toString(dmarc->status));
    std::string comment;
    if (!dmarc->record.empty()) {
      comment = "p=" + std::string(toString(dmarc->policy));
    }
    if (dmarc->status != DmarcStatus::Pass && !dmarc->reason.empty()) {
      comment += std::string(comment.empty() ? "" : "; ") + dmarc->reason;
    }
    if (!comment.empty()) {
      out += " (" + commentText(comment) + ")";
    }
    if (!dmarc->fromDomain.empty()) {
      out += " header.from=" + pvalue(dmarc->fromDomain);
    }
  }
  if (!any) {
    out += "; none";
  }
  return out;
}

bool claimsAuthservId(std::string_view value, std::string_view authservId) {
  std::string_view s = skipCfws(value);
  std::string id;
  if (!s.empty() && s.front() == '"') {
    for (std::size_t i = 1; i < s.size() && s[i] != '"'; ++i) {
      if (s[i] == '\\' && i + 1 < s.size()) {
        ++i;
      }
      id += s[i];
    }
  } else {
    std::size_t end = 0;
    while (end < s.size() && s[end] != ';' && s[end] != '(' && s[end] != ' ' && s[end] != '\t' &&
           s[end] != '\r' && s[end] != '\n') {
      ++end;
    }
    id = std::string(s.substr(0, end));
  }
  const std::string ours = normalId(authservId);
  return !ours.empty() && normalId(id) == ours;
}

bool isAuthenticationResultsName(std::string_view name) {
  return headerNameIs(name, kAuthenticationResults);
}

HeaderBlockRewrite withoutForgedAuthenticationResults(std::string_view message,
                                                      std::string_view authservId) {
  return withoutHeaderFields(message, [authservId](std::string_view name, std::string_view value) {
    return isAuthenticationResultsName(name) && claimsAuthservId(value, authservId);
  });
}

HeaderBlockRewrite withoutHeaderFields(std::string_view message, const HeaderFieldTest& remove) {
  HeaderBlockRewrite out;
  // Each field: [start, end) covering its first line and continuation lines.
  std::vector<std::pair<std::size_t, std::size_t>> forged;
  std::size_t pos = 0;
  std::size_t fieldStart = std::string_view::npos;
  auto closeField = [&](std::size_t end) {
    if (fieldStart == std::string_view::npos) {
      return;
    }
    std::string_view field = message.substr(fieldStart, end - fieldStart);
    const std::size_t colon = field.find(':');
    if (colon != std::string_view::npos) {
      if (remove(field.substr(0, colon), field.substr(colon + 1))) {
        forged.emplace_back(fieldStart, end);
      }
    }
    fieldStart = std::string_view::npos;
  };
  while (pos < message.size()) {
    std::size_t eol = message.find('\n', pos);
    const std::size_t next = eol == std::string_view::npos ? message.size() : eol + 1;
    std::string_view line = message.substr(pos, next - pos);
    if (line == "\r\n" || line == "\n") {
      break;  // the empty line: end of the header block
    }
    if (line.front() != ' ' && line.front() != '\t') {
      closeField(pos);
      fieldStart = pos;
    }
    pos = next;
  }
  closeField(pos);
  out.headerLength = pos;
  out.removed = forged.size();
  if (!forged.empty()) {
    std::size_t at = 0;
    for (const auto& [start, end] : forged) {
      out.headers.append(message.substr(at, start - at));
      at = end;
    }
    out.headers.append(message.substr(at, out.headerLength - at));
  }
  return out;
}

}  // namespace smtpgate::policies
