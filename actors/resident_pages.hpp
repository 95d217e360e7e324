// The pages of code and read-only data the agent used to start. Once it is ready, most of
// the binary's and the shared libraries' pages it touched while starting (configuration,
// certificates, OpenSSL's and CAF's set-up, the dynamic linker's tables) are never read
// again, yet stay mapped: on this kernel every page run maps up to 64 KiB of its file around
// it, and they count in the agent's RSS for its whole life. They are clean copies of files,
// so the agent can hand them back (madvise MADV_DONTNEED): the kernel maps again, from the
// page cache, any page the agent reads later. Only mappings that hold nothing but file
// pages qualify: a page the process wrote (relocated tables, a debugger's breakpoint) lives
// nowhere else and is never dropped
// (docs/decisions/0023-hand-back-start-up-pages.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace starling::actors {

/// One mapping whose resident pages are all clean copies of a file.
struct clean_file_mapping {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  std::size_t resident_kib = 0;
};

/// The mappings in `smaps` (the text of /proc/PID/smaps) that can be handed back: private,
/// readable and not writable, backed by a file (a path), with pages resident, none of them
/// anonymous (copied on write) and none locked. A mapping whose lines do not parse is left
/// out.
[[nodiscard]] std::vector<clean_file_mapping> clean_file_mappings(std::string_view smaps);

struct released_pages {
  std::size_t mappings = 0; ///< mappings handed back
  std::size_t kib = 0;      ///< their resident KiB before
  std::string error;        ///< why nothing or not all was handed back; empty when all was
};

/// Hands back the resident pages of this process's clean file mappings
/// (clean_file_mappings of /proc/self/smaps). The process keeps running the same: a page it
/// reads again is mapped again from the page cache (a minor fault).
[[nodiscard]] released_pages release_clean_file_pages();

} // namespace starling::actors
