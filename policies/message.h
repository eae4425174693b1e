#pragma once
/// Message — the one RFC 5322 / MIME parser shared by the proxy, the milter
/// and `smtpgate check`. It turns the bytes of one message into the facts the
/// data stage reads: `header.NAME` (headers(), header()), `body` (body()),
/// `rawbody` (rawBody()) and `size` (size()), plus the Message-ID and Subject
/// the decision log records.
///
/// Parsing: Message::parse() never fails; a broken message yields what could
/// be read. CRLF and bare LF line ends both work. The header block ends at the
/// first empty line; without one, the whole message is headers and the body
/// is empty. Top-level headers are read from the bytes as sent, in order:
/// folding (CRLF/LF followed by SP/HT) is removed, a line that is neither a
/// field (`name:`) nor a continuation is skipped (the mbox `From ` line, for
/// instance), like GMime does.
///  - HeaderField::raw is the unfolded value with surrounding blanks trimmed,
///    undecoded (any bytes, not necessarily UTF-8). It is not DKIM-canonical:
///    DKIM reads raw().
///  - HeaderField::value is raw RFC 2047-decoded to valid UTF-8 (8-bit bytes
///    outside encoded-words are read as UTF-8, else Latin-1, as GMime does;
///    NUL bytes are dropped so they cannot split a word a rule looks for).
/// MIME (GMime 3) supplies body(): the decoded text of every text/* leaf part
/// that is not an attachment (Content-Disposition: attachment), in document
/// order, including the parts of attached message/rfc822 messages — what a
/// reader sees. multipart/alternative contributes both its text/plain and its
/// text/html. Transfer encodings (base64, quoted-printable, uuencode) are
/// undone, the declared charset is converted to UTF-8 (unknown or missing
/// charsets are read as UTF-8; ISO-8859-1/US-ASCII as Windows-1252, as
/// browsers do), invalid sequences become U+FFFD, CRLF becomes LF, and parts
/// are joined with "\n". HTML is kept as-is: rules see the markup, tags and
/// entities included. Attachments (application/pdf, images, text/* with
/// disposition attachment) contribute nothing to body(); rawbody has them.
///
/// Ownership: a Message owns a copy of the raw message; rawBody() and raw()
/// are views into that copy, valid as long as the Message (moves keep them
/// valid: views are rebuilt from offsets). The caller's buffer may go away
/// right after parse().
///
/// Thread-safety: a Message is immutable after parse(); const methods may be
/// called from any number of threads. parse() may run on several threads at
/// once. GMime is initialised once per process (std::call_once) on first use.
/// After g_mime_init(), parsing distinct messages concurrently is safe:
/// GMime's FAQ (docs/reference/question_index.sgml) says "all functions in
/// gmime-charset, gmime-iconv and gmime-utils should be thread-safe. Objects
/// subclassing GObject are not" — and each parse uses its own stream, parser
/// and message objects, never shared. The only process-wide state GMime
/// 3.2.13 touches while parsing is its charset-name cache (gmime-charset.c,
/// behind a GMutex; g_mime_charset_iconv_name is the only caller of
/// g_mutex_lock in libgmime-3.0.so), the MIME type registry and the default
/// parser options (written by g_mime_init only, read-only afterwards) and
/// GType registration (thread-safe in GLib). g_mime_init() itself is not
/// thread-safe (a plain counter), hence std::call_once. Nothing in smtpgate
/// may call g_mime_object_register_type() or change the default parser
/// options after start-up.
///
/// Limits (MessageLimits), and what is kept when one is hit:
///  - maxHeaders: the first maxHeaders top-level fields are kept; later ones
///    are dropped from headers() and from what GMime parses (the body is
///    still parsed). headersTruncated() tells. MIME part headers (and those
///    of attached messages) share a second budget of maxHeaders fields; past
///    it, further part header fields are dropped before GMime sees them.
///  - maxParts: at most maxParts MIME entities (multiparts, leaves, attached
///    messages) are visited for body(); GMime's input is cut after
///    4 * maxParts + 256 lines starting with "--" (possible boundaries), so a
///    10,000-part bomb costs GMime about as much as a few hundred parts.
///  - maxDecodedBody: body() holds at most maxDecodedBody bytes, cut at a
///    character boundary; decoding stops there, so a 100 MB base64 text part
///    costs at most about maxDecodedBody of decoding work.
///  truncated() is true when any of these made body() incomplete.
///
/// SECURITY: every byte comes from the network (or from a file an admin saved
/// from it). Memory and CPU are bounded by MessageLimits and linear in the raw
/// size: GMime builds about 2 KB of objects per MIME part and 0.5 KB per
/// header field (measured), so part and header bombs are cut before GMime
/// sees them; GMime itself caps nesting at 1024 levels. GMime caches every
/// charset name it meets (in encoded-words and RFC 2231 parameters) for the
/// life of the process (measured: ~64 bytes per distinct name, never freed),
/// so names outside a fixed allow-list are rewritten to "unknown-8bit" in the
/// copy GMime parses; without that, a sender could grow the daemon without
/// bound. body() and every HeaderField::value are valid UTF-8 (rules run RE2
/// in UTF-8 mode). Nothing here trusts a declared length or count.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace smtpgate::policies {

