// File permission helpers for tests: a path's mode bits, and a umask set for a scope so that
// modes are checked under a permissive one too.
#pragma once

#include <filesystem>

#include <gtest/gtest.h>
#include <sys/stat.h>

namespace starling::testing {

/// The permission bits of `p` (not following a link); a test failure if it cannot be read.
inline unsigned mode_of(const std::filesystem::path& p) {
  struct ::stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return static_cast<unsigned>(st.st_mode & 07777);
}

/// Sets the umask for a scope.
class umask_scope {
public:
  explicit umask_scope(::mode_t mask) : old_(::umask(mask)) {}
  ~umask_scope() { ::umask(old_); }
  umask_scope(const umask_scope&) = delete;
  umask_scope& operator=(const umask_scope&) = delete;

private:
  ::mode_t old_;
};

} // namespace starling::testing
