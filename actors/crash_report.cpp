// actors/crash_report.hpp: the fatal-signal and terminate handlers.
//
// Inside a signal handler only async-signal-safe calls: write(2), backtrace() (loaded
// once beforehand: its first call may allocate), backtrace_symbols_fd() (writes without
// allocating), sigaction and raise.
#include "actors/crash_report.hpp"

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <exception>

#include <execinfo.h>
#include <signal.h>
#include <unistd.h>

namespace starling::actors {

namespace {

// The sanitizers have their own reports of these (with the access that failed): theirs win.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool under_sanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool under_sanitizer = true;
#else
constexpr bool under_sanitizer = false;
#endif
#else
constexpr bool under_sanitizer = false;
#endif

constexpr std::array fatal_signals{SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
constexpr int max_frames = 64;

/// Set by the first report: a crash inside the report (or a second thread's crash at the
/// same time) goes straight to the default action.
std::atomic<bool> reporting{false};

void say(const char* text) {
  std::size_t left = std::strlen(text);
  while (left > 0) {
    const auto n = ::write(STDERR_FILENO, text, left);
    if (n <= 0)
      return;
    text += n;
    left -= static_cast<std::size_t>(n);
  }
}

void write_stack() {
  std::array<void*, max_frames> frames{};
  const int n = ::backtrace(frames.data(), max_frames);
  say("stack (addr2line -f -C -e <binary> <offset> with a build of the same commit):\n");
  ::backtrace_symbols_fd(frames.data(), n, STDERR_FILENO);
}

const char* name_of(int sig) {
  switch (sig) {
  case SIGSEGV:
    return "SIGSEGV";
  case SIGBUS:
    return "SIGBUS";
  case SIGILL:
    return "SIGILL";
  case SIGFPE:
    return "SIGFPE";
  case SIGABRT:
    return "SIGABRT";
  default:
    return "a fatal signal";
  }
}

/// The default action of `sig`, taken now (the handler was installed with SA_RESETHAND).
void die_of(int sig) {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(sig, &dfl, nullptr);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  ::raise(sig);
  ::_exit(128 + sig); // not reached: the default action of every fatal signal ends it
}

void on_fatal_signal(int sig) {
  if (!reporting.exchange(true)) {
    say("starling: fatal signal ");
    say(name_of(sig));
    say("\n");
    write_stack();
  }
  die_of(sig);
}

void on_terminate() {
  if (!reporting.exchange(true)) {
    say("starling: std::terminate called");
    if (auto e = std::current_exception()) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        say(" after an uncaught exception: ");
        say(ex.what());
      } catch (...) {
        say(" after an uncaught exception of an unknown type");
      }
    } else {
      say(" (no exception: a pure virtual call, a noexcept violation, a joinable thread "
          "destroyed...)");
    }
    say("\n");
    write_stack();
  }
  die_of(SIGABRT);
}

} // namespace

bool crash_report_available() noexcept { return !under_sanitizer; }

void install_crash_report() {
  static std::atomic<bool> installed{false};
  if (under_sanitizer || installed.exchange(true))
    return;
  // The first backtrace() loads libgcc's unwinder, which allocates: not in a handler.
  std::array<void*, 2> warm{};
  (void)::backtrace(warm.data(), static_cast<int>(warm.size()));
  // An alternate stack, so that a stack overflow is reported too (this thread's; other
  // threads' overflows take the default action without a report).
  static std::array<char, 64 * 1024> alt_stack{};
  stack_t ss{};
  ss.ss_sp = alt_stack.data();
  ss.ss_size = alt_stack.size();
  (void)::sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_handler = &on_fatal_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
  for (int sig : fatal_signals)
    (void)::sigaction(sig, &sa, nullptr);
  std::set_terminate(&on_terminate);
}

} // namespace starling::actors
