# Fails when a core library (or object file) references what only adapters may use:
# a clock read, Asio, CAF's io module, the socket API or thread creation. Run after a core
# library is built (POST_BUILD, see StarlingCore.cmake) and by the purity tests:
#   cmake -DNM=<nm> -DFILE=<archive or object> -P check_core_symbols.cmake
# The compile-time guard (core_guard.hpp) catches includes; this catches calls whose names
# cannot be poisoned (std::chrono::system_clock::now() and friends, time()). On failure the
# file is removed, so that the next build checks it again.
if(NOT NM OR NOT FILE)
  message(FATAL_ERROR "usage: cmake -DNM=<nm> -DFILE=<archive> -P check_core_symbols.cmake")
endif()
execute_process(COMMAND ${NM} -C -u ${FILE} OUTPUT_VARIABLE undefined RESULT_VARIABLE rc
                ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "core purity: ${NM} failed on ${FILE}: ${err}")
endif()
execute_process(COMMAND ${NM} -C --defined-only ${FILE} OUTPUT_VARIABLE defined
                ERROR_QUIET)

set(found "")
string(REPLACE "\n" ";" lines "${undefined}")
foreach(line IN LISTS lines)
  string(STRIP "${line}" line)
  # "U name": undefined references. Exact C names, or C++ prefixes (demangled).
  if(NOT line MATCHES "^U (.+)$")
    continue()
  endif()
  set(sym "${CMAKE_MATCH_1}")
  if(sym MATCHES "^(time|gettimeofday|clock_gettime|timespec_get|clock|ftime|socket|connect|bind|listen|accept|accept4|send|sendto|sendmsg|recv|recvfrom|recvmsg|getaddrinfo|poll|epoll_create1|epoll_wait|pthread_create)$"
     OR sym MATCHES "_clock::now\\(\\)$"
     OR sym MATCHES "^caf::make_timestamp\\(\\)$"
     OR sym MATCHES "^std::thread::_M_start_thread"
     OR sym MATCHES "(^|[^A-Za-z0-9_])(asio|caf::io)::")
    list(APPEND found "${sym}")
  endif()
endforeach()
# Header-only Asio leaves defined (weak) symbols rather than undefined ones.
string(REPLACE "\n" ";" lines "${defined}")
foreach(line IN LISTS lines)
  if(line MATCHES "^[0-9a-fA-F]* *[A-Za-z] (.*(^|[^A-Za-z0-9_])(asio|caf::io)::.*)$")
    list(APPEND found "${CMAKE_MATCH_1}")
  endif()
endforeach()

if(found)
  list(REMOVE_DUPLICATES found)
  list(JOIN found "\n  " shown)
  # One unwrapped line per symbol (message() wraps its text), for people and for the
  # purity tests' expected output.
  foreach(sym IN LISTS found)
    execute_process(COMMAND ${CMAKE_COMMAND} -E echo "core purity violation: ${sym}")
  endforeach()
  file(REMOVE ${FILE})
  message(FATAL_ERROR "core purity: ${FILE} uses what only adapters may use "
                      "(docs/decisions/0016-core-purity.md):\n  ${shown}\n"
                      "Pass `now` in, or move the code to the module's adapter library.")
endif()
