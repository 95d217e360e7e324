// What this binary is: the project's version and the source revision it was built from
// (a git commit, with "-dirty" when tracked files differed from it, or "unknown" outside a
// git checkout). Shown by `starling --version` and /metrics (`starling_build_info`). The
// definitions are generated at build time (cmake/StarlingRevision.cmake).
#pragma once

#include <string_view>

namespace starling {

[[nodiscard]] std::string_view build_version() noexcept;
[[nodiscard]] std::string_view build_revision() noexcept;

} // namespace starling
