#include "policies/message.h"

#include <gmime/gmime.h>
#include <iconv.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

namespace smtpgate::policies {
namespace {

constexpr std::size_t kNpos = std::string_view::npos;

// ---------------------------------------------------------------------------
// GMime plumbing

template <typename T>
struct GObjectUnref {
  void operator()(T* object) const {
    if (object != nullptr) {
      g_object_unref(object);
    }
  }
};
template <typename T>
using GObjectPtr = std::unique_ptr<T, GObjectUnref<T>>;

struct GFree {
  void operator()(char* p) const { g_free(p); }
};
using GCharPtr = std::unique_ptr<char, GFree>;

// g_mime_init() keeps a plain counter and registers types and tables: it must
// run once, before any parse, and never concurrently with itself.
void ensureGmimeInitialised() {
  static std::once_flag once;
  std::call_once(once, [] { g_mime_init(); });
}

// A GByteArray over bytes we own elsewhere, so that GMime can parse a large
// message without copying it once more. Nothing writes to a stream used only
// for parsing; the array is released without freeing the bytes.
class BorrowedByteArray {
 public:
  explicit BorrowedByteArray(std::string_view bytes)
      : array_(g_byte_array_new_take(
            reinterpret_cast<guint8*>(const_cast<char*>(bytes.data())),
            // GByteArray lengths are guint; a larger message is cut (never
            // reached: the proxy's message size limit is far below 4 GiB).
            static_cast<gsize>(std::min<std::size_t>(bytes.size(), G_MAXUINT)))) {}
  ~BorrowedByteArray() {
    guint8* bytes = g_byte_array_free(array_, FALSE);  // frees the array, not the bytes
    static_cast<void>(bytes);
  }
  BorrowedByteArray(const BorrowedByteArray&) = delete;
  BorrowedByteArray& operator=(const BorrowedByteArray&) = delete;

  /// A memory stream reading the bytes; it must be released before *this.
  GObjectPtr<GMimeStream> newStream() const {
    GMimeStream* stream = g_mime_stream_mem_new_with_byte_array(array_);
    g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(stream), FALSE);
    return GObjectPtr<GMimeStream>(stream);
  }

 private:
  GByteArray* array_;
};

// ---------------------------------------------------------------------------
// Text helpers

bool isBlank(char c) {
  return c == ' ' || c == '\t';
}
bool isLinearSpace(char c) {
  return isBlank(c) || c == '\r' || c == '\n';
}

char lowerAscii(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lowerAscii(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](char c) { return lowerAscii(c); });
  return out;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return lowerAscii(x) == lowerAscii(y);
         });
}

bool startsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && equalsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

