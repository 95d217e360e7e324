// The headers that most test files include and that take most of their parse time, compiled
// once per build and reused by every test executable (tests/CMakeLists.txt,
// STARLING_TEST_PCH): GoogleTest in 101 test files, nlohmann::json in 23. Reused, they
// take 1.1 to 1.5 s less of a test file's compile under TSan and ASan (docs/testing.md,
// "Measured time"). Only what no test could want to go without: a test still includes
// what it uses itself, and -DSTARLING_TEST_PCH=OFF builds the tests without this header.
#pragma once

// CAF's test DSL has a FAIL of its own (tests/support/caf_test.hpp): GoogleTest's is
// GTEST_FAIL() in every test file.
#define GTEST_DONT_DEFINE_FAIL 1
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
