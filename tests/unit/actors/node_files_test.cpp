// The data directory: created 0700, a wider one tightened, the lock.
#include <filesystem>

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "actors/admin_server.hpp"
#include "actors/errc.hpp"
#include "actors/node_files.hpp"
#include "tests/support/file_modes.hpp"
#include "tests/support/process.hpp"

namespace starling::actors {
namespace {

namespace fs = std::filesystem;
using testing::mode_of;
using testing::temp_dir;
using testing::umask_scope;

TEST(node_files, a_new_data_dir_and_its_new_parents_are_0700) {
  // Issue 13: data dirs were created 0755 (fs::create_directories under the umask).
  temp_dir tmp{"starling-node-files"};
  umask_scope mask{022};
  auto dir = tmp.path() / "starling-data" / "node-a";
  auto lock = data_dir_lock::acquire(dir);
  ASSERT_TRUE(lock) << message_of(lock.error());
  EXPECT_EQ(mode_of(dir), 0700u);
  EXPECT_EQ(mode_of(tmp.path() / "starling-data"), 0700u);
}

TEST(node_files, an_existing_wider_data_dir_of_ours_is_tightened_and_reported) {
  temp_dir tmp{"starling-node-files"};
  auto dir = tmp.path() / "data";
  fs::create_directory(dir);
  fs::permissions(dir, fs::perms(0755));
  auto report = prepare_data_dir(dir);
  ASSERT_TRUE(report) << message_of(report.error());
  EXPECT_FALSE(report->created);
  ASSERT_TRUE(report->wider_mode);
  EXPECT_EQ(*report->wider_mode, 0755u);
  EXPECT_FALSE(report->foreign_owner);
  EXPECT_EQ(mode_of(dir), 0700u);
  // Now private: nothing to report.
  report = prepare_data_dir(dir);
  ASSERT_TRUE(report);
  EXPECT_FALSE(report->wider_mode);
  // The lock tightens too (it is what the agent calls at start).
  fs::permissions(dir, fs::perms(0750));
  auto lock = data_dir_lock::acquire(dir);
  ASSERT_TRUE(lock) << message_of(lock.error());
  EXPECT_EQ(mode_of(dir), 0700u);
}

TEST(node_files, a_file_in_place_of_the_data_dir_is_an_error_naming_it) {
  temp_dir tmp{"starling-node-files"};
  auto file = tmp.path() / "data";
  ASSERT_FALSE(write_file_atomic(file, "x"));
  auto report = prepare_data_dir(file);
  ASSERT_FALSE(report);
  EXPECT_NE(message_of(report.error()).find(file.string()), std::string::npos)
      << message_of(report.error());
  auto lock = data_dir_lock::acquire(file);
  EXPECT_FALSE(lock);
}

TEST(node_files, the_admin_credential_is_private_and_withdrawn_only_if_still_ours) {
  // Issue 13, finding 6: the credential that guards the admin port's mutating commands.
  temp_dir tmp{"starling-node-files"};
  umask_scope permissive{0};
  const auto data = tmp.path() / "data";
  fs::create_directories(data);
  const auto runtime = tmp.path() / "run" / "starling";
  auto first = make_admin_credential();
  auto second = make_admin_credential();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->size(), 64u);
  EXPECT_NE(*first, *second);
  auto copy = publish_admin_credential(data, runtime.string(), 7947, *first);
  ASSERT_TRUE(copy) << message_of(copy.error());
  EXPECT_EQ(*copy, runtime / "admin-7947.cookie");
  EXPECT_EQ(mode_of(data / "admin.cookie"), 0600u);
  EXPECT_EQ(mode_of(*copy), 0600u);
  EXPECT_EQ(mode_of(runtime), 0700u);
  EXPECT_EQ(*read_admin_cookie(copy->string()), *first);
  // Another agent took the port since: its copy stays.
  fs::create_directories(tmp.path() / "other");
  ASSERT_TRUE(publish_admin_credential(tmp.path() / "other", runtime.string(), 7947, *second));
  withdraw_admin_credential(data, *copy, *first);
  EXPECT_TRUE(fs::exists(*copy));
  EXPECT_FALSE(fs::exists(data / "admin.cookie"));
  withdraw_admin_credential(tmp.path() / "other", *copy, *second);
  EXPECT_FALSE(fs::exists(*copy));
  // No runtime dir: the data dir copy only.
  auto none = publish_admin_credential(data, "", 7947, *first);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  EXPECT_TRUE(fs::exists(data / "admin.cookie"));
}

} // namespace
} // namespace starling::actors
