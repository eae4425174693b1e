#pragma once
/// SpillSink — holds a message during DATA: in memory up to a limit, then in
/// an unlinked temporary file, so a thousand sessions each receiving a 50 MB
/// message do not need 50 GB of RAM. `view()` gives the whole message as one
/// contiguous string_view (the memory buffer, or an mmap of the file), which
/// the Policy parses and the backend writer stuffs in chunks.
///
/// The file is created with O_TMPFILE (or mkstemp + unlink) in `directory`,
/// mode 0600, and disappears with the sink whatever happens to the process.
/// A write error (disk full) makes `failed()` true; the session then answers
/// 452 4.3.1 and delivers nothing. Used on one strand; not thread-safe.

#include <cstddef>
#include <string>
#include <string_view>

#include "proxy/data_framer.h"

namespace smtpgate::proxy {

class SpillSink final : public MessageSink {
 public:
  SpillSink(std::size_t memoryLimit, std::string directory);
  ~SpillSink() override;
  SpillSink(const SpillSink&) = delete;
  SpillSink& operator=(const SpillSink&) = delete;

  void append(std::string_view bytes) override;
  /// The whole message; valid until the sink is destroyed. Empty on failure.
  std::string_view view();
  [[nodiscard]] bool failed() const { return failed_; }
  [[nodiscard]] bool spilled() const { return fd_ >= 0; }
  [[nodiscard]] std::size_t size() const { return size_; }

 private:
  bool spill();
  bool writeAll(std::string_view bytes);

  std::size_t memoryLimit_;
  std::string directory_;
  std::string memory_;
  int fd_ = -1;
  void* map_ = nullptr;
  std::size_t size_ = 0;
  bool failed_ = false;
};

}  // namespace smtpgate::proxy
