#include "proxy/spill_sink.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

namespace smtpgate::proxy {

SpillSink::SpillSink(std::size_t memoryLimit, std::string directory)
    : memoryLimit_(memoryLimit), directory_(std::move(directory)) {}

SpillSink::~SpillSink() {
  if (map_ != nullptr) {
    ::munmap(map_, size_);
  }
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

bool SpillSink::writeAll(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool SpillSink::spill() {
  fd_ = ::open(directory_.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd_ < 0) {
    // Filesystems without O_TMPFILE: a named file, unlinked at once.
    std::string path = directory_ + "/smtpgate-XXXXXX";
    fd_ = ::mkostemp(path.data(), O_CLOEXEC);
    if (fd_ >= 0) {
      ::unlink(path.c_str());
    }
  }
  if (fd_ < 0 || !writeAll(memory_)) {
    return false;
  }
  memory_.clear();
  memory_.shrink_to_fit();
  return true;
}

void SpillSink::append(std::string_view bytes) {
  if (failed_ || bytes.empty()) {
    return;
  }
  size_ += bytes.size();
  if (fd_ < 0 && memory_.size() + bytes.size() <= memoryLimit_) {
    memory_.append(bytes);
    return;
  }
  if (fd_ < 0) {
    memory_.append(bytes);
    failed_ = !spill();
    return;
  }
  failed_ = !writeAll(bytes);
}

std::string_view SpillSink::view() {
  if (failed_) {
    return {};
  }
  if (fd_ < 0) {
    return memory_;
  }
  if (map_ == nullptr && size_ > 0) {
    void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
    if (m == MAP_FAILED) {
      failed_ = true;
      return {};
    }
    map_ = m;
  }
  return {static_cast<const char*>(map_), size_};
}

}  // namespace smtpgate::proxy