std::string_view trimBlanks(std::string_view s) {
  while (!s.empty() && isLinearSpace(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && isLinearSpace(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

/// One line of the message: [begin, end) is its content without "\n" or
/// "\r\n"; next is where the following line starts.
struct Line {
  std::size_t begin = 0;
  std::size_t end = 0;
  std::size_t next = 0;
};

bool nextLine(std::string_view s, std::size_t pos, Line& line) {
  if (pos >= s.size()) {
    return false;
  }
  std::size_t lf = s.find('\n', pos);
  line.begin = pos;
  line.end = lf == kNpos ? s.size() : lf;
  line.next = lf == kNpos ? s.size() : lf + 1;
  if (line.end > line.begin && s[line.end - 1] == '\r') {
    --line.end;
  }
  return true;
}

std::string_view lineText(std::string_view s, const Line& line) {
  return s.substr(line.begin, line.end - line.begin);
}

// ---------------------------------------------------------------------------
// UTF-8

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

/// Length of the well-formed UTF-8 sequence at s[i] (RFC 3629: no overlong
/// forms, surrogates or code points above U+10FFFF), or 0 if there is none.
std::size_t utf8SequenceLength(std::string_view s, std::size_t i) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  if (c < 0x80) {
    return 1;
  }
  std::size_t n = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    lo = c == 0xE0 ? 0xA0 : 0x80;
    hi = c == 0xED ? 0x9F : 0xBF;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    lo = c == 0xF0 ? 0x90 : 0x80;
    hi = c == 0xF4 ? 0x8F : 0xBF;
  } else {
    return 0;
  }
  if (i + n > s.size() || byte(i + 1) < lo || byte(i + 1) > hi) {
    return 0;
  }
  for (std::size_t k = 2; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) {
      return 0;
    }
  }
  return n;
}

/// `s` with every byte that does not start a well-formed sequence replaced by
/// U+FFFD.
std::string toValidUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = utf8SequenceLength(s, i);
    if (n == 0) {
      out.append(kReplacementChar);
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Charsets: one allow-list serves both the body conversion (MIME name ->
// glibc iconv name) and the names GMime may see (its cache keeps every name
// it meets for the life of the process). Where WHATWG's Encoding Standard
// maps a label to a superset, so do we, as browsers and mail readers do.

struct CharsetAlias {
  std::string_view name;  // lowercase MIME name or alias
  std::string_view iconvName;
};

constexpr std::array kCharsetAliases = {
    CharsetAlias{"utf-8", "UTF-8"},
    CharsetAlias{"utf8", "UTF-8"},
    // Mislabelled "ASCII" is UTF-8 more often than not; invalid bytes become U+FFFD.
    CharsetAlias{"us-ascii", "UTF-8"},
    CharsetAlias{"ascii", "UTF-8"},
    CharsetAlias{"ansi_x3.4-1968", "UTF-8"},
    CharsetAlias{"unknown-8bit", "UTF-8"},
    CharsetAlias{"x-unknown", "UTF-8"},
    CharsetAlias{"utf-16", "UTF-16"},
    CharsetAlias{"utf-16le", "UTF-16LE"},
    CharsetAlias{"utf-16be", "UTF-16BE"},
    CharsetAlias{"utf-32", "UTF-32"},
    CharsetAlias{"utf-32le", "UTF-32LE"},
    CharsetAlias{"utf-32be", "UTF-32BE"},
    CharsetAlias{"utf-7", "UTF-7"},
    CharsetAlias{"latin1", "WINDOWS-1252"},
    CharsetAlias{"l1", "WINDOWS-1252"},
    CharsetAlias{"cp819", "WINDOWS-1252"},
    CharsetAlias{"koi8-r", "KOI8-R"},
    CharsetAlias{"koi8-u", "KOI8-U"},
    CharsetAlias{"koi8-ru", "KOI8-RU"},
    CharsetAlias{"ibm866", "CP866"},
    CharsetAlias{"cp866", "CP866"},
    CharsetAlias{"ibm850", "CP850"},
    CharsetAlias{"cp850", "CP850"},
    CharsetAlias{"ibm437", "CP437"},
    CharsetAlias{"cp437", "CP437"},
    CharsetAlias{"big5", "BIG5-HKSCS"},
    CharsetAlias{"x-big5", "BIG5-HKSCS"},
    CharsetAlias{"big5-hkscs", "BIG5-HKSCS"},
    CharsetAlias{"gb2312", "GBK"},
    CharsetAlias{"csgb2312", "GBK"},
    CharsetAlias{"euc-cn", "GBK"},
    CharsetAlias{"gbk", "GBK"},
    CharsetAlias{"x-gbk", "GBK"},
    CharsetAlias{"cp936", "GBK"},
    CharsetAlias{"gb18030", "GB18030"},
    CharsetAlias{"iso-2022-cn", "ISO-2022-CN"},
    CharsetAlias{"euc-tw", "EUC-TW"},
    CharsetAlias{"shift_jis", "CP932"},
    CharsetAlias{"shift-jis", "CP932"},
    CharsetAlias{"sjis", "CP932"},
    CharsetAlias{"x-sjis", "CP932"},
    CharsetAlias{"ms_kanji", "CP932"},
    CharsetAlias{"csshiftjis", "CP932"},
    CharsetAlias{"windows-31j", "CP932"},
    CharsetAlias{"cp932", "CP932"},
    CharsetAlias{"euc-jp", "EUC-JP"},
    CharsetAlias{"x-euc-jp", "EUC-JP"},
    CharsetAlias{"iso-2022-jp", "ISO-2022-JP"},
    CharsetAlias{"csiso2022jp", "ISO-2022-JP"},
    CharsetAlias{"iso-2022-jp-2", "ISO-2022-JP-2"},
    CharsetAlias{"euc-kr", "CP949"},
    CharsetAlias{"ks_c_5601-1987", "CP949"},
    CharsetAlias{"ks_c_5601", "CP949"},
    CharsetAlias{"ksc5601", "CP949"},
    CharsetAlias{"cp949", "CP949"},
    CharsetAlias{"windows-949", "CP949"},
    CharsetAlias{"iso-2022-kr", "ISO-2022-KR"},
    CharsetAlias{"tis-620", "WINDOWS-874"},
    CharsetAlias{"windows-874", "WINDOWS-874"},
    CharsetAlias{"cp874", "WINDOWS-874"},
    CharsetAlias{"macintosh", "MACINTOSH"},
    CharsetAlias{"mac", "MACINTOSH"},
    CharsetAlias{"x-mac-roman", "MACINTOSH"},
    CharsetAlias{"viscii", "VISCII"},
};

// ISO-8859-N by N; "" where there is no such part. 1, 9 and 11 as WHATWG.
constexpr std::array<std::string_view, 17> kIso8859 = {
    "",           "WINDOWS-1252", "ISO-8859-2",  "ISO-8859-3",   "ISO-8859-4",  "ISO-8859-5",
    "ISO-8859-6", "ISO-8859-7",   "ISO-8859-8",  "WINDOWS-1254", "ISO-8859-10", "WINDOWS-874",
    "",           "ISO-8859-13",  "ISO-8859-14", "ISO-8859-15",  "ISO-8859-16"};

constexpr std::array<std::string_view, 9> kWindows125x = {
    "WINDOWS-1250", "WINDOWS-1251", "WINDOWS-1252", "WINDOWS-1253", "WINDOWS-1254",
    "WINDOWS-1255", "WINDOWS-1256", "WINDOWS-1257", "WINDOWS-1258"};

/// The number after `prefix` in `name`, digits only, no leading zero, at
/// most two digits: the set of accepted spellings must stay finite.
std::optional<unsigned> numberAfter(std::string_view name, std::string_view prefix) {
  if (!name.starts_with(prefix)) {
    return std::nullopt;
  }
  std::string_view digits = name.substr(prefix.size());
  if (digits.empty() || digits.size() > 2 || digits[0] == '0') {
    return std::nullopt;
  }
  unsigned n = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    n = n * 10 + static_cast<unsigned>(c - '0');
  }
  return n;
}

std::optional<std::string_view> numberedCharset(std::string_view lower) {
  for (std::string_view prefix : {"iso-8859-", "iso8859-", "iso_8859-"}) {
    if (auto n = numberAfter(lower, prefix); n && *n < kIso8859.size() && !kIso8859[*n].empty()) {
      return kIso8859[*n];
    }
  }
  for (std::string_view prefix : {"windows-125", "cp125", "x-cp125"}) {
    if (auto n = numberAfter(lower, prefix); n && *n < kWindows125x.size()) {
      return kWindows125x[*n];
    }
  }
  return std::nullopt;
}

/// The glibc iconv name for a MIME charset name on the allow-list.
std::optional<std::string_view> lookupCharset(std::string_view name) {
  constexpr std::size_t kLongestName = 20;  // longer than any allowed name
  if (name.empty() || name.size() > kLongestName) {
    return std::nullopt;
  }
  std::string lower = lowerAscii(name);
  for (const CharsetAlias& alias : kCharsetAliases) {
    if (alias.name == lower) {
      return alias.iconvName;
    }
  }
  return numberedCharset(lower);
}

// What GMime is shown instead of a charset name off the allow-list: GMime
// cannot convert from it either, so decoding falls back exactly as for the
// original unknown name, and its cache gains one entry in total.
constexpr std::string_view kNeutralCharset = "unknown-8bit";

/// A charset name GMime would look up, at [begin, end) of the text.
struct CharsetToken {
  std::size_t begin = 0;
  std::size_t end = 0;
  bool allowed = true;
  std::size_t resume = 0;  // where the search for the next token continues
};

// "=?charset[*lang]?X?" with X one of BbQq (RFC 2047, RFC 2231 section 5).
// GMime ends the charset at '*' itself; whitespace ends an encoded-word.
std::optional<CharsetToken> encodedWordCharset(std::string_view s, std::size_t eq) {
  std::size_t begin = eq + 2;
  std::size_t end = begin;
  while (end < s.size() && s[end] != '?' && !isLinearSpace(s[end])) {
    ++end;
  }
  if (end + 2 >= s.size() || s[end] != '?' || s[end + 2] != '?' ||
      std::string_view("BbQq").find(s[end + 1]) == kNpos) {
    return std::nullopt;
  }
  std::string_view name = s.substr(begin, end - begin);
  name = name.substr(0, name.find('*'));
  bool allowed = name.empty() || lookupCharset(name).has_value();
  // Every candidate holds a '?', and a scan stops at the next '?': linear.
  return CharsetToken{begin, end, allowed, allowed ? eq + 1 : end};
}

// "name*=charset'lang'value" and "name*0*=...", quoted or not, with blanks
// or folds anywhere GMime would skip them (RFC 2231 section 4). The scan is
// more generous than GMime's tokeniser: rewriting too much is harmless,
// missing a name is not.
std::optional<CharsetToken> extendedParamCharset(std::string_view s, std::size_t eq) {
  std::size_t star = eq;
  while (star > 0 && isLinearSpace(s[star - 1])) {
    --star;
  }
  if (star == 0 || s[star - 1] != '*') {
    return std::nullopt;
  }
  std::size_t begin = eq + 1;
  while (begin < s.size() && isLinearSpace(s[begin])) {
    ++begin;
  }
  bool quoted = begin < s.size() && s[begin] == '"';
  begin += quoted ? 1 : 0;
  std::size_t end = begin;
  while (end < s.size() && s[end] != '\'') {
    if (quoted ? s[end] == '"' : (isLinearSpace(s[end]) || s[end] == ';')) {
      break;
    }
    end += (quoted && s[end] == '\\') ? 2 : 1;
  }
  end = std::min(end, s.size());
  // Later candidates inside [eq, end) are inside this value for GMime too.
  std::size_t resume = std::max(end, eq + 1);
  if (end >= s.size() || s[end] != '\'') {
    return CharsetToken{begin, begin, true, resume};
  }
  std::string_view name = s.substr(begin, end - begin);
  return CharsetToken{begin, end, name.empty() || lookupCharset(name).has_value(), resume};
}

/// `s` with every charset name GMime would look up that is not on the
/// allow-list replaced by kNeutralCharset; nullopt when nothing was.
std::optional<std::string> neutralizeCharsets(std::string_view s) {
  std::string out;
  std::size_t copied = 0;
  std::size_t pos = 0;
  while ((pos = s.find('=', pos)) != kNpos) {
    std::optional<CharsetToken> token;
    if (pos + 1 < s.size() && s[pos + 1] == '?') {
      token = encodedWordCharset(s, pos);
    }
    if (!token) {
      token = extendedParamCharset(s, pos);  // "name*=?cs'..." is still a parameter
    }
    if (!token) {
      ++pos;
      continue;
    }
    if (!token->allowed) {
      out.append(s.substr(copied, token->begin - copied));
      out.append(kNeutralCharset);
      copied = token->end;
    }
    pos = token->resume;
  }
  if (copied == 0) {
    return std::nullopt;
  }
  out.append(s.substr(copied));
  return out;
}

// ---------------------------------------------------------------------------
// Top-level headers, read from the bytes as sent

struct TopHeaders {
  std::vector<HeaderField> fields;  // raw filled in; value decoded later
  std::size_t headerEnd = 0;        // where the separator line starts (size if none)
  std::size_t bodyOffset = 0;       // after the separator (size if none)
  std::size_t dropFrom = kNpos;     // first line of the first field past maxHeaders
  bool irregular = false;  // a line that is no field, an orphan continuation, a CR or NUL inside
};

/// Where the colon of a field line is: a name of RFC 5322 ftext, optional
/// blanks (obsolete syntax), ':'.
std::optional<std::size_t> fieldColon(std::string_view line) {
  std::size_t i = 0;
  while (i < line.size() && line[i] > ' ' && line[i] < 127 && line[i] != ':') {
    ++i;
  }
  std::size_t nameEnd = i;
  while (i < line.size() && isBlank(line[i])) {
    ++i;
  }
  if (nameEnd == 0 || i >= line.size() || line[i] != ':') {
    return std::nullopt;
  }
  return i;
}

TopHeaders scanTopHeaders(std::string_view raw, std::size_t maxHeaders) {
  TopHeaders top;
  top.headerEnd = raw.size();
  top.bodyOffset = raw.size();
  bool continuing = false;  // a continuation line belongs to a kept field
  Line line;
  for (std::size_t pos = 0; nextLine(raw, pos, line); pos = line.next) {
    std::string_view text = lineText(raw, line);
    if (text.empty()) {
      top.headerEnd = line.begin;
      top.bodyOffset = line.next;
      break;
    }
    top.irregular = top.irregular || text.find_first_of(std::string_view("\r\0", 2)) != kNpos;
    if (isBlank(text[0])) {
      if (continuing) {
        top.fields.back().raw.append(text);  // unfold: drop the line break, keep the blank
      }
      top.irregular = top.irregular || top.fields.empty();
      continue;
    }
    std::optional<std::size_t> colon = fieldColon(text);
    top.irregular = top.irregular || !colon;
    continuing = colon && top.fields.size() < maxHeaders;
    if (colon && !continuing && top.dropFrom == kNpos) {
      top.dropFrom = line.begin;
    }
    if (continuing) {
      HeaderField& field = top.fields.emplace_back();
      field.name = trimBlanks(text.substr(0, *colon));
      field.lowerName = lowerAscii(field.name);
      field.raw = text.substr(*colon + 1);
    }
  }
  return top;
}

/// RFC 2047-decoded `raw`, valid UTF-8.
std::string decodeHeaderValue(std::string_view raw) {
  std::string input;
  input.reserve(raw.size());
  bool plainAscii = true;
  for (char c : raw) {
    if (c != '\0') {  // GMime reads C strings; a NUL must not hide what follows
      input.push_back(c);
      plainAscii = plainAscii && static_cast<unsigned char>(c) < 0x80;
    }
  }
  if (plainAscii && input.find("=?") == kNpos) {
    return input;
  }
  if (std::optional<std::string> neutral = neutralizeCharsets(input)) {
    input = std::move(*neutral);
  }
  GCharPtr decoded(g_mime_utils_header_decode_text(nullptr, input.c_str()));
  return decoded ? toValidUtf8(decoded.get()) : std::string();
}

std::string messageIdFrom(std::string_view raw) {
  std::size_t open = raw.find('<');
  if (open == kNpos) {
    return std::string(trimBlanks(raw));
  }
  std::size_t close = raw.find('>', open + 1);
  std::size_t end = close == kNpos ? raw.size() : close;
  return std::string(trimBlanks(raw.substr(open + 1, end - open - 1)));
}

/// Whether a Content-Type value names message/* (whose body GMime parses as
/// one more header block): blanks and one leading comment are skipped.
bool isMessageType(std::string_view value) {
  value = trimBlanks(value);
  if (!value.empty() && value.front() == '(') {
    std::size_t close = value.find(')');
    value = close == kNpos ? std::string_view() : trimBlanks(value.substr(close + 1));
  }
  return startsWithIgnoreCase(value, "message/");
}

// ---------------------------------------------------------------------------
// What GMime parses: the raw message, or a bounded rewrite of it

// Lines starting with "--" (possible boundaries) GMime may see per allowed
// part, plus slack for text that merely starts with dashes ("-- " signature
// lines, "-----Original Message-----"). A boundary opens at most one entity
// and closes at most one multipart, so 4 per part is generous.
constexpr std::size_t kDashLinesPerPart = 4;
constexpr std::size_t kDashLineSlack = 256;

struct GmimeInput {
  std::string owned;        // the rewrite, if any
  bool rewritten = false;   // GMime parses `owned`, not the raw message
  bool incomplete = false;  // parts or part headers were cut: body() may miss text
};

/// Builds GmimeInput in one pass over the lines. It cuts the input after
/// too many possible boundaries, drops top-level fields past maxHeaders and
/// MIME header fields past the part-header budget (a header block starts
/// after a "--" line, or after a header block that declared message/*), and
/// finally neutralises unknown charset names.
class GmimeInputBuilder {
 public:
  GmimeInputBuilder(std::string_view raw, const TopHeaders& top, const MessageLimits& limits)
      : raw_(raw), top_(top), limits_(limits), cut_(raw.size()) {}

  GmimeInput build() {
    if (top_.dropFrom != kNpos) {
      drop(top_.dropFrom, top_.headerEnd);
    }
    scanBody();
    GmimeInput input;
    input.incomplete = incomplete_;
    if (!drops_.empty() || cut_ < raw_.size()) {
      input.owned = assemble();
      input.rewritten = true;
    }
    std::string_view view = input.rewritten ? std::string_view(input.owned) : raw_;
    if (std::optional<std::string> neutral = neutralizeCharsets(view)) {
      input.owned = std::move(*neutral);
      input.rewritten = true;
    }
    return input;
  }

 private:
  std::size_t dashLineLimit() const {
    constexpr std::size_t kMax = std::numeric_limits<std::size_t>::max();
    return limits_.maxParts > (kMax - kDashLineSlack) / kDashLinesPerPart
               ? kMax
               : limits_.maxParts * kDashLinesPerPart + kDashLineSlack;
  }

  void scanBody() {
    inHeaders_ = std::any_of(top_.fields.begin(), top_.fields.end(), [](const HeaderField& f) {
      return f.lowerName == "content-type" && isMessageType(f.raw);
    });
    std::size_t dashLimit = dashLineLimit();
    Line line;
    for (std::size_t pos = top_.bodyOffset; nextLine(raw_, pos, line); pos = line.next) {
      std::string_view text = lineText(raw_, line);
      if (text.starts_with("--")) {
        if (++dashLines_ > dashLimit) {
          cut_ = line.begin;
          incomplete_ = true;
          return;
        }
        startBlock(true);  // a part's headers follow a boundary
      } else if (inHeaders_ && text.empty()) {
        endField();
        startBlock(declaresMessage_);  // message/rfc822: the attached message's headers follow
      } else if (inHeaders_) {
        onHeaderLine(line, text);
      }
    }
    endField();
  }

  void onHeaderLine(const Line& line, std::string_view text) {
    if (isBlank(text[0])) {  // continuation of the current field
      if (droppingField_) {
        drop(line.begin, line.next);
      } else if (inContentType_ && contentType_.size() < kContentTypePrefix) {
        contentType_.append(text);
      }
      return;
    }
    endField();
    std::size_t colon = text.find(':');
    if (colon == kNpos) {
      // GMime skips a line that is not a field; over budget it goes too, so
      // that dropped lines stay one range.
      if (partFields_ > limits_.maxHeaders) {
        drop(line.begin, line.next);
      }
      return;
    }
    std::string_view name = trimBlanks(text.substr(0, colon));
    // Over budget, the first Content-Type, -Transfer-Encoding and
    // -Disposition of each block are still kept (at most 3 per block), so the
    // structure and decoding of later parts stay right.
    unsigned structural = structuralBit(name);
    bool keep = ++partFields_ <= limits_.maxHeaders || (structural & ~structuralSeen_) != 0;
    structuralSeen_ |= structural;
    if (!keep) {
      incomplete_ = true;
      droppingField_ = true;
      drop(line.begin, line.next);
    } else if (structural == kContentTypeBit) {
      inContentType_ = true;
      contentType_ = text.substr(colon + 1, kContentTypePrefix);
    }
  }

  static unsigned structuralBit(std::string_view name) {
    if (equalsIgnoreCase(name, "content-type")) {
      return kContentTypeBit;
    }
    if (equalsIgnoreCase(name, "content-transfer-encoding")) {
      return kTransferEncodingBit;
    }
    return equalsIgnoreCase(name, "content-disposition") ? kDispositionBit : 0;
  }

  /// A new header block starts (after a boundary or an empty line).
  void startBlock(bool inHeaders) {
    endField();
    inHeaders_ = inHeaders;
    declaresMessage_ = false;
    structuralSeen_ = 0;
  }

  void endField() {
    if (inContentType_ && isMessageType(contentType_)) {
      declaresMessage_ = true;
    }
    inContentType_ = false;
    droppingField_ = false;
    contentType_.clear();
  }

  void drop(std::size_t begin, std::size_t end) {
    if (!drops_.empty() && drops_.back().second == begin) {
      drops_.back().second = end;  // adjacent lines: one range
    } else {
      drops_.emplace_back(begin, end);
    }
  }

  std::string assemble() const {
    std::string out;
    out.reserve(cut_);
    std::size_t pos = 0;
    for (const auto& [begin, end] : drops_) {
      out.append(raw_.substr(pos, begin - pos));
      pos = end;
    }
    out.append(raw_.substr(pos, cut_ - std::min(pos, cut_)));
    return out;
  }

  static constexpr std::size_t kContentTypePrefix = 128;  // enough to read the media type
  static constexpr unsigned kContentTypeBit = 1;
  static constexpr unsigned kTransferEncodingBit = 2;
  static constexpr unsigned kDispositionBit = 4;

  std::string_view raw_;
  const TopHeaders& top_;
  const MessageLimits& limits_;
  std::size_t cut_;
  std::vector<std::pair<std::size_t, std::size_t>> drops_;
  std::size_t dashLines_ = 0;
  std::size_t partFields_ = 0;
  bool incomplete_ = false;
  bool inHeaders_ = false;
  bool declaresMessage_ = false;
  bool inContentType_ = false;
  bool droppingField_ = false;
  unsigned structuralSeen_ = 0;  // structural fields met in this block
  std::string contentType_;
};

// ---------------------------------------------------------------------------
// Body text

/// Incremental conversion to UTF-8 with glibc iconv, bounded output. Invalid
/// input bytes become U+FFFD; output is cut only at character boundaries.
class Utf8Converter {
 public:
  Utf8Converter(std::string_view fromCharset, std::size_t limit) : limit_(limit) {
    std::string name(fromCharset);
    cd_ = iconv_open("UTF-8", name.c_str());
    if (cd_ == kNoConverter) {
      cd_ = iconv_open("UTF-8", "UTF-8");
    }
  }
  ~Utf8Converter() {
    if (cd_ != kNoConverter) {
      iconv_close(cd_);
    }
  }
  Utf8Converter(const Utf8Converter&) = delete;
  Utf8Converter& operator=(const Utf8Converter&) = delete;

  /// Converts `input`; false when the output is full and input is left over.
  bool feed(std::string_view input);
  /// Ends the input; false when a trailing partial character found no room.
  bool finish() {
    bool ok = pending_.empty() || appendReplacement();
    pending_.clear();
    return ok;
  }
  std::string take() { return std::move(out_); }

 private:
  bool appendReplacement() {
    if (limit_ - out_.size() < kReplacementChar.size()) {
      return false;
    }
    out_.append(kReplacementChar);
    return true;
  }

  static inline const iconv_t kNoConverter =
      reinterpret_cast<iconv_t>(static_cast<std::intptr_t>(-1));
  iconv_t cd_;
  std::size_t limit_;
  std::string pending_;  // an incomplete character carried to the next chunk
  std::string out_;
};

bool Utf8Converter::feed(std::string_view input) {
  if (cd_ == kNoConverter) {
    return false;
  }
  pending_.append(input);
  char* in = pending_.data();
  std::size_t inLeft = pending_.size();
  bool ok = true;
  while (inLeft > 0) {
    std::size_t room = limit_ - out_.size();
    std::size_t chunk = std::min(room, inLeft * 3 + 16);  // 3 bytes out per byte in covers most
    if (room == 0) {
      ok = false;
      break;
    }
    std::size_t old = out_.size();
    out_.resize(old + chunk);
    char* out = out_.data() + old;
    std::size_t outLeft = chunk;
    std::size_t rc = iconv(cd_, &in, &inLeft, &out, &outLeft);
    int error = errno;
    out_.resize(old + chunk - outLeft);
    if (rc != static_cast<std::size_t>(-1)) {
      break;
    }
    if (error == E2BIG) {
      ok = chunk < room;  // no room for the next character at all: full
    } else if (error == EILSEQ) {
      ok = appendReplacement();
      ++in;
      --inLeft;
    } else {
      break;  // EINVAL: a character continues in the next chunk
    }
    if (!ok) {
      break;
    }
  }
  pending_.erase(0, pending_.size() - inLeft);
  return ok;
}

std::string_view iconvNameFor(const char* charset) {
  std::optional<std::string_view> name = charset ? lookupCharset(charset) : std::nullopt;
  return name ? *name : std::string_view("UTF-8");
}

void crlfToLf(std::string& text) {
  std::size_t out = text.find('\r');
  if (out == std::string::npos) {
    return;
  }
  char* data = text.data();
  const std::size_t size = text.size();
  for (std::size_t i = out; i < size;) {
    if (data[i] == '\r' && i + 1 < size && data[i + 1] == '\n') {
      ++i;  // drop the CR of a CRLF; the LF starts the next run
      continue;
    }
    // Copy the run up to the next CR in one move.
    const void* cr = std::memchr(data + i + 1, '\r', size - i - 1);
    const std::size_t end =
        cr != nullptr ? static_cast<std::size_t>(static_cast<const char*>(cr) - data) : size;
    std::memmove(data + out, data + i, end - i);
    out += end - i;
    i = end;
  }
  text.resize(out);
}

/// Walks the MIME tree in document order and appends the decoded text of
/// body text parts to `body`, within the limits.
class BodyCollector {
 public:
  BodyCollector(const MessageLimits& limits, std::string& body, bool& truncated)
      : limits_(limits), body_(body), truncated_(truncated) {}

  void collect(GMimeMessage* message) {
    std::vector<GMimeObject*> stack;  // borrowed: the message owns every part
    if (GMimeObject* root = g_mime_message_get_mime_part(message)) {
      stack.push_back(root);
    }
    for (std::size_t visited = 0; !stack.empty(); ++visited) {
      if (visited == limits_.maxParts) {
        truncated_ = true;
        return;
      }
      GMimeObject* object = stack.back();
      stack.pop_back();
      if (GMIME_IS_MESSAGE_PART(object)) {
        GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(object));
        GMimeObject* part = inner ? g_mime_message_get_mime_part(inner) : nullptr;
        if (part != nullptr) {
          stack.push_back(part);
        }
      } else if (GMIME_IS_MULTIPART(object)) {
        GMimeMultipart* multipart = GMIME_MULTIPART(object);
        for (int i = g_mime_multipart_get_count(multipart) - 1; i >= 0; --i) {
          stack.push_back(g_mime_multipart_get_part(multipart, i));
        }
      } else if (GMIME_IS_PART(object) && isBodyText(object) && !appendText(GMIME_PART(object))) {
        truncated_ = true;
        return;
      }
    }
  }

 private:
  /// text/* and not an attachment: what a mail reader shows inline.
  static bool isBodyText(GMimeObject* object) {
    GMimeContentType* type = g_mime_object_get_content_type(object);
    if (type == nullptr || !g_mime_content_type_is_type(type, "text", "*")) {
      return false;
    }
    GMimeContentDisposition* disposition = g_mime_object_get_content_disposition(object);
    return disposition == nullptr || !g_mime_content_disposition_is_attachment(disposition);
  }

  /// Decoded stream of a leaf's content (transfer encoding undone), or null.
  static GObjectPtr<GMimeStream> decodedContent(GMimePart* part) {
    GMimeDataWrapper* content = g_mime_part_get_content(part);
    GMimeStream* source = content ? g_mime_data_wrapper_get_stream(content) : nullptr;
    if (source == nullptr) {
      return nullptr;
    }
    g_mime_stream_reset(source);
    GObjectPtr<GMimeStream> decoded(g_mime_stream_filter_new(source));
    GMimeContentEncoding encoding = g_mime_data_wrapper_get_encoding(content);
    if (encoding == GMIME_CONTENT_ENCODING_BASE64 ||
        encoding == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE ||
        encoding == GMIME_CONTENT_ENCODING_UUENCODE) {
      GObjectPtr<GMimeFilter> filter(g_mime_filter_basic_new(encoding, FALSE));
      g_mime_stream_filter_add(GMIME_STREAM_FILTER(decoded.get()), filter.get());
    }
    return decoded;
  }

  /// Appends one part's text; false when it did not fit.
  bool appendText(GMimePart* part) {
    GObjectPtr<GMimeStream> decoded = decodedContent(part);
    if (!decoded) {
      return true;
    }
    std::size_t used = body_.size() + (body_.empty() ? 0 : 1);  // "\n" between parts
    std::size_t room = limits_.maxDecodedBody - std::min(used, limits_.maxDecodedBody);
    const char* charset = g_mime_object_get_content_type_parameter(GMIME_OBJECT(part), "charset");
    Utf8Converter converter(iconvNameFor(charset), room);
    std::array<char, 16384> buffer{};
    bool fits = true;
    gssize n = 0;
    while (fits && (n = g_mime_stream_read(decoded.get(), buffer.data(), buffer.size())) > 0) {
      fits = converter.feed(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
    }
    fits = fits && converter.finish();
    std::string text = converter.take();
    crlfToLf(text);
    if (!text.empty()) {
      body_.append(body_.empty() ? "" : "\n").append(text);
    }
    return fits;
  }

  const MessageLimits& limits_;
  std::string& body_;
  bool& truncated_;
};

// ---------------------------------------------------------------------------
// Plain text without GMime
//
// Most of the cost of a small message is GMime building its object tree. For
// a message that is one text part, not encoded, in UTF-8 or ASCII, the body
// text is the raw body itself (CRLF made LF), so it is taken from the bytes
// directly. Anything else — another Content-Type, comments or RFC 2231
// parameters in it, a transfer encoding, a Content-Disposition, a charset
// that would need converting, a message GMime would see rewritten — goes to
// GMime as before. The result is the same either way; the tests compare the
// two over a corpus (message_test.cpp, "plain-text shortcut").

bool isTokenChar(char c) {
  return c > ' ' && c < 127 && std::string_view("()<>@,;:\\\"/[]?=").find(c) == kNpos;
}

/// The charset parameter (lowercase, empty if absent) of a Content-Type that
/// is `text/SUBTYPE` with plain `name=value` parameters, else nullopt.
std::optional<std::string> simpleTextCharset(std::string_view raw) {
  const std::string value = lowerAscii(raw);
  if (value.find_first_of("(\\*") != kNpos) {
    return std::nullopt;  // comments, quoted-pairs, RFC 2231: GMime's job
  }
  std::size_t pos = 0;
  const auto skipBlanks = [&] {
    while (pos < value.size() && isLinearSpace(value[pos])) {
      ++pos;
    }
  };
  const auto token = [&] {
    const std::size_t begin = pos;
    while (pos < value.size() && isTokenChar(value[pos])) {
      ++pos;
    }
    return std::string_view(value).substr(begin, pos - begin);
  };
  skipBlanks();
  if (token() != "text" || pos >= value.size() || value[pos++] != '/' || token().empty()) {
    return std::nullopt;
  }
  std::optional<std::string> charset;
  for (skipBlanks(); pos < value.size(); skipBlanks()) {
    if (value[pos++] != ';') {
      return std::nullopt;
    }
    skipBlanks();
    if (pos == value.size()) {
      break;
    }
    const std::string_view name = token();
    skipBlanks();
    if (name.empty() || pos == value.size() || value[pos++] != '=') {
      return std::nullopt;
    }
    skipBlanks();
    std::string_view parameter;
    if (pos < value.size() && value[pos] == '"') {
      const std::size_t close = value.find('"', pos + 1);
      if (close == kNpos) {
        return std::nullopt;
      }
      parameter = std::string_view(value).substr(pos + 1, close - pos - 1);
      pos = close + 1;
    } else if ((parameter = token()).empty()) {
      return std::nullopt;
    }
    if (name == "charset") {
      if (charset) {
        return std::nullopt;  // two charsets: let GMime choose
      }
      charset = std::string(parameter);
    }
  }
  return charset.value_or("");
}

/// The body text of a single, unencoded UTF-8 or ASCII text part, or nullopt
/// when the message needs GMime.
std::optional<std::string> plainTextBody(const TopHeaders& top, std::string_view body) {
  std::optional<std::string> charset = std::string();
  bool seenType = false;
  bool seenEncoding = false;
  for (const HeaderField& field : top.fields) {
    if (field.lowerName == "content-type") {
      if (std::exchange(seenType, true) || !(charset = simpleTextCharset(field.raw))) {
        return std::nullopt;
      }
    } else if (field.lowerName == "content-transfer-encoding") {
      const std::string encoding = lowerAscii(trimBlanks(field.raw));
      if (std::exchange(seenEncoding, true) ||
          (encoding != "7bit" && encoding != "8bit" && encoding != "binary")) {
        return std::nullopt;
      }
    } else if (field.lowerName == "content-disposition") {
      return std::nullopt;  // inline or attachment: GMime's reading decides
    }
  }
  // Converting from UTF-8 changes nothing in well-formed UTF-8; converting
  // from an ASCII superset changes nothing in ASCII.
  const std::string_view iconvName = charset->empty() ? "UTF-8" : iconvNameFor(charset->c_str());
  const bool fromUtf8 = iconvName == "UTF-8";
  if (!fromUtf8 && !iconvName.starts_with("WINDOWS-125") && !iconvName.starts_with("ISO-8859-")) {
    return std::nullopt;
  }
  for (std::size_t i = 0; i < body.size();) {
    // Runs of ASCII, eight bytes at a time: most mail is ASCII.
    for (std::uint64_t word = 0; i + sizeof word <= body.size(); i += sizeof word) {
      std::memcpy(&word, body.data() + i, sizeof word);
      if ((word & 0x8080808080808080ULL) != 0) {
        break;
      }
    }
    if (i == body.size()) {
      break;
    }
    const std::size_t n = fromUtf8 ? utf8SequenceLength(body, i) : (body[i] & 0x80) == 0 ? 1 : 0;
    if (n == 0) {
      return std::nullopt;
    }
    i += n;
  }
  return std::string(body);
}

/// Cuts `text` to at most `limit` bytes at a UTF-8 character boundary; true
/// if anything was cut.
bool cutAtCharacter(std::string& text, std::size_t limit) {
  if (text.size() <= limit) {
    return false;
  }
  std::size_t cut = limit;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  text.resize(cut);
  return true;
}

/// Parses `bytes` with GMime and collects the body text.
void extractBody(std::string_view bytes, const MessageLimits& limits, std::string& body,
                 bool& truncated) {
  // Declaration order is release order reversed: the message and parser hold
  // references to the stream, which reads the borrowed array.
  BorrowedByteArray array(bytes);
  GObjectPtr<GMimeStream> stream = array.newStream();
  GObjectPtr<GMimeParser> parser(g_mime_parser_new_with_stream(stream.get()));
  GObjectPtr<GMimeMessage> message(g_mime_parser_construct_message(parser.get(), nullptr));
  if (message) {
    BodyCollector(limits, body, truncated).collect(message.get());
  }
}

/// The same for what the builder made of `raw`: its rewrite, if any.
void extractBody(const GmimeInput& input, std::string_view raw, const MessageLimits& limits,
                 std::string& body, bool& truncated) {
  extractBody(input.rewritten ? std::string_view(input.owned) : raw, limits, body, truncated);
}

}  // namespace

Message Message::parse(std::string_view raw, const MessageLimits& limits) {
  ensureGmimeInitialised();
  Message m;
  m.raw_.assign(raw);
  TopHeaders top = scanTopHeaders(m.raw_, limits.maxHeaders);
  m.bodyOffset_ = top.bodyOffset;
  m.headersTruncated_ = top.dropFrom != kNpos;
  bool seenSubject = false;
  bool seenMessageId = false;
  for (HeaderField& field : top.fields) {
    field.raw = std::string(trimBlanks(field.raw));
    field.value = decodeHeaderValue(field.raw);
    if (field.lowerName == "subject" && !std::exchange(seenSubject, true)) {
      m.subject_ = field.value;
    } else if (field.lowerName == "message-id" && !std::exchange(seenMessageId, true)) {
      m.messageId_ = messageIdFrom(field.raw);
    }
    m.fromHeaderCount_ += field.lowerName == "from" ? 1 : 0;
  }
  GmimeInput input = GmimeInputBuilder(m.raw_, top, limits).build();
  std::optional<std::string> plain;
  if (!input.rewritten && !input.incomplete && !top.irregular) {
    plain = plainTextBody(top, m.rawBody());
  }
  m.headers_ = std::move(top.fields);
  m.truncated_ = input.incomplete;
  if (plain) {
    m.truncated_ = cutAtCharacter(*plain, limits.maxDecodedBody);
    crlfToLf(*plain);
    m.body_ = std::move(*plain);
  } else {
    extractBody(input.rewritten ? std::string_view(input.owned) : std::string_view(m.raw_), limits,
                m.body_, m.truncated_);
  }
  return m;
}

namespace detail {

std::string bodyThroughGmime(std::string_view raw, const MessageLimits& limits, bool& truncated) {
  ensureGmimeInitialised();
  const std::string copy(raw);
  const TopHeaders top = scanTopHeaders(copy, limits.maxHeaders);
  const GmimeInput input = GmimeInputBuilder(copy, top, limits).build();
  std::string body;
  truncated = input.incomplete;
  extractBody(input, copy, limits, body, truncated);
  return body;
}

}  // namespace detail

std::vector<std::string> Message::header(std::string_view name) const {
  std::vector<std::string> values;
  for (const HeaderField& field : headers_) {
    if (equalsIgnoreCase(field.lowerName, name)) {
      values.push_back(field.value);
    }
  }
  return values;
}

std::string_view Message::rawBody() const {
  return std::string_view(raw_).substr(std::min(bodyOffset_, raw_.size()));
}

}  // namespace smtpgate::policies
