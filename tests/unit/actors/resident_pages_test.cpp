#include <memory>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include "actors/resident_pages.hpp"
#include "identity/files.hpp"

using starling::actors::clean_file_mapping;
using starling::actors::clean_file_mappings;
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

TEST(resident_pages, this_process_keeps_running_the_same_after_handing_its_pages_back) {
  const auto before = clean_file_mappings(read_smaps());
  ASSERT_FALSE(before.empty()) << "this test binary maps its code from a file";
  const auto released = release_clean_file_pages();
  EXPECT_TRUE(released.error.empty()) << released.error;
  EXPECT_GT(released.mappings, 0u);
  EXPECT_GT(released.kib, 0u);
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
