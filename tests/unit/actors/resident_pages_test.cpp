#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <unistd.h>

#include "actors/resident_pages.hpp"
#include "identity/files.hpp"

using starling::actors::clean_file_mapping;
using starling::actors::clean_file_mappings;
using starling::actors::inside;
using starling::actors::never_written_pages;
using starling::actors::page_range;
using starling::actors::release_clean_file_pages;

namespace {

// One mapping of /proc/PID/smaps, as the kernel writes it (the fields this code reads and a
// few it skips).
std::string mapping(std::string_view header, std::size_t rss, std::size_t anonymous,
                    std::size_t locked = 0) {
  std::ostringstream out;
  out << header << "\n"
      << "Size:               2840 kB\n"
      << "KernelPageSize:        4 kB\n"
      << "Rss:                " << rss << " kB\n"
      << "Pss:                " << rss / 2 << " kB\n"
      << "Anonymous:          " << anonymous << " kB\n"
      << "Locked:             " << locked << " kB\n"
      << "VmFlags: rd ex mr mw me sd \n";
  return out.str();
}

std::string read_smaps() {
  auto text = starling::identity::read_file("/proc/self/smaps", 16u << 20);
  return text ? *text : std::string{};
}

struct base {
  virtual ~base() = default;
  virtual int value() const = 0;
};
struct derived final : base {
  int value() const override { return 42; }
};

} // namespace

TEST(resident_pages, only_private_read_only_file_mappings_without_written_pages_qualify) {
  const std::string smaps =
      // the binary's code: qualifies
      mapping("55cb53fb9000-55cb5427f000 r-xp 0005a000 fe:00 5309908    /usr/bin/starling", 2644,
              0) +
      // a library's relocated tables after RELRO: read-only now, but written pages
      mapping("7f681f542000-7f681f5a4000 r--p 00341000 fe:00 332870     /usr/lib/libcrypto.so.3",
              392, 392) +
      // a library's read-only data: qualifies
      mapping("7f681f2c5000-7f681f3c5000 r--p 00000000 fe:00 332870     /usr/lib/libcrypto.so.3",
              788, 0) +
      // writable data, a shared mapping, anonymous memory, the vDSO, a stack
      mapping("7f681f5a4000-7f681f5a7000 rw-p 003a3000 fe:00 332870     /usr/lib/libcrypto.so.3",
              12, 12) +
      mapping("7f44d649000-7f44d64d000 r--s 00000000 00:0f 1234       /dev/shm/x", 16, 0) +
      mapping("7fb424000000-7fb424021000 r--p 00000000 00:00 0 ", 24, 0) +
      mapping("7f44d658000-7f44d65a000 r-xp 00000000 00:00 0          [vdso]", 4, 0) +
      mapping("7ffe20cbb000-7ffe20cdc000 r--p 00000000 00:00 0          [stack]", 36, 0) +
      // locked pages, and a mapping with nothing resident
      mapping("7f0000000000-7f0000010000 r-xp 00000000 fe:00 77         /usr/lib/liblocked.so", 64,
              0, 64) +
      // the last one, no newline after it
      mapping("7f1000000000-7f1000010000 r-xp 00000000 fe:00 78         /usr/lib/libidle.so", 0,
              0) +
      "7f2000000000-7f2000004000 r--p 00000000 fe:00 79         /usr/lib/libz.so\n"
      "Rss:                   4 kB\nAnonymous:             0 kB\nLocked:                0 kB";
  const auto got = clean_file_mappings(smaps);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].begin, 0x55cb53fb9000u);
  EXPECT_EQ(got[0].end, 0x55cb5427f000u);
  EXPECT_EQ(got[0].resident_kib, 2644u);
  EXPECT_EQ(got[1].begin, 0x7f681f2c5000u);
  EXPECT_EQ(got[1].resident_kib, 788u);
  EXPECT_EQ(got[2].begin, 0x7f2000000000u);
  EXPECT_EQ(got[2].resident_kib, 4u);
}

