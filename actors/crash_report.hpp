// What the agent writes to stderr when it dies of a bug: the signal (SIGSEGV, SIGBUS,
// SIGILL, SIGFPE, SIGABRT) or std::terminate (an uncaught exception, a pure virtual call),
// then the stack as return addresses, each with its object file and offset, which
// `addr2line -f -C -e <binary> <offset>` turns into functions and lines with a build of
// the same commit. Envoy and HAProxy print a backtrace the same way; without it a crash
// in a CI run or on an operator's node shows only "pure virtual method called".
//
// Then the process dies of the same cause as before (the default action of the signal: a
// core dump where the system keeps them), so supervisors and tests see the same exit.
#pragma once

namespace starling::actors {

/// Installs the handlers (on an alternate signal stack for the calling thread, so that its
/// stack overflow is also reported). Once per process, before threads start; idempotent.
/// Does nothing in a build with AddressSanitizer or ThreadSanitizer, whose reports say more.
void install_crash_report();

/// False in a sanitizer build, where install_crash_report() does nothing.
[[nodiscard]] bool crash_report_available() noexcept;

} // namespace starling::actors
