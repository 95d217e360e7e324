// The pages of code and read-only data the agent used to start. Once it is ready, most of
// the binary's and the shared libraries' pages it touched while starting (configuration,
// certificates, OpenSSL's and CAF's set-up, the dynamic linker's tables) are never read
// again, yet stay mapped: on this kernel every page run maps up to 64 KiB of its file around
// it, and they count in the agent's RSS for its whole life. They are clean copies of files,
// so the agent can hand them back (madvise MADV_DONTNEED): the kernel maps again, from the
// page cache, any page the agent reads later. Only the never-written segments of loaded
// objects qualify, and only inside mappings that hold nothing but file pages: a page the
// process wrote (relocated tables, a debugger's breakpoint) lives nowhere else and is never
// dropped, and memory some other thread maps meanwhile is never touched
// (docs/decisions/0023-hand-back-start-up-pages.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <link.h>

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

/// Pages [begin, end) of this process's address space.
struct page_range {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  bool operator==(const page_range&) const = default;
};

/// The whole pages of one loaded ELF object that the process never writes: those of its
/// PT_LOAD segments without PF_W, less any page shared with a writable segment or with its
/// PT_GNU_RELRO part (read-only once relocated, but written first). A segment longer in
/// memory than in its file (zero-filled by the loader) gives only its file's whole pages.
/// Nothing at all for an object with text relocations: the dynamic linker writes its code.
/// `base` is the object's load bias (dl_phdr_info::dlpi_addr); `page` a power of two.
[[nodiscard]] std::vector<page_range> never_written_pages(std::uintptr_t base,
                                                          const ElfW(Phdr) * phdrs,
                                                          std::size_t count, bool text_relocations,
                                                          std::size_t page);

/// The parts of `ranges` that lie inside one of `clean` (any order; the result sorted).
[[nodiscard]] std::vector<page_range> inside(const std::vector<page_range>& ranges,
                                             const std::vector<clean_file_mapping>& clean);

struct released_pages {
  std::size_t ranges = 0;          ///< ranges of pages handed back
  std::size_t file_kib_before = 0; ///< resident pages of files and shared memory (statm)
  std::size_t file_kib_after = 0;
  std::string error; ///< why nothing or not all was handed back; empty when all was
};

/// Hands back this process's resident pages that are clean copies of its program's and
/// libraries' files: the never-written pages of every loaded object (dl_iterate_phdr;
/// never the vDSO) that lie in a clean mapping of /proc/self/smaps. The loader's list is
/// held while it runs, so no library is loaded or unloaded meanwhile, and a range that
/// smaps listed but the process unmapped or mapped again since is never touched: only the
/// objects' own segments are. The process keeps running the same: a page it reads again is
/// mapped again from the page cache (a minor fault).
[[nodiscard]] released_pages release_clean_file_pages();

} // namespace starling::actors