TEST(resident_pages, a_mapping_whose_lines_do_not_parse_is_left_out) {
  // Without the anonymous count nothing says the pages are clean.
  const std::string no_anonymous =
      "55cb53fb9000-55cb5427f000 r-xp 0005a000 fe:00 5309908 /usr/bin/starling\n"
      "Rss:                2644 kB\nLocked:                0 kB\n";
  EXPECT_TRUE(clean_file_mappings(no_anonymous).empty());
  // Addresses that are not hex, reversed, or missing; a count that is not a number.
  EXPECT_TRUE(
      clean_file_mappings(mapping("55cb53fb9000-55cb5427fzzz r-xp 0 fe:00 1 /a", 4, 0)).empty());
  EXPECT_TRUE(
      clean_file_mappings(mapping("55cb5427f000-55cb53fb9000 r-xp 0 fe:00 1 /a", 4, 0)).empty());
  EXPECT_TRUE(clean_file_mappings(mapping("55cb53fb9000 r-xp 0 fe:00 1 /a", 4, 0)).empty());
  EXPECT_TRUE(clean_file_mappings("55cb53fb9000-55cb5427f000 r-xp 0 fe:00 1 /a\n"
                                  "Rss:   12x kB\nAnonymous: 0 kB\nLocked: 0 kB\n")
                  .empty());
  EXPECT_TRUE(clean_file_mappings("").empty());
  EXPECT_TRUE(clean_file_mappings("garbage\n\n\nRss: 4 kB\n").empty());
}

ElfW(Phdr) segment(ElfW(Word) type, ElfW(Word) flags, ElfW(Addr) vaddr, ElfW(Xword) filesz,
                   ElfW(Xword) memsz) {
  ElfW(Phdr) ph{};
  ph.p_type = type;
  ph.p_flags = flags;
  ph.p_vaddr = vaddr;
  ph.p_offset = vaddr;
  ph.p_filesz = filesz;
  ph.p_memsz = memsz;
  return ph;
}

TEST(resident_pages, only_whole_pages_of_segments_never_written_are_handed_back) {
  constexpr std::uintptr_t base = 0x7f0000000000;
  const ElfW(Phdr) phdrs[] = {
      segment(PT_PHDR, PF_R, 0x40, 0x2a0, 0x2a0),
      // headers, symbols, relocations: read-only
      segment(PT_LOAD, PF_R, 0x0, 0x3200, 0x3200),
      // code, starting mid-page
      segment(PT_LOAD, PF_R | PF_X, 0x4100, 0x8000, 0x8000),
      // read-only data whose last page it shares with the writable data
      segment(PT_LOAD, PF_R, 0xd000, 0x2800, 0x2800),
      segment(PT_LOAD, PF_R | PF_W, 0xf800, 0x400, 0x1000),
      // a read-only segment longer in memory than in its file: the loader writes its tail
      segment(PT_LOAD, PF_R, 0x20000, 0x2100, 0x5000),
      // RELRO inside a read-only segment (not what linkers make; still never handed back)
      segment(PT_LOAD, PF_R, 0x30000, 0x4000, 0x4000),
      segment(PT_GNU_RELRO, PF_R, 0x31000, 0x800, 0x800),
      // not loaded: the dynamic section's header, a stack note
      segment(PT_DYNAMIC, PF_R | PF_W, 0xf800, 0x200, 0x200),
      segment(PT_GNU_STACK, PF_R | PF_W, 0, 0, 0),
  };
  const auto got = never_written_pages(base, phdrs, std::size(phdrs), false, 0x1000);
  const std::vector<page_range> want = {
      {base + 0x0, base + 0x4000},      // 0x3200 rounded up: the file's own bytes
      {base + 0x4000, base + 0xd000},   // the code, its first page whole
      {base + 0xd000, base + 0xf000},   // not the page shared with the writable data
      {base + 0x20000, base + 0x22000}, // the file part's whole pages
      {base + 0x30000, base + 0x31000}, // around the RELRO part
      {base + 0x32000, base + 0x34000},
  };
  EXPECT_EQ(got, want);
  // Text relocations: the dynamic linker wrote the code. A page size that is no power of two.
  EXPECT_TRUE(never_written_pages(base, phdrs, std::size(phdrs), true, 0x1000).empty());
  EXPECT_TRUE(never_written_pages(base, phdrs, std::size(phdrs), false, 3000).empty());
  EXPECT_TRUE(never_written_pages(base, phdrs, 0, false, 0x1000).empty());
}

