#pragma once
/// A scratch directory for the CLI tests, removed with its contents at the
/// end of the test.

#include <filesystem>
#include <string>

#include "tests/support/process.h"

namespace smtpgate::testing {

/// The support library's TempDir, plus write(): the CLI tests lay out
/// config trees (rules/main.rules next to smtpgate.toml) in one call.
class CliTempDir : public TempDir {
 public:
  explicit CliTempDir(const std::string& prefix = "smtpgate-cli-test") : TempDir(prefix) {}

  /// Writes `text` to `name` (directories made as needed); its path.
  std::filesystem::path write(const std::string& name, const std::string& text) const {
    std::filesystem::path p = std::filesystem::path(path()) / name;
    std::filesystem::create_directories(p.parent_path());
    writeFile(p.string(), text);
    return p;
  }
};

}  // namespace smtpgate::testing
