#include "rules/diagnostic.h"

namespace smtpgate::rules {

void Diagnostics::error(SourceLocation where, std::string message, std::string sourceLine) {
  items_.push_back({Severity::Error, std::move(where), std::move(message), std::move(sourceLine)});
}

void Diagnostics::warning(SourceLocation where, std::string message, std::string sourceLine) {
  items_.push_back(
      {Severity::Warning, std::move(where), std::move(message), std::move(sourceLine)});
}

void Diagnostics::note(SourceLocation where, std::string message, std::string sourceLine) {
  items_.push_back({Severity::Note, std::move(where), std::move(message), std::move(sourceLine)});
}

void Diagnostics::append(const Diagnostics& other) {
  items_.insert(items_.end(), other.items_.begin(), other.items_.end());
}

bool Diagnostics::hasErrors() const {
  return errorCount() > 0;
}

std::size_t Diagnostics::errorCount() const {
  std::size_t n = 0;
  for (const auto& d : items_) {
    n += d.severity == Severity::Error ? 1 : 0;
  }
  return n;
}

namespace {

std::string_view severityName(Severity s) {
  switch (s) {
    case Severity::Error:
      return "error";
    case Severity::Warning:
      return "warning";
    case Severity::Note:
      return "note";
  }
  return "error";
}

// The caret line copies tabs from the source line so the caret stays under
// the right byte whatever the terminal's tab width.
std::string caretLine(const std::string& source, int column) {
  std::string out;
  for (int i = 1; i < column && static_cast<std::size_t>(i - 1) < source.size(); ++i) {
    out += source[i - 1] == '\t' ? '\t' : ' ';
  }
  out += '^';
  return out;
}

}  // namespace

std::string format(const Diagnostic& d) {
  std::string out = d.where.file;
  if (d.where.line > 0) {
    out += ':' + std::to_string(d.where.line);
    if (d.where.column > 0) {
      out += ':' + std::to_string(d.where.column);
    }
  }
  out += ": ";
  out += severityName(d.severity);
  out += ": ";
  out += d.message;
  out += '\n';
  if (!d.sourceLine.empty() && d.where.line > 0) {
    out += "  " + d.sourceLine + '\n';
    if (d.where.column > 0) {
      out += "  " + caretLine(d.sourceLine, d.where.column) + '\n';
    }
  }
  return out;
}

std::string format(const Diagnostics& ds) {
  std::string out;
  for (const auto& d : ds.items()) {
    out += format(d);
  }
  return out;
}

}  // namespace smtpgate::rules