TEST(resident_pages, only_the_parts_inside_clean_mappings_are_kept) {
  const std::vector<page_range> segments = {{0x1000, 0x5000}, {0x8000, 0x9000}, {0xa000, 0xc000}};
  const std::vector<clean_file_mapping> clean = {
      {0xb000, 0xd000, 8}, {0x0, 0x2000, 4}, {0x3000, 0x4000, 4}};
  const std::vector<page_range> want = {{0x1000, 0x2000}, {0x3000, 0x4000}, {0xb000, 0xc000}};
  EXPECT_EQ(inside(segments, clean), want);
  EXPECT_TRUE(inside(segments, {}).empty());
  EXPECT_TRUE(inside({}, clean).empty());
}

TEST(resident_pages, this_process_keeps_running_the_same_after_handing_its_pages_back) {
  const auto before = clean_file_mappings(read_smaps());
  ASSERT_FALSE(before.empty()) << "this test binary maps its code from a file";
  const auto released = release_clean_file_pages();
  EXPECT_TRUE(released.error.empty()) << released.error;
  EXPECT_GT(released.ranges, 0u);
  EXPECT_GT(released.file_kib_before, 0u);
  EXPECT_LT(released.file_kib_after, released.file_kib_before);
  // The relocated tables (a virtual call through a vtable, pointers to libraries'
  // functions) and the code of the binary and of a library still work.
  std::unique_ptr<base> object = std::make_unique<derived>();
  EXPECT_EQ(object->value(), 42);
  unsigned char digest[32];
  unsigned int size = 0;
  ASSERT_EQ(EVP_Digest("abc", 3, digest, &size, EVP_sha256(), nullptr), 1);
  ASSERT_EQ(size, 32u);
  EXPECT_EQ(digest[0], 0xba);
  EXPECT_EQ(digest[31], 0xad);
  // What was handed back is not resident until read again: the code this test runs now
  // is a small part of what was mapped.
  std::size_t resident_after = 0, resident_before = 0;
  for (const auto& m : before)
    resident_before += m.resident_kib;
  for (const auto& m : clean_file_mappings(read_smaps()))
    resident_after += m.resident_kib;
  EXPECT_LT(resident_after, resident_before);
}

TEST(resident_pages, memory_another_thread_maps_meanwhile_is_never_touched) {
  // Another thread maps a file, unmaps it and maps anonymous memory at the same place, over
  // and over, while this one hands pages back. A hand-back that trusted smaps' list would,
  // now and then, drop the anonymous memory that replaced the file (zeroing it); only
  // segments of loaded objects are ever handed back, and those stay mapped.
  const auto file =
      std::filesystem::temp_directory_path() / ("starling-resident-" + std::to_string(::getpid()));
  constexpr std::size_t size = 64 * 1024;
  {
    std::ofstream out(file, std::ios::binary);
    out << std::string(size, 'f');
  }
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> zeroed{0}, rounds{0};
  std::thread mapper([&] {
    for (int i = 0; i < 200000 && !stop.load(); ++i) {
      void* f = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (f == MAP_FAILED)
        break;
      volatile char sink = static_cast<const char*>(f)[0]; // resident, clean
      (void)sink;
      ::munmap(f, size);
      void* a = ::mmap(f, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (a == MAP_FAILED)
        break;
      std::memset(a, 0xab, size);
      for (int y = 0; y < 20; ++y) // long enough for a hand-back to come in between
        std::this_thread::yield();
      const auto* bytes = static_cast<const unsigned char*>(a);
      for (std::size_t k = 0; k < size; k += 4096)
        if (bytes[k] != 0xab) {
          ++zeroed;
          break;
        }
      ::munmap(a, size);
      ++rounds;
    }
  });
  // Bounded in count and in time (a sanitizer's smaps is long, each hand-back slow).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (int i = 0; i < 300 && std::chrono::steady_clock::now() < deadline; ++i) {
    const auto released = release_clean_file_pages();
    EXPECT_TRUE(released.error.empty()) << released.error;
  }
  stop = true;
  mapper.join();
  ::close(fd);
  std::filesystem::remove(file);
  EXPECT_GT(rounds.load(), 0u);
  EXPECT_EQ(zeroed.load(), 0u) << "of " << rounds.load() << " rounds";
}
