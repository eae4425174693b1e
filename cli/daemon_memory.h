#pragma once
/// How `smtpgate proxy` and `smtpgate milter` ask glibc's malloc to manage
/// the memory of the messages they hold.
///
/// A message passes through a few buffers of its own size (the framed DATA,
/// the Message's copy, the decoded body). With glibc's defaults each of them
/// is fresh memory: allocations above the mmap threshold (128 KiB, adapted
/// upwards only after a big free) are mmap()ed and unmapped again, and
/// whatever is freed at the top of an arena beyond the trim threshold goes
/// back to the kernel. Each message then page-faults its buffers in again,
/// which at 100 KB messages cost more than copying them. `keepMessageMemory()`
/// keeps heap memory for messages up to a few MiB in the arenas instead:
/// freed memory is reused by the next message, and an idle server keeps at
/// most the trim threshold per arena of it.

namespace smtpgate::cli {

/// Call once at daemon start, before the server threads exist.
void keepMessageMemory();

}  // namespace smtpgate::cli
