#pragma once
/// Diagnostics — errors and warnings about rule, list and config files.
///
/// Every diagnostic points at `file:line:col` (1-based; col counts bytes) and
/// carries the offending source line, so `smtpgate lint` can print the line and
/// a caret under the column, the way compilers do. Collect every problem of a
/// file, not just the first: the admin fixes them in one pass.

#include <string>
#include <vector>

namespace smtpgate::rules {

struct SourceLocation {
  std::string file;
  int line = 0;    ///< 1-based; 0 = the file as a whole
  int column = 0;  ///< 1-based byte column; 0 = the line as a whole
};

enum class Severity { Error, Warning, Note };

struct Diagnostic {
  Severity severity = Severity::Error;
  SourceLocation where;
  std::string message;
  std::string sourceLine;  ///< the text of `where.line`, without its line end; may be empty
};

/// All diagnostics of one load, in the order they were found.
class Diagnostics {
 public:
  void error(SourceLocation where, std::string message, std::string sourceLine = {});
  void warning(SourceLocation where, std::string message, std::string sourceLine = {});
  void note(SourceLocation where, std::string message, std::string sourceLine = {});
  void add(Diagnostic d) { items_.push_back(std::move(d)); }
  void append(const Diagnostics& other);

  [[nodiscard]] bool hasErrors() const;
  [[nodiscard]] std::size_t errorCount() const;
  [[nodiscard]] const std::vector<Diagnostic>& items() const { return items_; }
  [[nodiscard]] bool empty() const { return items_.empty(); }

 private:
  std::vector<Diagnostic> items_;
};

/// "file:line:col: error: message", then the source line and a caret line
/// (when the source line is known). Tabs in the source line are kept so the
/// caret lines up in a terminal.
std::string format(const Diagnostic& d);
std::string format(const Diagnostics& ds);

}  // namespace smtpgate::rules
