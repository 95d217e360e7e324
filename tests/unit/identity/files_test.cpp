#include <filesystem>

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "identity/errc.hpp"
#include "identity/files.hpp"
#include "tests/support/file_modes.hpp"
#include "tests/support/process.hpp"

namespace starling::identity {
namespace {

namespace fs = std::filesystem;
using testing::mode_of;
using testing::read_text;
using testing::temp_dir;
using testing::umask_scope;

TEST(identity_files, private_files_are_0600_whatever_the_umask) {
  temp_dir dir{"starling-files"};
  umask_scope mask{0};
  auto file = dir.path() / "root.key";
  ASSERT_FALSE(write_private_file(file, "secret\n"));
  EXPECT_EQ(mode_of(file), 0600u);
  EXPECT_EQ(read_text(file), "secret\n");
  auto pub = dir.path() / "root.crt";
  ASSERT_FALSE(write_public_file(pub, "cert\n"));
  EXPECT_EQ(mode_of(pub), 0644u);
}

TEST(identity_files, existing_files_are_never_overwritten) {
  temp_dir dir{"starling-files"};
  auto file = dir.path() / "root.key";
  ASSERT_FALSE(write_private_file(file, "first"));
  auto err = write_private_file(file, "second");
  EXPECT_TRUE(is(err, errc::already_exists)) << render(err);
  EXPECT_NE(render(err).find(file.string()), std::string::npos) << render(err);
  EXPECT_EQ(read_text(file), "first");
  EXPECT_TRUE(is(write_public_file(file, "second"), errc::already_exists));
  // A symbolic link in place of the file is not followed.
  auto target = dir.path() / "elsewhere";
  fs::create_symlink(target, dir.path() / "link.key");
  EXPECT_TRUE(is(write_private_file(dir.path() / "link.key", "x"), errc::already_exists));
  EXPECT_FALSE(fs::exists(target));
  // A missing directory is an I/O failure naming the file.
  auto missing = dir.path() / "no" / "such.key";
  err = write_private_file(missing, "x");
  EXPECT_TRUE(is(err, errc::io_failure)) << render(err);
  EXPECT_NE(render(err).find(missing.string()), std::string::npos);
}

TEST(identity_files, replace_is_atomic_and_leaves_no_temporary_file) {
  temp_dir dir{"starling-files"};
  auto file = dir.path() / "node.crt";
  ASSERT_FALSE(replace_file(file, "v1", public_file_mode));
  EXPECT_EQ(mode_of(file), 0644u);
  ASSERT_FALSE(write_private_file(dir.path() / "node.key", "k1"));
  ASSERT_FALSE(replace_file(dir.path() / "node.key", "k2"));
  EXPECT_EQ(read_text(dir.path() / "node.key"), "k2");
  EXPECT_EQ(mode_of(dir.path() / "node.key"), 0600u);
  ASSERT_FALSE(replace_file(file, "v2", public_file_mode));
  EXPECT_EQ(read_text(file), "v2");
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path()))
    ++entries;
  EXPECT_EQ(entries, 2u);
  EXPECT_TRUE(is(replace_file(dir.path() / "no" / "x", "v"), errc::io_failure));
}

TEST(identity_files, reads_are_bounded) {
  temp_dir dir{"starling-files"};
  auto file = dir.path() / "big";
  ASSERT_FALSE(write_public_file(file, std::string(1000, 'x')));
  auto exact = read_file(file, 1000);
  ASSERT_TRUE(exact);
  EXPECT_EQ(*exact, std::string(1000, 'x'));
  auto big = read_file(file, 999);
  ASSERT_FALSE(big);
  EXPECT_TRUE(is(big.error(), errc::io_failure));
  EXPECT_NE(render(big.error()).find("larger than 999"), std::string::npos);
  auto missing = read_file(dir.path() / "missing");
  ASSERT_FALSE(missing);
  EXPECT_NE(render(missing.error()).find("missing"), std::string::npos);
  EXPECT_TRUE(is(read_file(dir.path()).error(), errc::io_failure)) << "a directory";
  ASSERT_FALSE(write_public_file(dir.path() / "empty", ""));
  auto empty = read_file(dir.path() / "empty");
  ASSERT_TRUE(empty);
  EXPECT_EQ(*empty, "");
}

TEST(identity_files, directories_are_created_0700) {
  temp_dir dir{"starling-files"};
  umask_scope mask{0};
  auto deep = dir.path() / "a" / "b" / "c";
  ASSERT_FALSE(create_private_directories(deep));
  EXPECT_EQ(mode_of(dir.path() / "a"), 0700u);
  EXPECT_EQ(mode_of(deep), 0700u);
  ASSERT_FALSE(create_private_directories(deep)) << "existing: fine";
  // An existing directory keeps its mode.
  fs::permissions(dir.path() / "a", fs::perms(0755));
  ASSERT_FALSE(create_private_directories(dir.path() / "a" / "d"));
  EXPECT_EQ(mode_of(dir.path() / "a"), 0755u);
  ASSERT_FALSE(write_public_file(dir.path() / "file", ""));
  auto err = create_private_directories(dir.path() / "file" / "x");
  EXPECT_TRUE(is(err, errc::io_failure)) << render(err);
}

} // namespace
} // namespace starling::identity
