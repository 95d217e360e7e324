// CAF's deterministic test coordinator inside GoogleTest (CAF-NOTES.md): include this
// instead of <caf/test/dsl.hpp>. CAF's CHECK/REQUIRE macros become GoogleTest assertions;
// a failed REQUIRE or FAIL records a failure and throws to leave the test body.
// Exactly one translation unit per test binary defines CAF_TEST_NO_MAIN and includes
// <caf/test/unit_test_impl.hpp> (see tests/unit/actors/membership_actor_test.cpp).
#pragma once

#define GTEST_DONT_DEFINE_FAIL 1
#include <stdexcept>

#include <caf/test/unit_test.hpp>
#include <gtest/gtest.h>

namespace starling::testing {
/// Thrown by CAF_REQUIRE / CAF_FAIL after recording the failure.
struct caf_require_failed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Leaves the test body after a failed CAF_REQUIRE / CAF_FAIL. A function rather than a
/// throw expression in the macro: CAF's DSL expands the macros inside noexcept destructors,
/// where g++ rejects a literal throw (-Werror=terminate); reaching it there terminates,
/// which is what CAF itself does on such a failure.
[[noreturn]] inline void leave_failed_test(const char* what) { throw caf_require_failed{what}; }
} // namespace starling::testing

#undef CAF_CHECK
#undef CAF_CHECK_EQUAL
#undef CAF_CHECK_NOT_EQUAL
#undef CAF_REQUIRE
#undef CAF_REQUIRE_EQUAL
#undef CAF_REQUIRE_NOT_EQUAL
#undef CAF_FAIL
#undef CAF_MESSAGE

#define CAF_CHECK(...) EXPECT_TRUE(static_cast<bool>(__VA_ARGS__))
#define CAF_CHECK_EQUAL(x, y) EXPECT_EQ(x, y)
#define CAF_CHECK_NOT_EQUAL(x, y) EXPECT_NE(x, y)
#define CAF_FAIL(msg)                                                                              \
  do {                                                                                             \
    ADD_FAILURE_AT(__FILE__, __LINE__) << msg;                                                     \
    ::starling::testing::leave_failed_test("CAF_FAIL");                                            \
  } while (false)
#define CAF_REQUIRE(...)                                                                           \
  do {                                                                                             \
    if (!static_cast<bool>(__VA_ARGS__))                                                           \
      CAF_FAIL("requirement failed: " #__VA_ARGS__);                                               \
  } while (false)
#define CAF_REQUIRE_EQUAL(x, y) CAF_REQUIRE((x) == (y))
#define CAF_REQUIRE_NOT_EQUAL(x, y) CAF_REQUIRE((x) != (y))
#define CAF_MESSAGE(msg)                                                                           \
  do {                                                                                             \
  } while (false)

#include <caf/test/dsl.hpp>
