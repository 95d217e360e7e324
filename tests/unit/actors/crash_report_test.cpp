// The agent's crash report (actors/crash_report.hpp): a process that dies of a bug writes
// the cause and its stack to stderr, then dies of the same cause. Death tests: each case
// runs in a child process.
#include <csignal>
#include <exception>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

#include "actors/crash_report.hpp"

namespace {

using starling::actors::crash_report_available;
using starling::actors::install_crash_report;

TEST(crash_report, a_terminate_without_an_exception_writes_its_stack_then_aborts) {
  if (!crash_report_available())
    GTEST_SKIP() << "a sanitizer build reports crashes itself";
  EXPECT_EXIT(
      {
        install_crash_report();
        std::terminate();
      },
      ::testing::KilledBySignal(SIGABRT),
      "std::terminate called \\(no exception.*stack \\(addr2line.*\\(\\+0x[0-9a-f]+\\)");
}

TEST(crash_report, an_uncaught_exception_is_named_with_its_message) {
  if (!crash_report_available())
    GTEST_SKIP() << "a sanitizer build reports crashes itself";
  EXPECT_EXIT(
      {
        install_crash_report();
        std::thread{[] { throw std::runtime_error("the frobnicator broke"); }}.join();
      },
      ::testing::KilledBySignal(SIGABRT),
      "after an uncaught exception: the frobnicator broke\nstack");
}

TEST(crash_report, a_fatal_signal_is_named_and_kept_as_the_cause_of_death) {
  if (!crash_report_available())
    GTEST_SKIP() << "a sanitizer build reports crashes itself";
  EXPECT_EXIT(
      {
        install_crash_report();
        std::raise(SIGSEGV);
      },
      ::testing::KilledBySignal(SIGSEGV), "fatal signal SIGSEGV\nstack");
}

} // namespace
