// Force-included (-include) first in every translation unit of a core library (see
// cmake/StarlingCore.cmake and docs/decisions/0016-core-purity.md): it makes the identifiers
// only adapters may use unusable, so a core file that includes Asio, CAF's io module or the
// socket API fails to compile. Clock reads (std::chrono::*_clock::now(), time()) cannot be
// poisoned: their names are needed for types and parameters. They are caught after the build
// by the symbol check (cmake/check_core_symbols.cmake).
//
// `#pragma GCC poison` rejects every later use of a name, in system headers too. So the C
// headers that declare the poisoned clock functions are included first (their include guards
// make a later #include of them a no-op), and only names that no header a core needs
// (standard library, CAF core, protobuf, OpenSSL) spells are poisoned. g++ and clang both
// implement the pragma.
#pragma once

#include <ctime>

#include <sys/time.h>
#include <time.h>

// Asio (standalone): its namespace and version macro.
#pragma GCC poison asio ASIO_VERSION
// CAF's io module (caf/io/fwd.hpp names these; CAF core never does).
#pragma GCC poison abstract_broker scribe doorman datagram_servant basp_broker
// The socket API (sys/socket.h, netdb.h).
#pragma GCC poison sockaddr getaddrinfo recvfrom sendto recvmsg sendmsg
// Reading the wall or monotonic clock through the C API.
#pragma GCC poison gettimeofday clock_gettime timespec_get
