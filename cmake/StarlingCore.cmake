# Purity as a build property (docs/decisions/0016-core-purity.md). Each module's library is a
# core (state machines and algorithms: no Asio, no sockets, no CAF io, no clock reads) and
# adapters around it. starling_core_library(<target>) makes <target> a core:
# - every source is compiled with cmake/core_guard.hpp force-included, which poisons the
#   identifiers of Asio, CAF io and the socket API (so an #include of them fails), and the
#   target gets neither Asio's definitions nor starling_asio;
# - after the library is built, cmake/check_core_symbols.cmake fails the build if it
#   references a clock read, Asio, CAF io, sockets or thread creation.
# The rules are PRIVATE: the adapter libraries and tests that link a core do not inherit
# them. tests/purity/ holds the tests that show both checks really fail.
set(STARLING_CORE_GUARD ${CMAKE_CURRENT_LIST_DIR}/core_guard.hpp)
set(STARLING_CORE_CHECK ${CMAKE_CURRENT_LIST_DIR}/check_core_symbols.cmake)

add_library(starling_core_rules INTERFACE)
target_compile_options(starling_core_rules INTERFACE "SHELL:-include ${STARLING_CORE_GUARD}")

function(starling_core_library target)
  target_link_libraries(${target} PRIVATE starling_core_rules)
  add_custom_command(TARGET ${target} POST_BUILD
    COMMAND ${CMAKE_COMMAND} -DNM=${CMAKE_NM} -DFILE=$<TARGET_FILE:${target}>
            -P ${STARLING_CORE_CHECK}
    COMMENT "Checking that ${target} is a pure core"
    VERBATIM)
endfunction()
