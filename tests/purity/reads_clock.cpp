// Purity probe (tests/purity/CMakeLists.txt): a core file that reads a clock. It compiles (the
// clock's name is needed for types), but the symbol check after the build must fail it.
#include <chrono>

namespace starling::purity_probe {

std::chrono::steady_clock::time_point deadline() {
  return std::chrono::steady_clock::now() + std::chrono::seconds(1);
}

} // namespace starling::purity_probe