struct HeaderField {
  std::string name;       ///< as written
  std::string lowerName;  ///< ASCII-lowercased name, for lookups
  std::string value;      ///< unfolded, RFC 2047-decoded, valid UTF-8
  std::string raw;        ///< unfolded but undecoded, blanks trimmed
};

struct MessageLimits {
  std::size_t maxDecodedBody = 8u << 20;  ///< bytes of decoded text kept for rules
  std::size_t maxHeaders = 1000;          ///< top-level fields; also the part-header budget
  std::size_t maxParts = 100;             ///< MIME entities visited for body()
};

namespace detail {
/// body() and truncated() as GMime alone computes them. Message::parse()
/// takes a plain single-part text message straight from its bytes instead;
/// the tests compare the two.
std::string bodyThroughGmime(std::string_view raw, const MessageLimits& limits, bool& truncated);
}  // namespace detail

class Message {
 public:
  /// Parses a whole RFC 5322 message (CRLF or LF line ends). Never fails: a
  /// broken message yields what could be read. Copies `raw`.
  static Message parse(std::string_view raw, const MessageLimits& limits = {});

  /// Top-level header fields in message order (at most maxHeaders).
  const std::vector<HeaderField>& headers() const { return headers_; }
  /// Every decoded value of the fields named `name` (ASCII case-insensitive),
  /// in message order; empty if none.
  std::vector<std::string> header(std::string_view name) const;
  /// Decoded text of the message (see the file comment); valid UTF-8.
  const std::string& body() const { return body_; }
  /// The bytes after the header/body separator, as sent; empty if none.
  std::string_view rawBody() const;
  /// The whole message as sent (the owned copy).
  std::string_view raw() const { return raw_; }
  /// Raw size in bytes.
  std::size_t size() const { return raw_.size(); }
  /// The first Message-ID without the angle brackets; empty if none.
  const std::string& messageId() const { return messageId_; }
  /// The first Subject, decoded; empty if none.
  const std::string& subject() const { return subject_; }
  /// How many top-level From fields (DKIM/DMARC: more than one is suspect).
  std::size_t fromHeaderCount() const { return fromHeaderCount_; }
  /// body() is incomplete: maxDecodedBody or maxParts was hit, or part
  /// headers were dropped (see Limits above).
  bool truncated() const { return truncated_; }
  /// More than maxHeaders top-level fields: headers() holds the first ones.
  bool headersTruncated() const { return headersTruncated_; }

 private:
  Message() = default;

  std::string raw_;
  std::size_t bodyOffset_ = 0;  ///< offset of rawBody() in raw_ (raw_.size() if none)
  std::vector<HeaderField> headers_;
  std::string body_;
  std::string messageId_;
  std::string subject_;
  std::size_t fromHeaderCount_ = 0;
  bool truncated_ = false;
  bool headersTruncated_ = false;
};

}  // namespace smtpgate::policies
