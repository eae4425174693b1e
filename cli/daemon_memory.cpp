#include "cli/daemon_memory.h"

#include <malloc.h>

namespace smtpgate::cli {

namespace {

// Buffers for messages held in memory (the proxy's message_memory_limit is
// 1 MiB by default; bigger ones go to a temporary file) stay below this and
// come from the heap. Setting it also ends glibc's dynamic adjustment.
constexpr int kMmapThreshold = 4 << 20;
// Free memory kept at the top of an arena before it goes back to the kernel.
constexpr int kTrimThreshold = 16 << 20;

}  // namespace

void keepMessageMemory() {
  ::mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
  ::mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
}

}  // namespace smtpgate::cli
